"""What the demo prints after a pass, per flow: what each target and order system holds, read from the emulators'
own inspection (orders received and how often, refusals, cancellations and amendments, stock levels, tracking),
beside what fulfil's ledgers say it sent. For people watching the demo; tests judge fulfil by the world's own record
(`World.order_truth`), not by this."""

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulators.server import Emulators
    from resources.warehouse import WarehouseDb


def changes_received(emulators: "Emulators", target: str, refs: set[str]) -> dict[str, dict[str, int]]:
    """The cancellations and amendments the target holds for these orders, from its own inspection, by what it
    made of them (Whistl's answer per file; Peoplevox: cancelled orders, saves after the first; Linnworks:
    cancelled orders, customer details set)."""
    if target == "whistl":
        whistl = emulators.whistl.inspect()
        cancels = Counter(r for ref, r in whistl["cancel_results"].items() if ref in refs)
        amends = Counter(r for ref, rs in whistl["amendments"].items() if ref in refs for r in rs)
    elif target == "peoplevox":
        pvx = emulators.peoplevox.inspect()
        cancelled = sum(1 for ref in refs if pvx["sales_orders"].get(ref, {}).get("Status") == "Cancelled")
        cancels = Counter({"cancelled": cancelled} if cancelled else {})
        saved_again = sum(n - 1 for ref, n in pvx["saves"].items() if ref in refs and n > 1)
        amends = Counter({"saved": saved_again} if saved_again else {})
    else:
        lw = emulators.linnworks.inspect()
        ids = {o["order_id"] for ref, o in lw["created_orders"].items() if ref in refs}
        cancelled = len(ids & set(lw["cancelled"]))
        cancels = Counter({"cancelled": cancelled} if cancelled else {})
        updated = sum(1 for uid in emulators.linnworks.customer_edits if uid in ids)
        amends = Counter({"customer_info_set": updated} if updated else {})
    return {"cancels_received": dict(cancels), "amendments_received": dict(amends)}


def flow_report(emulators: "Emulators", db: "WarehouseDb", flows: list[str]) -> dict[str, dict[str, Any]]:
    """Per flow, what its target system holds afterwards, read from the emulators' own inspection (orders
    received and how often, refusals, cancellations and amendments) for the orders the world gave that flow (its
    order system and their target), beside what the ledger says was sent and the flow's open exceptions."""
    from fulfil_assets.config import flow_of, target_of
    from resources.warehouse import SCHEMA

    ledger = db.read(f"SELECT flow, order_ref, status FROM {SCHEMA}.wms_submissions")
    exceptions = db.read(
        f"SELECT v.flow, e.reason_code FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.validated_orders v "
        "USING (order_key) WHERE e.resolved_at IS NULL"
    )
    whistl, pvx, lw = emulators.whistl.inspect(), emulators.peoplevox.inspect(), emulators.linnworks.inspect()
    held_by_target = {
        "whistl": whistl["receipts"],
        "peoplevox": pvx["saves"],
        "linnworks": {ref: 1 for ref in lw["created_orders"]},
    }
    world = [o for o in emulators.timeline()["orders"] if o["source_ref"] is None]
    report: dict[str, dict[str, Any]] = {}
    for flow in flows:
        target = target_of(flow)
        mine = ledger.filter(ledger["flow"] == flow) if ledger.height else ledger
        refs = {o["order_ref"] for o in world if flow_of(o["oms"], o["target"]) == flow}
        received = {r: n for r, n in held_by_target[target].items() if r in refs}
        flow_exceptions = exceptions.filter(exceptions["flow"] == flow) if exceptions.height else exceptions
        report[flow] = {
            "target": target,
            "orders_received": len(received),
            "orders_received_more_than_once": sum(1 for n in received.values() if n > 1),
            "ledger_by_status": dict(mine.group_by("status").len().iter_rows()) if mine.height else {},
            "open_exceptions": dict(flow_exceptions.group_by("reason_code").len().iter_rows())
            if flow_exceptions.height
            else {},
        }
        if target == "whistl":
            report[flow]["refused_by_target"] = sum(1 for r in whistl["rejections"] if r.get("order_reference") in refs)
        report[flow].update(changes_received(emulators, target, refs))
        report[flow]["stock_levels_received"] = stock_received(emulators, db, flow)
        report[flow]["tracking_received"] = tracking_received(emulators, db, flow)
        stuck = db.read(f"SELECT stage FROM {SCHEMA}.orders_stuck WHERE flow = :flow", {"flow": flow})
        report[flow]["orders_stuck"] = dict(stuck.group_by("stage").len().iter_rows()) if stuck.height else {}
    return report


