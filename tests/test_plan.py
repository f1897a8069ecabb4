"""`fulfil plan` lists what the next live run sends, effect by effect: a flow run in shadow, planned, then switched
to live sends exactly the orders and stock levels the plan listed, counted at the emulators (what Whistl received,
the levels Linnworks was set to), and nothing before."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from flow_helpers import emulator_config, run_job

from emulators.server import Emulators
from fulfil_assets.cli import main
from fulfil_assets.definitions import build_definitions


@pytest.mark.world(n_orders=12, n_skus=150)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_the_plan_of_a_shadow_flow_is_what_going_live_sends(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    instance = dg.DagsterInstance.ephemeral()
    shadow = build_definitions(emulator_config(emu, tmp_path, modes={"linnworks_whistl": "shadow"}))
    for job in ("order_sync_job", "linnworks_whistl_stock_job"):
        run_job(shadow, job, instance)
    capsys.readouterr()
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["due"]
    orders = {r["subject"] for r in plan if r["ledger"] == "wms_submissions" and r["target"] == "whistl"}
    levels = {(r["subject"], r["location"]): r["level"] for r in plan if r["ledger"] == "stock_pushes"}
    assert orders and levels and {r["status"] for r in plan} == {"shadow"}
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"] == {} and emu.linnworks.stock_writes == []  # nothing sent yet
    assert main(["plan"]) == 0 and f"{len(orders)} orders to send -> whistl" in capsys.readouterr().out

    live = build_definitions(emulator_config(emu, tmp_path))
    # The stock run first: once the orders are sent, fewer open orders wait and the next stock run pushes new
    # levels, which that run's own plan would list.
    for job in ("linnworks_whistl_stock_job", "order_sync_job"):
        run_job(live, job, instance)
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"] == dict.fromkeys(orders, 1)
    assert {(w["sku"], w["location"]): w["level"] for w in emu.linnworks.stock_writes} == levels
    assert len(emu.linnworks.stock_writes) == len(levels)
