"""Tracking back to every order system: one deployment with all five flows against the emulators, through real
Dagster runs and real sensor ticks. What each order system holds is read from the emulators and compared with
what the warehouses despatched (their own records): every parcel's number once, partial and multi-parcel
despatches included, short-shipped lines never posted as shipped, and a second round changes nothing."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import all_flows_config, drain_despatches, run_job

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient
from resources.warehouse import SCHEMA, WarehouseDb


def whistl_truth(emu: Emulators) -> dict[str, dict]:
    """Per order reference, from Whistl's own despatch records: tracking numbers of shipped parcels, shipped
    quantity per line, and lines it shipped none of (with a reason)."""
    truth: dict[str, dict] = defaultdict(lambda: {"numbers": set(), "lines": Counter(), "short": set()})
    for row in emu.whistl.inspect()["despatch_rows"]:
        t = truth[row["order_reference"]]
        if row["quantity_despatched"] > 0:
            t["numbers"].add(row["tracking_number"])
            t["lines"][row["line_number"]] += row["quantity_despatched"]
        elif row["reason"]:
            t["short"].add(row["line_number"])
    return truth


@pytest.mark.world(n_orders=16, n_skus=200)  # every post here waits on the order systems' real rate limits
def test_every_order_system_gets_its_tracking_once(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 0.4
    emu.whistl.snapshot()
    # Short lines at 0.3 of multi-line despatches: at 0.1 one run in several shipped nothing short (which orders
    # share a shift, and so the draws, depends on timing), and the test then proved nothing.
    emu.whistl.partial_share, emu.whistl.multi_parcel_share, emu.whistl.short_share = 0.4, 0.5, 0.3
    defs = build_definitions(all_flows_config(emu, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)  # the Shopify orders created in Linnworks now go on to Whistl

    # Whistl works its orders over several shifts; each file lands, a sensor tick asks for its run, and the
    # despatch run plans the posts and sends them.
    cursor = None
    for _ in range(5):
        emu.whistl.step()
        _, cursor = drain_despatches(defs, instance, cursor)
    # Peoplevox despatches its orders: some in two despatches (the first item, then the rest).
    saved = sorted(emu.peoplevox.sales_orders)
    assert saved
    for n, ref in enumerate(saved):
        items = emu.peoplevox.order_items[ref]
        first = next(iter(items.values()))
        if n % 3 == 0 and len(items) > 1:
            emu.peoplevox.control("despatch", {"order": ref, "items": {first["ItemCode"]: first["QuantityOrdered"]}})
            run_job(defs, "peoplevox_despatch_job", instance)
            rest = {i["ItemCode"]: i["QuantityOrdered"] for i in items.values() if i["ItemCode"] != first["ItemCode"]}
            emu.peoplevox.control("despatch", {"order": ref, "items": rest})
        else:
            emu.peoplevox.control("despatch", {"order": ref})
    run_job(defs, "peoplevox_despatch_job", instance)
    run_job(defs, "tracking_job", instance)
    # Linnworks has processed the Shopify orders Whistl shipped: the next sync reads them, then Shopify is told.
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "tracking_job", instance)

    orders = db.read(f"SELECT order_ref, order_key, source_system, source_order_id FROM {SCHEMA}.orders")
    ids = {r: (s, i) for r, _, s, i in orders.iter_rows()}
    whistl = whistl_truth(emu)
    by_system: dict[str, list[str]] = defaultdict(list)
    for ref in whistl:
        by_system[ids[ref][0]].append(ref)
    assert by_system["cin7"] and by_system["bigcommerce"] and by_system["linnworks"]
    # Whistl's own lines, as it was sent them: complete when every line shipped in full.
    sent_lines = db.read(
        f"SELECT s.order_ref, l.wms_line_no, l.quantity FROM {SCHEMA}.wms_submissions s "
        f"JOIN {SCHEMA}.wms_order_lines l "
        "ON l.order_key = s.order_key AND l.wms = s.wms WHERE s.wms = 'whistl'"
    )
    ordered: dict[str, dict[int, int]] = defaultdict(dict)
    for ref, line, qty in sent_lines.iter_rows():
        ordered[ref][line] = qty

    def complete(ref: str) -> bool:
        return all(whistl[ref]["lines"][line] >= qty for line, qty in ordered[ref].items())

    # Cin7: every parcel's number on the sale's shipment, once; authorised exactly when everything shipped.
    cin7 = emu.cin7.ship_state
    for ref in by_system["cin7"]:
        numbers = [line["TrackingNumber"] for line in cin7[ids[ref][1]]["Lines"]]
        assert Counter(numbers) == Counter(whistl[ref]["numbers"]), ref
        assert (cin7[ids[ref][1]]["Status"] == "AUTHORISED") == complete(ref), ref
    assert any(cin7[ids[r][1]]["Status"] == "AUTHORISED" for r in by_system["cin7"])

    # BigCommerce: a shipment per parcel with its own number and items; Shipped when complete, else Partially.
    shipments: dict[int, list[dict]] = defaultdict(list)
    for s in emu.bigcommerce.inspect()["shipments"]:
        shipments[s["order_id"]].append(s)
    status = emu.bigcommerce.inspect()["status"]
    for ref in by_system["bigcommerce"]:
        oid = int(ids[ref][1])
        assert Counter(s["tracking_number"] for s in shipments[oid]) == Counter(whistl[ref]["numbers"]), ref
        units = sum(i["quantity"] for s in shipments[oid] for i in s["items"])
        assert units == sum(whistl[ref]["lines"].values()), ref
        assert status[str(oid)] == (2 if complete(ref) and not whistl[ref]["short"] else 3), ref

    # Linnworks (Whistl and Peoplevox flows): each despatch's numbers set; processed exactly when complete.
    shipping = emu.linnworks.inspect()["shipping_info"]
    processed = emu.linnworks.inspect()["processed"]
    for ref in by_system["linnworks"]:
        oid = ids[ref][1]
        got = {n for info in shipping.get(oid, []) for n in info["TrackingNumber"].split(",")}
        assert got == whistl[ref]["numbers"], ref
        assert (oid in processed) == complete(ref), ref
    pvx: dict[str, set[str]] = defaultdict(set)
    for d in emu.peoplevox.inspect()["despatches"]:
        pvx[d["SalesOrderNumber"]].add(d["TrackingNumber"])
    assert len(pvx) == len(saved)
    for ref, numbers in pvx.items():
        oid = ids[ref][1]
        assert {i["TrackingNumber"] for i in shipping.get(oid, [])} == numbers, ref
        assert oid in processed, ref
    posts = [c.body["orderId"] for c in emu.linnworks.recorder.calls if c.path.endswith("SetOrderShippingInfo")]
    assert max(Counter(posts).values()) <= 3  # one call per despatch (no order here has more than three)

    # Shopify: the Linnworks orders fulfil created from Shopify orders were shipped by Whistl, so each Shopify
    # order gets a fulfilment per parcel with that parcel's number, URL and units, partial despatches included.
    created = {c["order_id"]: int(c["external_reference"]) for c in emu.linnworks.inspect()["created_orders"].values()}
    fulfilments: dict[int, list[dict]] = defaultdict(list)
    for f in emu.shopify.inspect()["fulfillments"]:
        fulfilments[f["order_id"]].append(f)
    from_shopify = [ref for ref in by_system["linnworks"] if ids[ref][1] in created]
    assert from_shopify, "no Shopify order reached Whistl through Linnworks: the test proves nothing"
    for ref in from_shopify:
        got = fulfilments[created[ids[ref][1]]]
        assert Counter(f["tracking_number"] for f in got) == Counter(whistl[ref]["numbers"]), ref
        assert all(f["tracking_url"].endswith(f["tracking_number"]) for f in got), ref
        assert sum(i["quantity"] for f in got for i in f["line_items"]) == sum(whistl[ref]["lines"].values()), ref
    assert set(fulfilments) == {created[ids[ref][1]] for ref in from_shopify}
    fulfilled = Counter({o: len(v) for o, v in fulfilments.items()})

    # Short-shipped lines: the warehouse owner is told, and the order is never closed by itself.
    short = {ref for ref, t in whistl.items() if t["short"]}
    assert short, "the emulator shipped nothing short: the test proves nothing"
    exceptions = db.read(
        f"SELECT o.order_ref, e.owner FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE e.reason_code = 'DESPATCH_SHORT'"
    )
    assert set(exceptions["order_ref"]) == short and set(exceptions["owner"]) == {"warehouse"}

    # The ledger matches what the systems hold, and a second round sends nothing more.
    ledger = db.read(f"SELECT oms, status, COUNT(*) AS n FROM {SCHEMA}.tracking_posts GROUP BY oms, status")
    assert set(ledger["status"]) == {"sent"}, ledger
    calls = {s: len(getattr(emu, s).recorder.calls) for s in ("linnworks", "cin7", "bigcommerce", "shopify")}
    run_job(defs, "tracking_job", instance)
    # Whistl sends its despatch files again (every one, as a warehouse does after a restore): nothing changes.
    outbox = emu.whistl.root / "out"
    for archived in sorted((outbox / "archive").glob("shp_*.csv")):
        (outbox / archived.name).write_bytes(archived.read_bytes())
    again, cursor = drain_despatches(defs, instance, cursor)
    assert again and not list(outbox.glob("shp_*.csv"))  # taken in and archived again
    assert {s: len(getattr(emu, s).recorder.calls) for s in calls} == calls
    counts = dict(ledger.group_by("oms").agg(pl.col("n").sum()).iter_rows())
    assert counts["bigcommerce"] == sum(len(v) for v in shipments.values())
    parcels = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.tracking_posts WHERE oms = 'shopify' AND kind = 'parcel'")
    assert parcels["n"][0] == sum(fulfilled.values())  # the whole-order posts after Linnworks processed found none open
    assert counts["shopify"] >= parcels["n"][0]


@pytest.mark.world(n_orders=12, n_skus=200)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_shopify_orders_linnworks_processed_itself_are_fulfilled_whole(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """`shopify_linnworks` alone: Linnworks ships the orders fulfil created there by other means; once it has
    processed one, the Shopify order is fulfilled whole with Linnworks' tracking number, once. One that someone
    also fulfilled in Shopify itself before the order sync read it again costs no call of Shopify's bucket."""
    emu = emulators
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["shopify_linnworks"]))
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "order_sync_job", instance)
    created = {c["order_id"]: int(c["external_reference"]) for c in emu.linnworks.inspect()["created_orders"].values()}
    assert created
    shipped = sorted(created)[: max(1, len(created) // 2)]
    other = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials)  # another integration, over HTTP
    for n, order_id in enumerate(shipped):  # someone despatches them in Linnworks itself
        other.set_shipping_info(order_id, f"RM{n:09d}GB")
        assert other.process_order(order_id)["Processed"]
    other.close()
    assert len(shipped) >= 2, "too few orders reached Linnworks: the test proves nothing"
    by_hand = created[shipped.pop()]  # fulfilled in Shopify too, by another app (no tracking)
    shop = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=1.0)
    fos = shop.fulfillment_orders(by_hand)
    shop.create_fulfillment({"line_items_by_fulfillment_order": [{"fulfillment_order_id": fo["id"]} for fo in fos]})
    shop.close()
    run_job(defs, "order_sync_job", instance)
    before = len(emu.shopify.recorder.calls)
    run_job(defs, "tracking_job", instance)
    run_job(defs, "tracking_job", instance)
    assert not [c for c in list(emu.shopify.recorder.calls)[before:] if f"/{by_hand}/" in c.path]
    fulfilments = [f for f in emu.shopify.inspect()["fulfillments"] if f["order_id"] != by_hand]
    assert sorted(f["order_id"] for f in fulfilments) == sorted(created[o] for o in shipped)
    numbers = {created[o]: f"RM{n:09d}GB" for n, o in enumerate(shipped)}
    assert all(f["tracking_number"] == numbers[f["order_id"]] for f in fulfilments)