def tracking_received(emulators: "Emulators", db: "WarehouseDb", flow: str) -> dict[str, Any]:
    """The tracking the flow's order system holds for the flow's orders, read from the emulator: orders with
    tracking, tracking numbers, orders closed there (processed, authorised, shipped, fulfilled), beside what the
    `tracking_posts` ledger says it sent."""
    import polars as pl

    from fulfil_assets.config import FLOW_SYSTEMS
    from resources.warehouse import SCHEMA

    oms = FLOW_SYSTEMS[flow][0]
    ids = set(
        db.read(
            f"SELECT DISTINCT o.source_order_id FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o "
            "USING (order_key) WHERE s.flow = :f",
            {"f": flow},
            schema={"source_order_id": pl.String},
        )["source_order_id"]
    )
    numbers: dict[str, list[str]] = {}
    closed: set[str] = set()
    if oms == "linnworks":
        lw = emulators.linnworks.inspect()
        numbers = {
            o: [n for i in infos for n in i["TrackingNumber"].split(",")] for o, infos in lw["shipping_info"].items()
        }
        closed = set(lw["processed"])
    elif oms == "cin7":
        for sale, ship in emulators.cin7.ship_state.items():
            numbers[sale] = [line.get("TrackingNumber") or "" for line in ship["Lines"]]
            if ship["Status"] == "AUTHORISED":
                closed.add(sale)
    elif oms == "bigcommerce":
        for shipment in emulators.bigcommerce.inspect()["shipments"]:
            numbers.setdefault(str(shipment["order_id"]), []).append(shipment["tracking_number"])
        closed = {o for o, status in emulators.bigcommerce.inspect()["status"].items() if status == 2}
    elif oms == "shopify":
        for f in emulators.shopify.inspect()["fulfillments"]:
            numbers.setdefault(str(f["order_id"]), []).extend(f["tracking_numbers"] or [""])
            closed.add(str(f["order_id"]))
    mine = {o: n for o, n in numbers.items() if o in ids}
    ledger = db.read(f"SELECT status FROM {SCHEMA}.tracking_posts WHERE flow = :f", {"f": flow})
    return {
        "oms": oms,
        "orders_with_tracking": len(mine),
        "tracking_numbers": sum(len(n) for n in mine.values()),
        "orders_closed_there": len(closed & ids),
        "posts_by_status": dict(ledger.group_by("status").len().iter_rows()) if ledger.height else {},
    }


def stock_received(emulators: "Emulators", db: "WarehouseDb", flow: str) -> dict[str, Any]:
    """The stock levels the flow's order system received, read from the emulator (each write, at the locations
    the flow's ledger names): writes, SKUs, units now set there, and the calls that carried them."""
    from fulfil_assets.config import FLOW_SYSTEMS
    from resources.warehouse import SCHEMA

    oms = FLOW_SYSTEMS[flow][0]
    pushed = db.read(f"SELECT DISTINCT location FROM {SCHEMA}.stock_pushes WHERE flow = :f", {"f": flow})
    places = set(pushed["location"]) if pushed.height else set()
    writes: list[tuple[str, str, int]] = []  # location, sku, level
    calls = 0
    if oms == "linnworks":
        writes = [(w["location"], w["sku"], w["level"]) for w in emulators.linnworks.stock_writes if not w["delta"]]
        calls = sum(1 for c in emulators.linnworks.recorder.calls if c.path.endswith("Stock/SetStockLevel"))
    elif oms == "cin7":
        writes = [(ln["Location"], ln["SKU"], ln["Quantity"]) for a in emulators.cin7.adjustments for ln in a["Lines"]]
        calls = len(emulators.cin7.adjustments)
    elif oms == "bigcommerce":
        store = emulators.bigcommerce
        writes = [
            (str(i["location_id"]), i.get("sku") or store.product_skus[i["product_id"]][0], i["quantity"])
            for a in store.adjustments
            for i in a["items"]
        ]
        calls = len(store.adjustments)
    elif oms == "shopify":
        items = emulators.shopify.inventory_items
        writes = [
            (str(w["location_id"]), items[w["inventory_item_id"]], w["available"])
            for w in emulators.shopify.level_writes
        ]
        calls = sum(1 for c in emulators.shopify.recorder.calls if c.path.endswith("graphql.json"))
    mine = [w for w in writes if w[0] in places]
    latest = {(loc, sku): level for loc, sku, level in mine}
    return {
        "oms": oms,
        "levels_written": len(mine),
        "skus": len(latest),
        "units_now_set": sum(latest.values()),
        "stock_calls_to_this_oms_all_flows": calls,
    }
