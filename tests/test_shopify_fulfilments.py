"""Shopify fulfilments name the fulfillment order lines the order sync read (its raw tables), with no read before
each post: Shopify's one call bucket serves the order reads too. When Shopify has changed the order since (a line
fulfilled by someone in Shopify, the order cancelled), it refuses the lines and the post reads the order now.
Real HTTP to the emulated Shopify, a real dlt load into DuckDB; what Shopify holds is read from its own record."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import dlt
import polars as pl
import pytest
from flow_helpers import all_flows_config, drain_despatches, run_job

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.despatch.oms_tracking import ShopifyFulfilments, fulfilled_in_full
from fulfil_assets.despatch.planning import fulfillment_order_lines
from fulfil_assets.despatch.tracking import parcel_fulfilments
from fulfil_assets.effects import SENT, TOO_LATE
from fulfil_assets.ingest.shopify_source import shopify_source, still_to_ship
from fulfil_assets.whistl_formats import DESPATCH_SCHEMA
from resources.shopify import ShopifyClient
from resources.warehouse import WarehouseDb


def whole_parcels(emu: Emulators, order_ids: list[int]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Whistl's despatch of each order in one parcel (every unit), the Linnworks order fulfil made of each, and
    the Shopify lines it was made from: what `parcel_fulfilments` takes."""
    despatched, links, lines = [], [], []
    for n, oid in enumerate(order_ids):
        key = f"linnworks:LW{n}"
        links.append({"order_key": key, "storefront_key": f"shopify:{oid}", "source_order_id": str(oid), "flow": "f"})
        for li in emu.shopify.orders[oid].lines:
            lines.append(
                {"storefront_key": f"shopify:{oid}", "sku": li.sku, "source_line_id": str(oid * 10 + li.line_no)}
                | {"quantity": li.quantity}
            )
            despatched.append(
                {"wms": "whistl", "order_ref": f"LW{n}", "order_key": key, "despatch_ref": f"D{n}"}
                | {"line_no": li.line_no, "parcel_no": 1, "sku": li.sku, "quantity": li.quantity}
                | {"carrier": "Royal Mail", "service_code": "T24", "tracking_number": f"TN{n}"}
                | {"tracking_url": f"https://track.example/TN{n}", "despatched_at": datetime.now(UTC)}
                | {"partial": False, "source_file": "shp_1.csv", "reason": None}
            )
    frame = pl.DataFrame(despatched, schema={**DESPATCH_SCHEMA, "order_key": pl.String})
    return frame, pl.DataFrame(links), pl.DataFrame(lines)


@pytest.mark.world(n_orders=30)
def test_a_parcel_names_the_lines_the_order_sync_read_and_reads_again_only_when_refused(
    emulators: Emulators, tmp_path: Path
) -> None:
    emu = emulators
    client = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=1.0)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    pipeline = dlt.pipeline(
        pipeline_name="shopify_fulfilments",
        dataset_name="raw_shopify",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )
    pipeline.run(shopify_source(client).with_resources("orders", "fulfillment_orders"))
    multi = [
        oid
        for oid, order in emu.shopify.orders.items()
        if still_to_ship(emu.shopify.render(oid)) and len(order.lines) > 1
    ]
    assert len(multi) >= 3, "the world made too few paid orders of several lines: the test proves nothing"
    untouched, fulfilled_by_hand, cancelled = multi[:3]
    # After the sync: someone fulfils the first line of one order in Shopify; another order is cancelled.
    planted = dict(emu.shopify.fulfillable[fulfilled_by_hand])
    first_line = next(iter(planted))
    emu.shopify.fulfillable[fulfilled_by_hand][first_line] = 0
    emu.shopify.cancelled[cancelled] = datetime.now(UTC)

    ids = [untouched, fulfilled_by_hand, cancelled]
    despatched, links, lines = whole_parcels(emu, ids)
    known = fulfillment_order_lines(WarehouseDb(url), [str(i) for i in ids])
    assert set(known["source_order_id"]) == {str(i) for i in ids}
    intents = parcel_fulfilments(despatched, links, lines, known)
    payloads = {int(json.loads(p)["order_id"]): json.loads(p) for p in intents["payload"]}
    sender = ShopifyFulfilments(client)
    # A parcel that names no Shopify line (a bundle Whistl shipped as its components): nothing is posted.
    before = len(emu.shopify.recorder.calls)
    bundle = sender.post({**payloads[untouched], "items": []})
    assert bundle.status == SENT and bundle.result.startswith("nothing left")
    assert [c.method for c in list(emu.shopify.recorder.calls)[before:]] == ["GET"]  # its fulfillment orders
    before = len(emu.shopify.recorder.calls)
    outcomes = {oid: sender.post(payloads[oid]) for oid in ids}
    calls = list(emu.shopify.recorder.calls)[before:]

    held = {f["order_id"]: f for f in emu.shopify.inspect()["fulfillments"]}
    # Untouched: one call, the fulfilment of every unit, under the parcel's number.
    assert outcomes[untouched].status == SENT
    order = emu.shopify.orders[untouched]
    assert sorted((i["id"], i["quantity"]) for i in held[untouched]["line_items"]) == sorted(
        (untouched * 10 + li.line_no, li.quantity) for li in order.lines
    )
    assert held[untouched]["tracking_number"] == "TN0"  # whole_parcels numbers each order's parcel by its place
    assert not any(c.method == "GET" and c.path.endswith(f"{untouched}/fulfillment_orders.json") for c in calls)
    # Fulfilled in part by hand: refused (422), read again, the rest fulfilled and the first line not again.
    assert outcomes[fulfilled_by_hand].status == SENT
    got = {i["id"]: i["quantity"] for i in held[fulfilled_by_hand]["line_items"]}
    assert got == {line: quantity for line, quantity in planted.items() if line != first_line}
    assert not fulfilled_in_full(outcomes[fulfilled_by_hand].result)  # the whole-order post may yet be due
    assert fulfilled_in_full(outcomes[untouched].result)
    # Cancelled since: refused, read again, too late; Shopify holds no fulfilment of it.
    assert outcomes[cancelled].status == TOO_LATE
    assert cancelled not in held
    posts = [c.status for c in calls if c.method == "POST" and c.path.endswith("fulfillments.json")]
    reads = [c.path.split("/")[-2] for c in calls if c.method == "GET" and c.path.endswith("fulfillment_orders.json")]
    assert sorted(posts) == [201, 201, 422, 422]  # each changed order refused once, then fulfilled or left
    assert sorted(reads) == sorted(str(oid) for oid in (fulfilled_by_hand, cancelled))


