"""Every recurring job waits for its last run: a schedule tick that finds one still queued or going is skipped with
a reason naming it, so slow runs never pile up and hold a system's pool against other flows' runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from fulfil_assets.config import load_config
from fulfil_assets.definitions import build_definitions


def _tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance) -> dg.ScheduleExecutionData:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC))
    return schedule.evaluate_tick(context)


def test_each_schedule_skips_while_its_jobs_last_run_is_unfinished_and_fires_once_it_ends(tmp_path: Path) -> None:
    defs = build_definitions(load_config(Path("fulfil.yaml")))
    schedules = list(defs.schedules or [])
    assert {"order_sync_schedule", "cancellation_schedule", "reconcile_schedule"} <= {s.name for s in schedules}
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        for schedule in schedules:
            assert isinstance(schedule, dg.ScheduleDefinition)
            assert len(_tick(schedule, instance).run_requests or []) == 1, schedule.name

            for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED):
                run = instance.add_run(
                    dg.DagsterRun(job_name=schedule.job_name, run_id=str(uuid.uuid4()), status=status)
                )
                tick = _tick(schedule, instance)
                assert not tick.run_requests, f"{schedule.name} fired beside a {status.value} run"
                assert run.run_id in (tick.skip_message or ""), tick.skip_message
                instance.report_run_failed(run)

            assert len(_tick(schedule, instance).run_requests or []) == 1, f"{schedule.name} stayed skipped"
