"""A slow order system never holds the warehouse: while a tracking run (its own process, from the CLI) waits on
Linnworks, another run on the same embedded DuckDB file takes a new despatch file in (the despatch step alone; a
whole despatch run would post to Linnworks too) and ends first. Afterwards every post has reached Linnworks
exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import yaml
from flow_helpers import drain_despatches, emulator_config, run_job, set_faults

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

EFFECT_CALLS = ("SetOrderShippingInfo", "ProcessOrder")  # what the due posts are, one call each


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the one-writer warehouse is the hard case
def test_a_despatch_run_goes_ahead_while_tracking_waits_on_linnworks(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    config = emulator_config(emu, tmp_path, systems={"linnworks": {"budget_share": 1.0}})
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    run_job(defs, "order_sync_job", instance)
    cursor = None
    for _ in range(3):  # shifts until despatch files have planned plenty of posts
        emu.whistl.step()
        cursor = drain_despatches(defs, instance, cursor, files_only=True)[1]
    due = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.tracking_posts WHERE status = 'pending'")["n"][0]
    assert due >= 20
    set_faults(emu, "linnworks", latency_ms=400)  # each Linnworks answer takes 0.4 s

    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "FULFIL_CONFIG": str(config_file), "DAGSTER_HOME": str(home)}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "fulfil_assets.definitions",
        "-j",
        "tracking_job",
    ]
    tracking = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(c.path.endswith("SetOrderShippingInfo") for c in emu.linnworks.recorder.calls):
            assert tracking.poll() is None and time.monotonic() < deadline, "the tracking run never started posting"
            time.sleep(0.1)
        # The warehouse works another shift; its files are taken in while the tracking run is still posting.
        before = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.processed_files")["n"][0]
        emu.whistl.step()
        taken, cursor = drain_despatches(defs, instance, cursor, files_only=True)
        assert taken and db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.processed_files")["n"][0] > before
        posted = sum(1 for c in emu.linnworks.recorder.calls if c.path.endswith(EFFECT_CALLS))
        assert posted < due, "the despatch run only went ahead once the tracking run had posted everything"
        output, _ = tracking.communicate(timeout=600)
    finally:
        if tracking.poll() is None:
            tracking.kill()
    assert tracking.returncode == 0, output[-3000:]
    set_faults(emu, "linnworks", latency_ms=0)
    run_job(defs, "tracking_job", instance)  # what the second shift planned
    posts = [c.body for c in emu.linnworks.recorder.calls if c.path.endswith("SetOrderShippingInfo")]
    applied = Counter((p["orderId"], p["info"]["TrackingNumber"]) for p in posts)
    assert max(applied.values()) == 1, "a tracking post reached Linnworks twice"
    statuses = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.tracking_posts GROUP BY status")
    assert set(statuses["status"]) == {"sent"}, statuses
