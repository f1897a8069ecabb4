"""Amendments through real Dagster runs: an address edited in Linnworks after the order was sent reaches the
warehouse as an amendment of the same order (never a second order) before picking, and becomes AMEND_TOO_LATE for
the warehouse owner, saying what changed, once picking has started. Whistl (files) and Peoplevox (SaveData)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import all_flows_config, drain_despatches, emulator_config, run_job

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
    emu.whistl.snapshot()
    defs = build_definitions(emulator_config(emu, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

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
    ledger = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.amendments").iter_rows())
    assert ledger == {early_ref: "acknowledged", late_ref: "too_late"}
    exceptions = _too_late(db)
    assert exceptions["order_ref"].to_list() == [late_ref]
    assert "Peoplevox shows the order Picking" in exceptions["detail"][0] and late in exceptions["detail"][0]


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