@pytest.mark.world(n_orders=12, n_skus=200)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_whole_order_fulfilment_waits_for_the_parcels_so_each_keeps_its_own_number(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """Whistl ships Shopify orders (the Linnworks orders fulfil made of them) in several parcels; Linnworks takes
    the tracking and processes them, and the next order sync reads that while Shopify's parcel posts still wait
    their turn (its bucket is shared with its order reads). Then each parcel is fulfilled under its own number, and
    no whole-order fulfilment is made or even looked for (its fulfillment orders read): once the parcels are sent
    they name every unit."""
    emu = emulators
    emu.whistl.snapshot()
    emu.whistl.partial_share, emu.whistl.multi_parcel_share, emu.whistl.short_share = 0.0, 1.0, 0.0
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["shopify_linnworks", "linnworks_whistl"]))
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)  # the Linnworks orders made of Shopify's go on to Whistl
    cursor = None
    for _ in range(3):
        emu.whistl.step()
        _, cursor = drain_despatches(defs, instance, cursor, files_only=True)  # the posts planned, none sent
    run_job(defs, "linnworks_tracking_job", instance)
    run_job(defs, "order_sync_job", instance)  # reads the orders Linnworks processed
    before = len(emu.shopify.recorder.calls)
    run_job(defs, "shopify_tracking_job", instance)
    run_job(defs, "shopify_tracking_job", instance)
    calls = list(emu.shopify.recorder.calls)[before:]

    # From the emulators' own records: the Shopify order each Linnworks order was made of, Whistl's parcels.
    shopify_of = {
        f"LW{emu.linnworks.orders[uid].number}": (uid, int(made["ExternalReferenceNum"]))
        for uid, made in emu.linnworks.created.items()
    }
    numbers: dict[int, Counter] = defaultdict(Counter)
    for row in emu.whistl.inspect()["despatch_rows"]:
        if row["order_reference"] in shopify_of and row["quantity_despatched"] > 0:
            numbers[shopify_of[row["order_reference"]][1]][row["tracking_number"]] = 1
    processed = {shopify_of[ref][1] for ref in shopify_of if shopify_of[ref][0] in emu.linnworks.processed}
    assert numbers and processed == set(numbers), "Linnworks had not processed what Whistl shipped"
    assert any(len(n) > 1 for n in numbers.values()), "no order went in several parcels: the test proves nothing"
    held: dict[int, Counter] = defaultdict(Counter)
    for f in emu.shopify.inspect()["fulfillments"]:
        held[f["order_id"]][f["tracking_number"]] += 1
    assert held == {oid: Counter(dict.fromkeys(n, 1)) for oid, n in numbers.items()}
    assert not [c.path for c in calls if c.path.endswith("fulfillment_orders.json")]
