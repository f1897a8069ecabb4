"""What each order system is told when a warehouse despatches (pure polars): the tracking posts of the
`tracking_posts` ledger, in each system's own terms, and the short-shipped lines a person must look at.

- Linnworks: the tracking numbers of each despatch (`SetOrderShippingInfo`), then `ProcessOrder` once every line
  has shipped in full.
- Cin7 Core: each despatch's parcels as shipping lines (box, carrier, tracking number and URL); the despatch
  that completes the order authorises the shipment in the same call (Cin7's limit is 60 calls a minute).
- BigCommerce: one shipment per parcel and ship-to address with the items in it (a shipment holds one tracking
  number); the store moves the order to Partially Shipped, then Shipped, by itself.
- Shopify (`shopify_linnworks`): where the Linnworks order fulfil created is shipped by a warehouse fulfil reads
  (`linnworks_whistl`), a fulfilment per parcel of the line items in it, partial despatches included; otherwise a
  fulfilment of the whole order once Linnworks has processed it, with Linnworks' tracking.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from fulfil_assets.despatch.oms_tracking import fulfilled_in_full
from fulfil_assets.effects import SENDABLE, SENT, to_payload

INTENT_COLUMNS = ("idempotency_key", "order_key", "kind", "despatch_ref", "tracking_number", "oms", "flow", "target")
SHIPPED_IN_FULL = ("linnworks",)  # systems told in a call of its own once an order is complete (ProcessOrder)


def short_shipped(despatched: pl.DataFrame) -> pl.DataFrame:
    """`order_key, reason_code, detail` for orders with a line the warehouse despatched none of and said why
    (quantity 0 with a reason): the line is never posted as shipped and the order never completes by itself."""
    short = despatched.filter((pl.col("quantity") == 0) & (pl.col("reason").fill_null("").str.strip_chars() != ""))
    return (
        short.group_by("order_key", maintain_order=True)
        .agg(
            pl.format("despatch {} line {} ({}): none shipped, {}", "despatch_ref", "line_no", "sku", "reason")
            .str.join("; ")
            .alias("detail")
        )
        .select(
            "order_key",
            pl.lit("DESPATCH_SHORT").alias("reason_code"),
            pl.concat_str(pl.col("detail"), pl.lit(": ship it later or tell the customer and refund the line")).alias(
                "detail"
            ),
        )
    )


def complete_orders(despatched: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """`order_key` of every despatched order whose SKUs have all shipped in full (`lines`: order_key, sku,
    quantity, as sent to the warehouse), counting every despatch of the order."""
    totals = despatched.group_by("order_key", "sku").agg(pl.col("quantity").sum().alias("shipped"))
    wanted = lines.group_by("order_key", "sku").agg(pl.col("quantity").sum())
    return (
        wanted.join(despatched.select("order_key").unique(), on="order_key", how="semi")
        .join(totals, on=["order_key", "sku"], how="left")
        .group_by("order_key")
        .agg((pl.col("shipped").fill_null(0) >= pl.col("quantity")).all().alias("done"))
        .filter("done")
        .select("order_key")
    )


def _intents(rows: list[dict[str, Any]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={**dict.fromkeys(INTENT_COLUMNS, pl.String), "payload": pl.String})
    return frame.with_columns(pl.col("oms").alias("target"))


def _parcels(group: pl.DataFrame) -> list[dict[str, Any]]:
    """A despatch's parcels, each once, in parcel order."""
    parcels = group.sort("parcel_no").unique("parcel_no", keep="first", maintain_order=True)
    return [
        {
            "box": str(p["parcel_no"]),
            "carrier": p["carrier"] or "",
            "tracking_number": p["tracking_number"],
            "tracking_url": p["tracking_url"] or "",
            "shipped_at": p["despatched_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if p["despatched_at"] else None,
        }
        for p in parcels.iter_rows(named=True)
    ]


def source_units(rows: pl.DataFrame, by_line: pl.DataFrame) -> dict[tuple[str, int], dict[str, int]]:
    """Per (despatch, parcel) of one order, the units of each order-system line it ships (`by_line`: order_key,
    line_no (the warehouse's), source_line_id, source_quantity, wms_quantity). A line the warehouse was sent as
    several (a bundle's components) ships a unit once every component of that unit has shipped: in the despatch
    that completes it, with its first parcel holding them."""
    mine = by_line.join(rows.select("order_key").unique(), on="order_key", how="semi")
    parts: dict[str, dict[int, int]] = {}  # source line -> {warehouse line: components per unit}
    for line_id, line_no, src_qty, wms_qty in mine.select(
        "source_line_id", "line_no", "source_quantity", "wms_quantity"
    ).iter_rows():
        parts.setdefault(line_id, {})[line_no] = max(1, int(wms_qty or 0) // max(1, int(src_qty or 1)))
    line_of = {n: line_id for line_id, lines in parts.items() for n in lines}
    out: dict[tuple[str, int], dict[str, int]] = {}
    order = rows.group_by("despatch_ref").agg(pl.col("despatched_at").min()).sort("despatched_at", "despatch_ref")
    done: dict[str, int] = {}
    shipped: dict[int, int] = {}
    for (despatch,) in order.select("despatch_ref").iter_rows():
        here = rows.filter(pl.col("despatch_ref") == despatch).sort("parcel_no", "line_no")
        first_parcel: dict[str, int] = {}
        for line_no, parcel, quantity in here.select("line_no", "parcel_no", "quantity").iter_rows():
            shipped[line_no] = shipped.get(line_no, 0) + quantity
            line_id = line_of.get(line_no)
            first_parcel.setdefault(str(line_id), parcel)
            if line_id is not None and len(parts[line_id]) == 1 and parts[line_id][line_no] == 1:
                units = out.setdefault((despatch, parcel), {})  # one warehouse line per unit: by parcel as shipped
                units[line_id] = units.get(line_id, 0) + quantity
        for line_id, lines in parts.items():
            if len(lines) == 1 and next(iter(lines.values())) == 1:
                continue
            complete = min(shipped.get(n, 0) // per_unit for n, per_unit in lines.items())
            if complete > done.get(line_id, 0) and str(line_id) in first_parcel:
                units = out.setdefault((despatch, first_parcel[str(line_id)]), {})
                units[line_id] = units.get(line_id, 0) + complete - done.get(line_id, 0)
                done[line_id] = complete
    return out


def tracking_intents(
    despatched: pl.DataFrame, lines: pl.DataFrame, owners: pl.DataFrame, source_lines: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Ledger rows telling each order's own system what shipped (`owners`: order_key, oms, source_order_id, flow;
    `lines`: order_key, line_no, sku, quantity as the warehouse holds them; `source_lines`: order_key,
    wms_line_no, source_line_id, ship_to_id, for systems that ship by their own line ids). The numbers of a
    despatch are part of each key: a corrected re-send is a new post, a repeat is not."""
    shipped = despatched.filter((pl.col("quantity") > 0) & pl.col("tracking_number").fill_null("").ne(""))
    owner = {r["order_key"]: r for r in owners.iter_rows(named=True)}
    rows: list[dict[str, Any]] = []

    def add(key: str, order: dict[str, Any], kind: str, despatch: str, numbers: str | None, **payload: Any) -> None:
        rows.append(
            {
                "idempotency_key": key,
                "order_key": order["order_key"],
                "kind": kind,
                "despatch_ref": despatch,
                "tracking_number": numbers,
                "oms": order["oms"],
                "flow": order["flow"],
                "payload": to_payload(
                    {"kind": kind, "order_id": order["source_order_id"], "tracking_number": numbers, **payload}
                ),
            }
        )

    by_line = source_lines.rename({"wms_line_no": "line_no"}) if source_lines is not None else None
    units_cache: dict[str, dict[tuple[str, int], dict[str, int]]] = {}
    complete = set(complete_orders(despatched, lines)["order_key"].to_list())
    last = shipped.sort("despatched_at", "despatch_ref").group_by("order_key").agg(pl.col("despatch_ref").last())
    completing = {(k, d) for k, d in last.iter_rows() if k in complete}
    for (order_key, despatch), group in shipped.sort("order_key", "despatch_ref", "parcel_no", "line_no").group_by(
        "order_key", "despatch_ref", maintain_order=True
    ):
        order = owner.get(str(order_key))
        if order is None:
            continue
        numbers = ",".join(group["tracking_number"].unique(maintain_order=True).to_list())
        oms = order["oms"]
        if oms == "bigcommerce":
            if order_key not in units_cache:
                order_rows = shipped.filter(pl.col("order_key") == order_key)
                units_cache[order_key] = source_units(order_rows, by_line) if by_line is not None else {}
            ship_to_of = dict(by_line.select("source_line_id", "ship_to_id").iter_rows()) if by_line is not None else {}
            for (d, parcel), units in units_cache[order_key].items():
                if d != despatch:
                    continue
                first = group.filter(pl.col("parcel_no") == parcel).row(0, named=True)
                by_ship_to: dict[Any, list[dict[str, Any]]] = {}
                for line_id, quantity in units.items():
                    item = {"order_product_id": line_id, "quantity": quantity}
                    by_ship_to.setdefault(ship_to_of.get(line_id), []).append(item)
                for ship_to, items in by_ship_to.items():
                    add(
                        f"{oms}:tracking:{order_key}:{despatch}:{parcel}:{ship_to}:{first['tracking_number']}",
                        order,
                        "tracking",
                        str(despatch),
                        first["tracking_number"],
                        order_address_id=ship_to,
                        carrier=first["carrier"] or "",
                        tracking_url=first["tracking_url"] or "",
                        items=items,
                    )
        elif oms == "cin7":
            key = f"{oms}:tracking:{order_key}:{despatch}:{numbers}"
            authorise = (order_key, despatch) in completing
            add(key, order, "tracking", str(despatch), numbers, parcels=_parcels(group), authorise=authorise)
        else:
            add(f"{oms}:tracking:{order_key}:{despatch}:{numbers}", order, "tracking", str(despatch), numbers)
    for order_key in sorted(complete):
        order = owner.get(order_key)
        if order is not None and order["oms"] in SHIPPED_IN_FULL:
            add(f"{order['oms']}:process:{order_key}", order, "process", "", None)
    return _intents(rows)


def whole_order_due(links: pl.DataFrame, parcels: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """The storefront orders of `links` (order_key, ...) a whole-order fulfilment may be planned for now. Not one
    with a parcel post still to send (`parcels`: order_key, status, payload, result): the whole order waits for
    them, or it would fulfil their lines under one number before each parcel's own; nor one whose sent parcels
    already name every unit of its lines (`lines`: order_key, source_line_id, quantity, as fulfil created it in
    Linnworks; only parcels whose `result` says each unit they name was fulfilled by their post count): nothing is
    left, and finding that out costs a call of the storefront's bucket."""
    named: dict[tuple[str, str], int] = {}
    sent = parcels.filter(pl.col("status") == SENT).select("order_key", "payload", "result")
    for key, payload, result in sent.iter_rows():
        if not fulfilled_in_full(result):
            continue
        for item in json.loads(payload).get("items") or []:
            at = (key, str(item["line_item_id"]))
            named[at] = named.get(at, 0) + int(item["quantity"])
    per_line = lines.group_by("order_key", "source_line_id").agg(pl.col("quantity").sum())
    left = {key for key, line, quantity in per_line.iter_rows() if named.get((key, str(line)), 0) < quantity}
    covered = set(per_line["order_key"].to_list()) - left
    waiting = set(parcels.filter(pl.col("status").is_in(SENDABLE))["order_key"].to_list())
    return links.filter(~pl.col("order_key").is_in(list(waiting | covered)))


def fulfilment_intents(processed: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """Shopify fulfilments for storefront orders Linnworks processed (`shopify_linnworks`): `processed` are
    Linnworks' processed orders (external_reference, d_processed_on, postal_tracking_number, vendor,
    postal_service_name, source); `links` the storefront orders fulfil created there (order_key, source_order_id,
    flow). One fulfilment per order and tracking number, of everything still open on it."""
    done = processed.filter(pl.col("d_processed_on").is_not_null() & pl.col("d_cancelled_on").is_null())
    joined = done.join(links, left_on="external_reference", right_on="source_order_id", how="inner")
    rows = []
    for r in joined.unique("order_key", keep="last").iter_rows(named=True):
        number = (r["postal_tracking_number"] or "").strip()
        rows.append(
            {
                "idempotency_key": f"shopify:fulfilment:{r['order_key']}:{number}",
                "order_key": r["order_key"],
                "kind": "fulfilment",
                "despatch_ref": str(r["pk_order_id"]),
                "tracking_number": number or None,
                "oms": "shopify",
                "flow": r["flow"],
                "payload": to_payload(
                    {
                        "kind": "fulfilment",
                        "order_id": r["external_reference"],
                        "tracking_number": number or None,
                        "company": r["vendor"] or "",
                        "service": r["postal_service_name"] or "",
                        "linnworks_order_id": r["pk_order_id"],
                    }
                ),
            }
        )
    return _intents(rows)


def parcel_fulfilments(
    despatched: pl.DataFrame,
    links: pl.DataFrame,
    storefront_lines: pl.DataFrame,
    fulfillment_orders: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Shopify fulfilments for the parcels of Linnworks orders fulfil created from Shopify orders, each with the
    Shopify line items in it (`links`: order_key of the Linnworks order, storefront_key, source_order_id, flow;
    `storefront_lines`: storefront_key, sku, source_line_id, quantity, as the Linnworks order was created) and
    the order's fulfillment order lines as the order sync last read them (`fulfillment_orders`: source_order_id,
    fulfillment_order_id, id, line_item_id), which the post names without reading them again. Their ids only: what
    is still open changes with every read, and a payload that changes would send a refused post again."""
    known: dict[str, dict[int, dict[str, Any]]] = {}
    for order_id, fo_id, line_id, item_id in (
        fulfillment_orders.select("source_order_id", "fulfillment_order_id", "id", "line_item_id").iter_rows()
        if fulfillment_orders is not None
        else []
    ):
        fo = known.setdefault(str(order_id), {}).setdefault(int(fo_id), {"id": int(fo_id), "line_items": []})
        fo["line_items"].append({"id": int(line_id), "line_item_id": str(item_id)})
    shipped = despatched.filter((pl.col("quantity") > 0) & pl.col("tracking_number").fill_null("").ne(""))
    mine = shipped.join(links, on="order_key", how="inner")
    if mine.is_empty():
        return _intents([])
    by_sku: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for key, sku, line_id, qty in storefront_lines.select(
        "storefront_key", "sku", "source_line_id", "quantity"
    ).iter_rows():
        by_sku.setdefault((key, sku), []).append((line_id, qty))
    rows = []
    for (key, despatch, parcel), part in mine.sort("line_no").group_by(
        "storefront_key", "despatch_ref", "parcel_no", maintain_order=True
    ):
        first = part.row(0, named=True)
        items: dict[str, int] = {}
        for sku, qty in part.group_by("sku", maintain_order=True).agg(pl.col("quantity").sum()).iter_rows():
            for line_id, room in by_sku.get((str(key), sku), []):  # a SKU on several lines fills them in order
                take = min(qty, room)
                if take > 0 and line_id is not None:
                    items[line_id] = items.get(line_id, 0) + take
                    qty -= take
        number = first["tracking_number"]
        rows.append(
            {
                "idempotency_key": f"shopify:parcel:{key}:{despatch}:{parcel}:{number}",
                "order_key": key,
                "kind": "parcel",
                "despatch_ref": str(despatch),
                "tracking_number": number,
                "oms": "shopify",
                "flow": first["flow"],
                "payload": to_payload(
                    {
                        "kind": "parcel",
                        "order_id": first["source_order_id"],
                        "tracking_number": number,
                        "tracking_url": first["tracking_url"] or "",
                        "company": first["carrier"] or "",
                        "items": [{"line_item_id": i, "quantity": q} for i, q in items.items()],
                        "fulfillment_orders": list(known.get(str(first["source_order_id"]), {}).values()),
                    }
                ),
            }
        )
    return _intents(rows)
