"""Cancellations against the emulators through real Dagster runs, on both sides of Whistl's picking cut-off and in
the two races users met: cancelled between ingest and send, and cancelled just after the send."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import all_flows_config, drain_despatches, run_job, tracking_calls, whistl_world

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


def _cancel(emu: Emulators, order_ids: list[str]) -> None:
    for order_id in order_ids:
        emu.linnworks.control("cancel", {"order_id": order_id})


def _cancel_rows(emu: Emulators) -> Counter[str]:
    """How often each order reference reached Whistl in a cancellation file."""
    seen: Counter[str] = Counter()
    for path in sorted(emu.whistl.received_dir.glob("can_*.csv")):
        seen.update(r["order_reference"] for r in pl.read_csv(path, infer_schema=False).iter_rows(named=True))
    return seen


def test_cancellations_on_both_sides_of_the_cut_off(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    sync = defs.resolve_job_def("order_sync_job")

    # Race 1: ingest reads the orders as open, then the customer cancels three, then the push runs.
    everything_but_push = [k for k in sync.asset_layer.selected_asset_keys if k != dg.AssetKey("wms_submissions")]
    assert sync.execute_in_process(instance=instance, asset_selection=everything_but_push).success
    ready = db.read(
        f"SELECT o.order_key, o.order_ref, o.source_order_id FROM {SCHEMA}.validated_orders v "
        f"JOIN {SCHEMA}.orders o USING (order_key) WHERE v.ready ORDER BY o.order_ref"
    )
    assert ready.height >= 8
    before_send = ready["source_order_id"].head(3).to_list()
    _cancel(emu, before_send)
    assert sync.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("wms_submissions")]).success
    emu.whistl.step()  # the warehouse takes the file in: every order received moves on to picking
    receipts = emu.whistl.inspect()["receipts"]
    refs = dict(ready.select("source_order_id", "order_ref").iter_rows())
    assert set(receipts) == set(ready["order_ref"]) - {refs[i] for i in before_send}
    held = db.read(f"SELECT order_ref, status, last_error FROM {SCHEMA}.wms_submissions WHERE status = 'held'")
    assert set(held["order_ref"]) == {refs[i] for i in before_send}
    assert set(held["last_error"]) == {"cancelled or put on hold in Linnworks just before the send"}

    # Too late: the warehouse is picking this one when the customer cancels it.
    picking = ready["source_order_id"][3]
    _cancel(emu, [picking])
    # Race 2: new orders go out, and one is cancelled seconds after the push, before the warehouse's next shift.
    emu.linnworks.control("spawn", {"n": 6})
    run_job(defs, "order_sync_job", instance)
    fresh = db.read(
        f"SELECT o.order_ref, o.source_order_id FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE s.status = 'sent' ORDER BY o.order_ref"
    ).filter(~pl.col("order_ref").is_in(ready["order_ref"].implode()))
    assert fresh.height > 0, "no new order went out: race 2 cannot be shown"
    after_send = fresh["source_order_id"][0]
    assert after_send != picking
    refs.update(dict(fresh.select("source_order_id", "order_ref").iter_rows()))
    _cancel(emu, [after_send])
    run_job(defs, "linnworks_cancellation_job", instance)
    run_job(defs, "linnworks_cancellation_job", instance)  # a second run sends nothing again
    emu.whistl.step()  # new orders and the cancellations arrive together
    cursor = None
    for _ in range(4):
        _, cursor = drain_despatches(defs, instance, cursor)
        emu.whistl.step()
    _, cursor = drain_despatches(defs, instance, cursor)

    assert _cancel_rows(emu) == Counter({refs[after_send]: 1, refs[picking]: 1})
    results = emu.whistl.inspect()["cancel_results"]
    assert results == {refs[after_send]: "CANCELLED", refs[picking]: "CANCEL_TOO_LATE"}
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.cancellations").iter_rows())
    assert ledger == {refs[after_send]: "acknowledged", refs[picking]: "too_late"}
    submissions = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions").iter_rows())
    assert submissions[refs[after_send]] == "cancelled"
    assert emu.whistl.inspect()["stages"][refs[after_send]] == "cancelled"

    # The late one is the warehouse owner's: an exception saying what the customer asked; and when Whistl ships
    # it anyway, no tracking is posted to the cancelled order.
    exceptions = db.read(
        f"SELECT o.order_ref, e.rule, e.reason_code, e.owner, e.detail FROM {SCHEMA}.order_exceptions e "
        f"JOIN {SCHEMA}.orders o USING (order_key) WHERE e.resolved_at IS NULL AND e.reason_code = 'CANCEL_TOO_LATE'"
    )
    late = exceptions.filter(pl.col("order_ref") == refs[picking])
    assert set(late["rule"]) == {"cancellation", "despatch_after_cancel"}
    assert set(late["owner"]) == {"warehouse"}
    assert all(refs[picking] in d for d in late["detail"])
    assert emu.whistl.inspect()["stages"][refs[picking]] == "despatched"
    posted_orders = {c["orderId"] for c in tracking_calls(emu)}
    assert picking not in posted_orders and after_send not in posted_orders
    assert posted_orders, "nothing was despatched and posted: the test would not show the difference"
    # No order Whistl was told to cancel in time was despatched.
    assert (
        refs[after_send] not in emu.whistl.inspect()["shipped"] or not emu.whistl.inspect()["shipped"][refs[after_send]]
    )


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the SQL is the same; PG runs the all-flows test
def test_peoplevox_cancellations_ask_the_live_status_first(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 1.0
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    run_job(defs, "order_sync_job", instance)
    sent = db.read(
        f"SELECT o.order_ref, o.source_order_id FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE s.wms = 'peoplevox' AND s.status = 'sent' ORDER BY o.order_ref"
    )
    assert sent.height >= 3
    (new_ref, new_id), (picked_ref, picked_id) = sent.select("order_ref", "source_order_id").rows()[:2]
    emu.peoplevox.control("pick", {"order": picked_ref})
    _cancel(emu, [new_id, picked_id])
    run_job(defs, "linnworks_cancellation_job", instance)
    run_job(defs, "linnworks_cancellation_job", instance)  # once each, however often it runs

    assert emu.peoplevox.sales_orders[new_ref]["Status"] == "Cancelled"
    assert emu.peoplevox.sales_orders[picked_ref]["Status"] == "Picking"
    cancel_saves = [c for c in emu.peoplevox.recorder.calls if "SaveData" in str(c.body) and "Cancelled" in str(c.body)]
    assert len(cancel_saves) == 1, "one SaveData carried the cancellation, and only once"
    cancelled = {ref for ref, order in emu.peoplevox.sales_orders.items() if order.get("Status") == "Cancelled"}
    assert cancelled == {new_ref}
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.cancellations").iter_rows())
    assert ledger == {new_ref: "sent", picked_ref: "too_late"}
    submissions = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions").iter_rows())
    assert submissions[new_ref] == "cancelled" and submissions[picked_ref] == "sent"
    late = db.read(
        f"SELECT o.order_ref, e.owner, e.detail FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE e.reason_code = 'CANCEL_TOO_LATE' AND e.resolved_at IS NULL"
    )
    assert late["order_ref"].to_list() == [picked_ref] and late["owner"].to_list() == ["warehouse"]
    assert "Peoplevox shows it Picking" in late["detail"][0]


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_storefront_and_cin7_orders_cancelled_between_ingest_and_send_are_held(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """Race 1 for Cin7 Core, BigCommerce and Shopify: each order cancelled (voided, status 5, `cancelled_at`; a
    Cin7 sale taken back to draft) after validation read it as open is asked about again right before the send, and
    held with its system's own reason; it never reaches Whistl or Linnworks, and every other ready order does, once."""
    from datetime import UTC, datetime

    emu = emulators
    emu.whistl.snapshot()
    defs = build_definitions(
        all_flows_config(emu, tmp_path, flows=["cin7_whistl", "bigcommerce_whistl", "shopify_linnworks"])
    )
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    graph = defs.resolve_asset_graph()
    sync = defs.resolve_job_def("order_sync_job")
    push = dg.AssetSelection.groups("push").resolve(graph)
    before = dg.AssetSelection.groups("push").upstream(include_self=False).required_multi_asset_neighbors()
    assert sync.execute_in_process(instance=instance, asset_selection=list(before.resolve(graph))).success
    ready = db.read(
        f"SELECT o.order_key, o.source_system, o.source_order_id, o.order_ref FROM {SCHEMA}.validated_orders v "
        f"JOIN {SCHEMA}.orders o USING (order_key) WHERE v.ready ORDER BY o.order_key"
    )
    victims = {
        s: ready.filter(pl.col("source_system") == s).row(0, named=True) for s in ("cin7", "bigcommerce", "shopify")
    }
    victims["cin7_draft"] = ready.filter(pl.col("source_system") == "cin7").row(1, named=True)
    now = datetime.now(UTC)
    emu.cin7.control("void", {"sale_id": victims["cin7"]["source_order_id"]})
    emu.cin7.control("draft", {"sale_id": victims["cin7_draft"]["source_order_id"]})  # authorisation undone
    bc = int(victims["bigcommerce"]["source_order_id"])
    emu.bigcommerce.status[bc], emu.bigcommerce.orders[bc].updated_at = 5, now
    shop = int(victims["shopify"]["source_order_id"])
    emu.shopify.cancelled[shop], emu.shopify.orders[shop].updated_at = now, now

    assert sync.execute_in_process(instance=instance, asset_selection=list(push)).success
    ledger = db.read(f"SELECT order_key, status, last_error FROM {SCHEMA}.wms_submissions")
    held = {k: e for k, s, e in ledger.iter_rows() if s == "held"}
    assert held == {
        victims["cin7"]["order_key"]: "voided in Cin7 Core just before the send",
        victims["cin7_draft"]["order_key"]: "no longer authorised in Cin7 Core (DRAFT) just before the send",
        victims["bigcommerce"]["order_key"]: "cancelled in BigCommerce just before the send",
        victims["shopify"]["order_key"]: "cancelled in Shopify just before the send",
    }
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    created = emu.linnworks.inspect()["created_orders"]
    refs = {v["order_ref"] for v in victims.values()}
    assert not refs & set(receipts) and not refs & set(created)
    others = ready.filter(~pl.col("order_key").is_in([v["order_key"] for v in victims.values()]))
    to_whistl = set(others.filter(pl.col("source_system") != "shopify")["order_ref"])
    assert to_whistl and set(receipts) == to_whistl and set(receipts.values()) == {1}
    assert set(others.filter(pl.col("source_system") == "shopify")["order_ref"]) == set(created)


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_shopify_cancellations_cancel_the_linnworks_order_or_are_too_late(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """shopify_linnworks: a Shopify order cancelled after fulfil created it in Linnworks is cancelled there
    (`Orders/CancelOrder`) once; one Linnworks already processed is `CANCEL_TOO_LATE` for the warehouse owner
    and Linnworks is not asked to cancel it."""
    from datetime import UTC, datetime

    emu = emulators
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["shopify_linnworks"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    run_job(defs, "order_sync_job", instance)
    created = emu.linnworks.inspect()["created_orders"]
    assert len(created) >= 2
    (open_ref, open_row), (done_ref, done_row) = sorted(created.items())[:2]
    now = datetime.now(UTC)
    emu.linnworks.processed[done_row["order_id"]] = now  # despatched from the warehouse already
    for row in (open_row, done_row):
        shop = int(row["external_reference"])
        emu.shopify.cancelled[shop], emu.shopify.orders[shop].updated_at = now, now

    run_job(defs, "shopify_cancellation_job", instance)
    calls = [c for c in emu.linnworks.recorder.calls if c.path.endswith("Orders/CancelOrder")]
    assert [c.body["orderId"] for c in calls] == [open_row["order_id"]]
    assert open_row["order_id"] in emu.linnworks.cancelled and done_row["order_id"] not in emu.linnworks.cancelled
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.cancellations WHERE wms = 'linnworks'").iter_rows())
    assert ledger == {open_ref: "sent", done_ref: "too_late"}
    late = db.read(
        f"SELECT o.order_ref, e.owner, e.detail FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE e.reason_code = 'CANCEL_TOO_LATE' AND e.resolved_at IS NULL"
    )
    assert late.select("order_ref", "owner").rows() == [(done_ref, "warehouse")]
    assert "already processed" in late["detail"][0]
    run_job(defs, "shopify_cancellation_job", instance)  # once
    assert len([c for c in emu.linnworks.recorder.calls if c.path.endswith("Orders/CancelOrder")]) == 1
