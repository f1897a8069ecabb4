"""Two runs calling one system at once spend the account share fulfil.yaml gives, not twice it: two of Cin7's order
syncs, each a real `dagster job execute` process with its own Dagster instance (so no pool stands between them),
draw on one budget. Counted at the Cin7 emulator: in the minute from the first call it
receives exactly `budget_share` of Cin7's 60 a minute, while both runs are inside their Cin7 read wanting more
(each alone would spend that within seconds); the runs are stopped 25 s in."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from flow_helpers import Drill, all_flows_config, kill_run

from emulators.server import Emulators
from resources.cin7 import CALLS_PER_MINUTE

SHARE = 0.05  # three calls a minute: each run alone wants more than that within seconds
ALLOWED = int(CALLS_PER_MINUTE * SHARE)


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the budget is the same on PostgreSQL
def test_two_runs_calling_cin7_at_once_keep_to_one_share(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    config = all_flows_config(
        emu, tmp_path, flows=["cin7_whistl"], systems={"cin7": {"base_url": emu.url("cin7"), "budget_share": SHARE}}
    )
    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    drill = Drill(tmp_path, config_file)
    emu.cin7.recorder.clear()
    envs = [drill.env(), drill.env()]
    runs = [
        subprocess.Popen(
            drill.command(job), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for job, env in zip(("cin7_order_sync_job", "cin7_order_sync_job"), envs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(emu.cin7.recorder.calls) < ALLOWED and time.monotonic() < deadline:
            time.sleep(0.5)
        first = emu.cin7.recorder.calls[0].at if emu.cin7.recorder.calls else None
        assert first is not None, "neither run reached Cin7"
        time.sleep(max(0.0, first + 25 - time.time()))  # both runs want many more calls meanwhile
        assert all(run.poll() is None for run in runs), "a run ended early: it was not held by the budget"
        # Both runs are inside their Cin7 read, the step that calls Cin7 from its first line.
        assert [reading_cin7(Path(env["DAGSTER_HOME"])) for env in envs] == [True, True]
    finally:
        for run in runs:
            kill_run(run)
    calls = list(emu.cin7.recorder.calls)
    in_first_window = [c for c in calls if c.at < first + 60]
    assert len(in_first_window) == ALLOWED, [(c.method, c.path) for c in calls]


def reading_cin7(home: Path) -> bool:
    """Whether the one run of this Dagster instance has started its Cin7 read (`cin7_raw`) and not ended it."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        steps = instance.get_run_step_stats(run.run_id, step_keys=["cin7_raw"])
    return bool(steps) and steps[0].end_time is None
