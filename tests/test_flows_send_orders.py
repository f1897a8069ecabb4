"""Every flow sends its orders: one deployment with all five flows against the emulators, through real Dagster
runs. Each target holds each valid order of its own flows exactly once, no invalid one, and the ledger matches
what the target holds row for row."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
from flow_helpers import all_flows_config, run_job

from emulators.linnworks import PEOPLEVOX_LOCATION
from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


def test_every_flow_sends_each_valid_order_once(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 0.4  # Linnworks fulfils these from the Peoplevox warehouse
    emu.whistl.snapshot()
    defs = build_definitions(all_flows_config(emu, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    sync = run_job(defs, "order_sync_job", instance)
    checks = {c.check_name: c.passed for c in sync.get_asset_check_evaluations()}
    assert checks["great_expectations_agrees"]
    validated = db.read(
        f"SELECT v.*, o.order_ref, o.source_system FROM {SCHEMA}.validated_orders v JOIN "
        f"{SCHEMA}.orders o USING (order_key)"
    )
    ledger = db.read(f"SELECT * FROM {SCHEMA}.wms_submissions")
    # Each order belongs to exactly one flow, by its system (and for Linnworks, its fulfilment location).
    flows_by_system = dict(validated.group_by("source_system").agg(pl.col("flow").unique().sort()).iter_rows())
    assert flows_by_system == {
        "linnworks": ["linnworks_peoplevox", "linnworks_whistl"],
        "cin7": ["cin7_whistl"],
        "bigcommerce": ["bigcommerce_whistl"],
        "shopify": ["shopify_linnworks"],
    }
    peoplevox_refs = {
        f"LW{o.number}" for o in emu.linnworks.orders.values() if emu.linnworks.location_of(o) == PEOPLEVOX_LOCATION
    }
    assert set(validated.filter(pl.col("flow") == "linnworks_peoplevox")["order_ref"]) <= peoplevox_refs

    # Whistl: the ready orders of the three Whistl flows, each once, and nothing else.
    emu.whistl.step()
    whistl_ready = validated.filter(pl.col("ready") & (pl.col("wms") == "whistl"))
    assert set(whistl_ready["flow"]) == {"linnworks_whistl", "cin7_whistl", "bigcommerce_whistl"}
    receipts = emu.whistl.inspect()["receipts"]
    assert Counter(receipts.values()) == Counter({1: whistl_ready.height})
    assert set(receipts) == set(whistl_ready["order_ref"])
    whistl_ledger = ledger.filter(pl.col("wms") == "whistl")
    assert set(whistl_ledger["order_ref"]) == set(receipts)
    assert dict(whistl_ledger.select("order_ref", "flow").iter_rows()) == dict(
        whistl_ready.select("order_ref", "flow").iter_rows()
    )
    assert emu.whistl.inspect()["rejections"] == []

    # A second run sends nothing again.
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()
    assert Counter(emu.whistl.inspect()["receipts"].values()) == Counter({1: whistl_ready.height})
