"""Despatches waiting at the warehouse are seen before fulfil reads them: a Whistl despatch file left in `out/` on
the real SFTP server, and a Peoplevox despatch fulfil has not read, turn `no_despatch_backlog` red (naming the
oldest, as the emulators hold it) once older than `schedules.despatch_backlog_minutes`, and green once the
despatch runs took them in. The tracking check says "no data" (amber) before any post exists, never green."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from flow_helpers import all_flows_config, drain_despatches, emulator_config, run_job

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions

AGED_MINUTES = 20  # past the default threshold (5 minutes)


def backlog(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str) -> dg.AssetCheckEvaluation:
    result = run_job(defs, "despatch_backlog_job", instance)
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "no_despatch_backlog" and e.asset_key == dg.AssetKey(asset)
    )


def shp_waiting(emu: Emulators) -> list[str]:
    return sorted(p.name for p in emu.whistl.outbox.iterdir() if p.name.lower().startswith("shp_"))


@pytest.mark.world(n_orders=12, n_skus=120)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_whistl_despatch_file_left_in_out_is_red_until_the_despatch_run_takes_it(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    config = emulator_config(emu, tmp_path)  # Whistl over the real SFTP server
    assert config.schedules.despatch_backlog_minutes == 5
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "order_sync_job", instance)

    # Nothing despatched, no tracking post: the tracking check has nothing to measure and says so (amber).
    tracking = run_job(defs, "tracking_job", instance)
    reached = next(
        e for e in tracking.get_asset_check_evaluations() if e.check_name == "tracking_reached_the_order_system"
    )
    assert not reached.passed and reached.severity == dg.AssetCheckSeverity.WARN
    assert reached.metadata["no_data"].value is True and "No data" in (reached.description or "")
    first = backlog(defs, instance, "despatches")
    assert first.passed and first.metadata["despatch_files_waiting"].value == 0

    # Whistl works its orders until it writes despatch files.
    for _ in range(6):
        emu.whistl.step()
        if shp_waiting(emu):
            break
    written = [n for n in emu.whistl.inspect()["files_written"] if n.startswith("shp_")]
    assert written and shp_waiting(emu) == sorted(written)
    fresh = backlog(defs, instance, "despatches")
    assert fresh.passed, fresh.description
    assert fresh.metadata["despatch_files_waiting"].value == len(written)

    # One of them left in out/ for 20 minutes (its modification time, as the SFTP server reports it).
    left = written[-1]
    aged = time.time() - AGED_MINUTES * 60
    os.utime(emu.whistl.outbox / left, (aged, aged))
    red = backlog(defs, instance, "despatches")
    assert not red.passed and red.severity == dg.AssetCheckSeverity.ERROR
    assert red.metadata["past_threshold"].value == 1
    assert red.metadata["oldest_file"].value == left
    assert AGED_MINUTES <= red.metadata["oldest_waiting_minutes"].value < AGED_MINUTES + 5
    assert red.metadata["despatch_files_waiting"].value == len(written)
    assert left in (red.description or "") and f"{AGED_MINUTES} min" in (red.description or "")

    # The sensor asks for a run per file; the despatch runs take them in and archive them: green again.
    asked, _ = drain_despatches(defs, instance, None)
    assert asked >= len(written)
    assert shp_waiting(emu) == []
    green = backlog(defs, instance, "despatches")
    assert green.passed and green.metadata["past_threshold"].value == 0
    assert green.metadata["despatch_files_waiting"].value == 0
    tracking = run_job(defs, "tracking_job", instance)
    reached = next(
        e for e in tracking.get_asset_check_evaluations() if e.check_name == "tracking_reached_the_order_system"
    )
    assert reached.passed and reached.metadata["no_data"].value is False


@pytest.mark.world(n_orders=12, n_skus=120)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_peoplevox_despatch_fulfil_has_not_read_is_red_until_the_despatch_job_reads_it(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    config = all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"])
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "order_sync_job", instance)
    saved = sorted(emu.peoplevox.sales_orders)
    assert len(saved) >= 2
    nothing = backlog(defs, instance, "peoplevox_despatch_lines")
    assert nothing.passed and nothing.metadata["despatches_asked"].value == 0

    # Peoplevox despatches one order 20 minutes ago and another just now; fulfil has read neither.
    old = emu.peoplevox.control("despatch", {"order": saved[0]})["despatch_number"]
    when = (datetime.now(UTC) - timedelta(minutes=AGED_MINUTES)).isoformat(timespec="seconds")
    for row in emu.peoplevox.despatches:
        if row["DespatchNumber"] == old:
            row["DespatchDate"] = when
    new = emu.peoplevox.control("despatch", {"order": saved[1]})["despatch_number"]
    held = {d["DespatchNumber"] for d in emu.peoplevox.inspect()["despatches"]}
    assert held == {old, new}
    red = backlog(defs, instance, "peoplevox_despatch_lines")
    assert not red.passed and red.severity == dg.AssetCheckSeverity.ERROR
    assert red.metadata["past_threshold"].value == 1  # the fresh one is within the threshold
    assert red.metadata["oldest_despatch"].value == old
    assert red.metadata["oldest_order_ref"].value == saved[0]
    assert AGED_MINUTES <= red.metadata["oldest_waiting_minutes"].value < AGED_MINUTES + 5

    run_job(defs, "peoplevox_despatch_job", instance)
    green = backlog(defs, instance, "peoplevox_despatch_lines")
    assert green.passed, green.description
    assert green.metadata["past_threshold"].value == 0
