"""fulfil's recurring jobs: each on an 'every N minutes' schedule that skips its tick while the job's last run is
still queued or going, so slow runs never pile up behind one another (each would read and send the same orders,
and together they keep a system's pool busy so that other flows' runs wait behind them)."""

from __future__ import annotations

import dagster as dg

from fulfil_assets.config import every_minutes_cron

# A run in one of these states has not finished: the next tick waits for it.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def unfinished_run_of(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun | None:
    """The job's newest run that has not finished yet, if any."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=UNFINISHED), limit=1)
    return records[0].dagster_run if records else None


def every_minutes(
    name: str, job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition, minutes: int
) -> dg.ScheduleDefinition:
    """`job` every `minutes` minutes, on by default; a tick that finds the job's last run unfinished is skipped
    with a reason naming that run (shown on the schedule's page in the UI)."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=every_minutes_cron(minutes),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every {minutes} minutes; skipped while the last {job.name} run is still queued or going.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        running = unfinished_run_of(context.instance, job.name)
        if running is not None:
            return dg.SkipReason(
                f"{job.name} run {running.run_id} is still {running.status.value.lower()}: this tick waits for it"
            )
        return dg.RunRequest()

    return _schedule
