"""Amendments through real Dagster runs: an address edited in Linnworks after the order was sent reaches the
warehouse as an amendment of the same order (never a second order) before picking, and becomes AMEND_TOO_LATE for
the warehouse owner, saying what changed, once picking has started. Whistl (files) and Peoplevox (SaveData)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import all_flows_config, drain_despatches, run_job, whistl_world

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.linnworks import LinnworksClient
from resources.warehouse import SCHEMA, WarehouseDb


def _sent(db: WarehouseDb, wms: str) -> pl.DataFrame:
    return db.read(
        f"SELECT o.order_ref, o.source_order_id FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o "
        f"USING (order_key) WHERE s.wms = '{wms}' ORDER BY o.order_ref"
    )


def _too_late(db: WarehouseDb) -> pl.DataFrame:
    return db.read(
        f"SELECT o.order_ref, e.owner, e.detail FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE e.reason_code = 'AMEND_TOO_LATE' AND e.resolved_at IS NULL"
    )


def test_whistl_amendments_before_and_after_picking(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)

    run_job(defs, "order_sync_job", instance)
    sent = _sent(db, "whistl")
    assert sent.height >= 2
    (early_ref, early_id), (late_ref, late_id) = sent.rows()[:2]
    early = emu.linnworks.control("edit_address", {"order_id": early_id})["CustomerInfo"]["Address"]["Address1"]
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()  # the order and its amendment arrive before picking: amended
    _, cursor = drain_despatches(defs, instance, None)
    late = emu.linnworks.control("edit_address", {"order_id": late_id})["CustomerInfo"]["Address"]["Address1"]
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)  # nothing is sent twice
    emu.whistl.step()  # this one is being picked: too late
    _, cursor = drain_despatches(defs, instance, cursor)

    whistl = emu.whistl.inspect()
    assert Counter(whistl["receipts"].values()) == Counter({1: sent.height}), "an amendment became a second order"
    assert whistl["amendments"] == {early_ref: ["AMENDED"], late_ref: ["AMEND_TOO_LATE"]}
    assert whistl["ship_to"][early_ref]["ship_address1"] == early
    assert whistl["ship_to"][late_ref]["ship_address1"] != late
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.amendments").iter_rows())
    assert ledger == {early_ref: "acknowledged", late_ref: "too_late"}
    held = db.read(f"SELECT order_ref, payload FROM {SCHEMA}.wms_submissions WHERE order_ref = :r", {"r": early_ref})
    assert early in held["payload"][0], "the submission holds what Whistl now holds"
    exceptions = _too_late(db)
    assert exceptions["order_ref"].to_list() == [late_ref] and exceptions["owner"].to_list() == ["warehouse"]
    assert f"-> '{late}'" in exceptions["detail"][0] and "AMEND_TOO_LATE" in exceptions["detail"][0]


def _open_reasons(db: WarehouseDb, ref: str) -> list[str]:
    rows = db.read(
        f"SELECT e.reason_code FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE o.order_ref = :r AND e.resolved_at IS NULL",
        {"r": ref},
        schema={"reason_code": pl.String},
    )
    return rows["reason_code"].to_list()


def _lines_held(db: WarehouseDb, ref: str) -> dict[str, int]:
    rows = db.read(
        f"SELECT w.sku, w.quantity FROM {SCHEMA}.wms_order_lines w JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE o.order_ref = :r",
        {"r": ref},
    )
    return dict(rows.iter_rows())


def _plain_orders(emu: Emulators, db: WarehouseDb, sent: pl.DataFrame) -> list[tuple[str, str]]:
    """(order ref, Linnworks id) of the sent orders whose lines the warehouse holds as Linnworks has them (no
    bundle split into its parts, one line per SKU): a line edit there shows one for one at the warehouse."""
    plain = []
    for ref, oid in sent.rows():
        lines = emu.linnworks.orders[oid].lines
        one_per_sku = len({line.sku for line in lines}) == len(lines)
        if one_per_sku and _lines_held(db, ref) == {line.sku: line.quantity for line in lines}:
            plain.append((ref, oid))
    return plain


def test_whistl_line_edits_before_and_after_picking(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    """Lines edited in Linnworks after the order went to Whistl: one more of a line, a line added. Before picking
    the order goes again in full as an amendment of the same order; once Whistl confirms it, despatches are matched
    with the new lines (no over-quantity exception, the order closes in Linnworks). From picking on the edit is
    AMEND_TOO_LATE naming the SKU and both quantities, and the despatch is matched with what Whistl still held."""
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)

    run_job(defs, "order_sync_job", instance)
    sent = _sent(db, "whistl")
    plain = _plain_orders(emu, db, sent)
    assert len(plain) >= 3
    (more_ref, more_id), (added_ref, added_id), (late_ref, late_id) = plain[:3]
    before = {ref: _lines_held(db, ref) for ref, _ in plain[:3]}
    more_sku = emu.linnworks.control("edit_lines", {"order_id": more_id, "change": "quantity"})["Items"][0]["SKU"]
    new_sku = emu.linnworks.control("edit_lines", {"order_id": added_id, "change": "add"})["Items"][-1]["SKU"]
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()  # the orders and their amendments arrive before picking: amended
    _, cursor = drain_despatches(defs, instance, None)
    late_sku = emu.linnworks.control("edit_lines", {"order_id": late_id, "change": "quantity"})["Items"][0]["SKU"]
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)  # nothing is sent twice
    for _ in range(4):  # picking, then despatch of everything
        emu.whistl.step()
        _, cursor = drain_despatches(defs, instance, cursor)

    whistl = emu.whistl.inspect()
    assert Counter(whistl["receipts"].values()) == Counter({1: sent.height}), "an amendment became a second order"
    assert whistl["amendments"] == {more_ref: ["AMENDED"], added_ref: ["AMENDED"], late_ref: ["AMEND_TOO_LATE"]}
    assert {sku: q for sku, q in whistl["lines"][more_ref].values()}[more_sku] == before[more_ref][more_sku] + 1
    assert new_sku in {sku for sku, _ in whistl["lines"][added_ref].values()}
    assert _lines_held(db, more_ref)[more_sku] == before[more_ref][more_sku] + 1
    assert _lines_held(db, added_ref) == {**before[added_ref], new_sku: 1}
    assert _lines_held(db, late_ref) == before[late_ref], "what Whistl still holds, not what was asked too late"
    despatch_problems = db.read(
        f"SELECT o.order_ref, e.reason_code FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE e.rule = 'despatch_match' AND o.order_ref IN (:a, :b, :c)",
        {"a": more_ref, "b": added_ref, "c": late_ref},
    )
    assert despatch_problems.is_empty(), despatch_problems
    shipped = whistl["shipped"]
    assert sum(shipped[more_ref].values()) == sum(before[more_ref].values()) + 1
    processed = set(emu.linnworks.inspect()["processed"])
    assert {more_id, added_id, late_id} <= processed, "each order closes in Linnworks once Whistl shipped it all"
    exceptions = _too_late(db)
    assert exceptions["order_ref"].to_list() == [late_ref]
    answers = Counter(a for answers in emu.whistl.inspect()["amendments"].values() for a in answers)
    assert answers == {"AMENDED": 2, "AMEND_TOO_LATE": 1}  # Whistl's own answer to every amendment it received
    quantity = before[late_ref][late_sku]
    assert f"{late_sku} x{quantity} -> x{quantity + 1}" in exceptions["detail"][0], exceptions["detail"][0]


def test_an_amendment_held_for_a_sku_the_warehouse_lacks_goes_once_the_warehouse_knows_it(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """A line added in Linnworks after the order went to Whistl, its SKU not (yet) at Whistl: the order's own sync
    holds the amendment as SKU_UNKNOWN_AT_WMS and sends nothing; once Whistl's catalogue has the SKU, the next sync
    checks the order again (it is at its target but not ready), sends the amendment once and closes the exception."""
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)

    run_job(defs, "order_sync_job", instance)
    ref, order_id = _plain_orders(emu, db, _sent(db, "whistl"))[0]
    new_sku = emu.linnworks.control("edit_lines", {"order_id": order_id, "change": "add"})["Items"][-1]["SKU"]
    title = emu.whistl.catalogue.pop(new_sku)
    emu.whistl.snapshot()
    run_job(defs, "linnworks_order_sync_job", instance)
    assert _open_reasons(db, ref) == ["SKU_UNKNOWN_AT_WMS"]

    emu.whistl.catalogue[new_sku] = title
    emu.whistl.snapshot()
    run_job(defs, "linnworks_order_sync_job", instance)
    run_job(defs, "linnworks_order_sync_job", instance)  # nothing goes twice
    emu.whistl.step()  # Whistl reads its inbox before picking: the orders, and one amendment only if none went early
    whistl = emu.whistl.inspect()
    assert whistl["amendments"].get(ref) == ["AMENDED"] and whistl["rejections"] == []
    assert new_sku in {sku for sku, _ in whistl["lines"][ref].values()}
    assert Counter(whistl["receipts"].values()) == Counter({1: len(whistl["receipts"])})
    assert _open_reasons(db, ref) == []


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the SQL is the same; PG runs the all-flows test
def test_peoplevox_amendments_ask_the_live_status_first(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 1.0
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    run_job(defs, "order_sync_job", instance)
    sent = _sent(db, "peoplevox")
    assert sent.height >= 2
    (early_ref, early_id), (late_ref, late_id) = sent.rows()[:2]
    emu.peoplevox.control("pick", {"order": late_ref})
    early = emu.linnworks.control("edit_address", {"order_id": early_id})["CustomerInfo"]["Address"]["Address1"]
    late = emu.linnworks.control("edit_address", {"order_id": late_id})["CustomerInfo"]["Address"]["Address1"]
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)

    assert emu.peoplevox.sales_orders[early_ref]["ShippingAddressLine1"] == early
    assert emu.peoplevox.sales_orders[late_ref]["ShippingAddressLine1"] != late
    assert emu.peoplevox.inspect()["saves"][early_ref] == 2, "one save of the order, one of its amendment"
    saves = emu.peoplevox.inspect()["saves"]
    assert {n for ref, n in saves.items() if ref != early_ref} == {1}, "the one amendment was the only save again"
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.amendments").iter_rows())
    assert ledger == {early_ref: "acknowledged", late_ref: "too_late"}
    exceptions = _too_late(db)
    assert exceptions["order_ref"].to_list() == [late_ref]
    assert "Peoplevox shows the order Picking" in exceptions["detail"][0] and late in exceptions["detail"][0]


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_peoplevox_line_edits_are_saved_over_the_order_and_a_line_taken_off_is_too_late(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """One more of a line, after the order went to Peoplevox and before picking: `SaveData` changes the line in
    place, and the despatch of the new quantity matches. A line taken off: `SaveData` cannot remove a line, so it
    is AMEND_TOO_LATE naming the line, and nothing of that amendment is saved."""
    emu = emulators
    emu.linnworks.peoplevox_share = 1.0
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    run_job(defs, "order_sync_job", instance)
    sent = _sent(db, "peoplevox")
    plain = _plain_orders(emu, db, sent)
    more_ref, more_id = plain[0]
    fewer_ref, fewer_id = next((r, o) for r, o in plain[1:] if len(emu.linnworks.orders[o].lines) > 1)
    before = {ref: _lines_held(db, ref) for ref in (more_ref, fewer_ref)}
    more_sku = emu.linnworks.control("edit_lines", {"order_id": more_id, "change": "quantity"})["Items"][0]["SKU"]
    gone_sku = emu.linnworks.orders[fewer_id].lines[-1].sku
    emu.linnworks.control("edit_lines", {"order_id": fewer_id, "change": "remove"})
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)

    items = {i["ItemCode"]: int(i["QuantityOrdered"]) for i in emu.peoplevox.order_items[more_ref].values()}
    assert items[more_sku] == before[more_ref][more_sku] + 1
    assert _lines_held(db, more_ref)[more_sku] == before[more_ref][more_sku] + 1
    assert gone_sku in {i["ItemCode"] for i in emu.peoplevox.order_items[fewer_ref].values()}
    assert _lines_held(db, fewer_ref) == before[fewer_ref]
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.amendments").iter_rows())
    assert ledger == {more_ref: "acknowledged", fewer_ref: "too_late"}
    exceptions = _too_late(db)
    assert exceptions["order_ref"].to_list() == [fewer_ref]
    assert f"{gone_sku} removed" in exceptions["detail"][0] and "cannot remove a line" in exceptions["detail"][0]

    emu.peoplevox.control("despatch", {"order": more_ref})
    run_job(defs, "peoplevox_despatch_job", instance)
    despatch_problems = db.read(
        f"SELECT e.reason_code FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE e.rule = 'despatch_match' AND o.order_ref = :r",
        {"r": more_ref},
    )
    assert despatch_problems.is_empty(), despatch_problems


@pytest.mark.world(n_orders=16)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_shopify_address_edits_reach_the_linnworks_order_until_it_is_processed(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """shopify_linnworks: a Shopify order whose address changes after fulfil created it in Linnworks gets the new
    address there (`SetOrderCustomerInfo`, once); once Linnworks has processed the order the edit is
    `AMEND_TOO_LATE` for the warehouse owner, saying what changed."""
    emu = emulators
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["shopify_linnworks"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    run_job(defs, "order_sync_job", instance)
    created = emu.linnworks.inspect()["created_orders"]  # Shopify reference -> Linnworks order
    refs = sorted(created)
    assert len(refs) >= 2
    open_ref, processed_ref = refs[0], refs[1]
    shopify_id = {r: int(c["external_reference"]) for r, c in created.items()}
    other = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials)
    assert other.process_order(created[processed_ref]["order_id"])["Processed"]  # shipped by Linnworks itself
    other.close()
    for ref in (open_ref, processed_ref):
        emu.shopify.control("edit_address", {"order_id": shopify_id[ref]})
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "order_sync_job", instance)  # nothing more to send

    edited = emu.shopify.orders[shopify_id[open_ref]].address
    held = emu.linnworks.orders[created[open_ref]["order_id"]].address
    assert (held.address1, held.postcode, held.town) == (edited.address1, edited.postcode, edited.town)
    assert emu.linnworks.customer_edits == [created[open_ref]["order_id"]]  # once, and never the processed one
    ledger = db.read(f"SELECT order_ref, status FROM {SCHEMA}.amendments WHERE wms = 'linnworks' ORDER BY order_ref")
    assert dict(ledger.iter_rows()) == {open_ref: "acknowledged", processed_ref: "too_late"}  # adopted: now held
    late = _too_late(db)
    assert late.height == 1 and late["order_ref"][0] == processed_ref
    assert "Address1" in late["detail"][0] and late["owner"][0] == "warehouse"
