"""Each order system's tracking goes in a job of its own, so one system slow to answer never holds another's: a
despatch run that left posts due asks for one run of each such system's tracking job (none for a system whose
tracking run is still unfinished), and while Linnworks holds a tracking post unanswered, BigCommerce's tracking
job posts every BigCommerce parcel and ends, with Linnworks' run still waiting. Counted at the emulators, from the
world's own record of what Whistl despatched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from flow_helpers import all_flows_config, queue_run, run_job, set_faults, tick_sensor

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions

FLOWS = ["linnworks_whistl", "bigcommerce_whistl"]


def despatched_refs(emu: Emulators, oms: str) -> set[str]:
    """The world's record: references of `oms` orders Whistl has despatched (and no customer cancelled since: a
    cancelled order gets no tracking)."""
    timeline = emu.timeline()
    refs = {o["order_ref"] for o in timeline["orders"] if o["oms"] == oms and not o["cancelled"]}
    return {d["order_ref"] for d in timeline["despatches"] if d["wms"] == "whistl" and d["order_ref"] in refs}


def tracked_refs(emu: Emulators, oms: str) -> set[str]:
    """The world's record: references of `oms` orders that system holds tracking on."""
    timeline = emu.timeline()
    held = timeline["tracking_held"].get(oms, {})
    return {o["order_ref"] for o in timeline["orders"] if o["oms"] == oms and o["order_id"] in held}


@pytest.mark.world(n_orders=12, n_skus=200)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the one-writer warehouse is the hard case
def test_a_slow_order_system_never_holds_anothers_tracking(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    linnworks = {"budget_share": 1.0, "timeout_s": 120.0}  # a held post is waited for, not given up on
    config = all_flows_config(emu, tmp_path, flows=FLOWS, systems={"linnworks": linnworks})
    defs = build_definitions(config)
    (tmp_path / "instance").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "instance"))  # (schedules with resources need a stored one)
    run_job(defs, "order_sync_job", instance)
    for _ in range(3):
        emu.whistl.step()
    assert despatched_refs(emu, "linnworks") and despatched_refs(emu, "bigcommerce"), emu.timeline()["despatches"]

    # A despatch run takes the files in (its `despatches` step alone: it posts nothing).
    request = tick_sensor(defs, instance, None).run_requests[0]
    despatch = defs.resolve_job_def("despatch_job").execute_in_process(
        instance=instance, run_config=request.run_config, asset_selection=[dg.AssetKey("despatches")]
    )
    assert despatch.success
    assert tracked_refs(emu, "linnworks") == tracked_refs(emu, "bigcommerce") == set()

    sensor = defs.resolve_sensor_def("tracking_left_by_despatch_sensor")

    def retry(oms: str) -> Any:
        """One tick of the order system's retry schedule (what it asks for, or why it skips)."""
        schedule = defs.resolve_schedule_def(f"{oms}_tracking_schedule")
        resources = {"warehouse": defs.resources["warehouse"]}
        with dg.build_schedule_context(instance=instance, resources=resources) as context:
            return schedule.evaluate_tick(context)

    def asked() -> list[str]:
        with dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=despatch.dagster_run,
            dagster_event=despatch.get_run_success_event(),
            resources={"warehouse": defs.resources["warehouse"]},
        ) as context:
            return sorted(r.job_name or "" for r in sensor(context) or [])

    assert asked() == ["bigcommerce_tracking_job", "linnworks_tracking_job"]
    assert retry("linnworks").run_requests  # the retry schedule runs while posts are due
    waiting = queue_run(instance, "linnworks_tracking_job", minutes_ago=0)
    assert asked() == ["bigcommerce_tracking_job"], "a second Linnworks run was asked for while one is waiting"
    instance.delete_run(waiting.run_id)

    # Linnworks holds each tracking post unanswered; its tracking run (its own process, as the daemon starts it)
    # waits on the first when BigCommerce's starts, and still does when BigCommerce's has posted every parcel.
    set_faults(emu, "linnworks", latency_ms=100_000, only_path="SetOrderShippingInfo")
    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "FULFIL_CONFIG": str(config_file), "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "fulfil_assets.definitions"]
    posting = subprocess.Popen(
        [*command, "-j", "linnworks_tracking_job"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not emu.linnworks.held_calls:  # only a tracking post is held: the run is waiting on its first
            assert posting.poll() is None and time.monotonic() < deadline, "the Linnworks run never started posting"
            time.sleep(0.05)
        run_job(defs, "bigcommerce_tracking_job", instance)
        assert tracked_refs(emu, "bigcommerce") == despatched_refs(emu, "bigcommerce")
        assert posting.poll() is None and tracked_refs(emu, "linnworks") == set(), "Linnworks' run was not held"
        set_faults(emu, "linnworks", latency_ms=0, only_path="")
        emu.linnworks.apply_pending()
        output, _ = posting.communicate(timeout=300)
    finally:
        if posting.poll() is None:
            posting.kill()
    assert posting.returncode == 0, output[-3000:]
    assert tracked_refs(emu, "linnworks") == despatched_refs(emu, "linnworks")
    # Nothing left to post: the retry schedules start no run to do nothing.
    assert [retry(oms).skip_message for oms in ("linnworks", "bigcommerce")] == [
        "no tracking post to linnworks is due",
        "no tracking post to bigcommerce is due",
    ]
