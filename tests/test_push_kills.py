"""Peoplevox and Linnworks (the storefront orders fulfil creates there) through real `dagster` CLI runs on
PostgreSQL: a run SIGKILLed the moment the target has taken part of what it sends, then the same sends started
twice at once. Each target holds each valid order exactly once, with all its lines, and the ledger matches it row
for row. (Whistl's file exchange has its own drill in test_fault_drill.py.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from conftest import deployment_env
from flow_helpers import Drill, all_flows_config, set_faults, world_expectations

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

pytestmark = [pytest.mark.fault_drill, pytest.mark.postgres, pytest.mark.long]
SENDS = ("peoplevox_submissions", "linnworks_submissions")


def test_a_killed_send_and_two_at_once_leave_each_order_once_at_peoplevox_and_linnworks(
    emulators: Emulators, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulators
    deployment_env(monkeypatch, tmp_path, emu, postgres_url)
    emu.linnworks.peoplevox_share = 1.0  # every Linnworks order goes to Peoplevox
    config = all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox", "shopify_linnworks"])
    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    defs = build_definitions(config)
    db = WarehouseDb(postgres_url)
    drill = Drill(tmp_path, config_file)
    # Everything up to the sends, in-process: ingest, stage, validate.
    job = defs.resolve_job_def("order_sync_job")
    upstream = [k for k in job.asset_layer.selected_asset_keys if k.to_user_string() not in SENDS]
    run_config = world_expectations(emu, tmp_path)
    job.execute_in_process(run_config=run_config, instance=dg.DagsterInstance.ephemeral(), asset_selection=upstream)
    set_faults(emu, "peoplevox", latency_ms=300)  # room to be killed between a batch's two saves
    set_faults(emu, "linnworks", reply_delay_ms=500)  # Linnworks creates the orders at once, answers late

    def peoplevox_took_headers() -> bool:
        return bool(emu.peoplevox.inspect()["saves"])

    def linnworks_created() -> bool:
        return bool(emu.linnworks.create_calls)

    assert drill.kill_when("peoplevox_submissions", peoplevox_took_headers), "the Peoplevox send ended unkilled"
    assert not emu.peoplevox.inspect()["order_items"], "killed too late: the lines had landed too"
    assert drill.kill_when("linnworks_submissions", linnworks_created), "the Linnworks send ended unkilled"
    unsettled = db.read(f"SELECT wms, status FROM {SCHEMA}.wms_submissions WHERE status = 'sending'")
    assert set(unsettled["wms"]) == {"peoplevox", "linnworks"}  # attempted, outcome unknown to the ledger
    set_faults(emu, "peoplevox", latency_ms=0)
    set_faults(emu, "linnworks", reply_delay_ms=0)
    for asset in SENDS:
        drill.twice_at_once(asset)
    for asset in SENDS:  # a last round, once the unconfirmed attempts have had time to land
        drill.twice_at_once(asset)

    # What each target should hold is the world's own record: the orders it made fit for that target.
    truth = [o for o in emu.timeline()["orders"] if o["source_ref"] is None]
    fit = {t: {o["order_ref"] for o in truth if o["ready"] and o["target"] == t} for t in ("peoplevox", "linnworks")}
    ledger = db.read(f"SELECT wms, order_ref, status FROM {SCHEMA}.wms_submissions")
    assert set(ledger["status"]) == {"sent"}, ledger.group_by("wms", "status").len()
    for wms, refs in fit.items():
        assert refs and set(ledger.filter(pl.col("wms") == wms)["order_ref"]) == refs
    pvx = emu.peoplevox.inspect()
    peoplevox_refs = fit["peoplevox"]
    assert pvx["saves"] == dict.fromkeys(peoplevox_refs, 1), "a Peoplevox order was saved twice, or one is missing"
    # Each order's lines as the world made them, a bundle as its components.
    orders = {f"LW{o.number}": o for o in emu.linnworks.orders.values()}
    components = {p.sku: len(p.components) or 1 for p in emu.world.products}
    expected = {r: sum(components[line.sku] for line in orders[r].lines) for r in peoplevox_refs}
    assert {r: len(pvx["order_items"].get(r, {})) for r in peoplevox_refs} == expected, "lines missing or extra"
    created = Counter(r for call in emu.linnworks.create_calls for r in call)
    assert set(created) == fit["linnworks"] and set(created.values()) == {1}, "a storefront order was created twice"
