"""fulfil's recurring jobs and how the run queue orders them.

Each job is on an 'every N minutes' schedule that skips its tick while the job's last run is still queued or going,
so slow runs never pile up behind one another (each would read and send the same orders, and together they keep a
system's pool busy so that other flows' runs wait behind them). An order sync is pipelined instead: with one run
going, a tick starts the next, which reads as soon as the one before has read (its system's pool) while that one
stages and sends, so a system at its rate limit never idles between runs; a second run waiting is never added.
Schedules of one interval start at different minutes, so they do not all fire at the same second.

Each job runs in a lane (the run tag `fulfil/lane`) with a queue priority (`dagster/priority`): despatch intake and
tracking first; then each order system's cancellations; then the order syncs; each flow's stock job, then reconcile,
the analysts' copy and whole passes last. The instance (deploy/dagster.yaml) bounds every lane but latency, so their
runs never take every slot; stock has a lane of its own, so a stock job waiting on a system's rate limit never holds
reconcile or the analysts' copy.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import dagster as dg

from fulfil_assets.config import every_minutes_cron

LANE_TAG = "fulfil/lane"
LATENCY = {LANE_TAG: "latency", "dagster/priority": "10"}
CANCELS = {LANE_TAG: "cancellations", "dagster/priority": "8"}  # read their order system first: bounded lane
ORDERS = {LANE_TAG: "orders", "dagster/priority": "5"}
STOCK = {LANE_TAG: "stock", "dagster/priority": "1"}
BACKGROUND = {LANE_TAG: "background", "dagster/priority": "0"}

# A run in one of these states has not finished: the next tick waits for it.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


# A run in one of these states has not begun its work: a request for the same work can wait for it.
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


def unfinished_run_of(
    instance: dg.DagsterInstance, job_name: str, statuses: list[dg.DagsterRunStatus] = UNFINISHED
) -> dg.DagsterRun | None:
    """The job's newest run that has not finished yet (or, with `statuses=WAITING`, not begun), if any."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=statuses), limit=1)
    return records[0].dagster_run if records else None


def waiting_run_of(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun | None:
    """The job's run that is queued or starting and has not yet read anything: it will do whatever a new request
    for the same job would, so sensors ask for no second one (a job never has two runs queued for one piece of
    work)."""
    return unfinished_run_of(instance, job_name, WAITING)


def stagger(name: str, minutes: int) -> int:
    """A minute offset in [0, minutes) fixed by the schedule's name, so schedules of one interval start apart."""
    return zlib.crc32(name.encode()) % min(minutes, 60)


def every_minutes(
    name: str, job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition, minutes: int, pools: Sequence[str] = ()
) -> dg.ScheduleDefinition:
    """`job` every `minutes` minutes, on by default; a tick that finds the job's last run unfinished is skipped
    with a reason naming that run (shown on the schedule's page in the UI). With `pools` (those of the systems its
    steps read), the job is pipelined instead (`waits_for_turn`)."""

    def skip(instance: dg.DagsterInstance, job_name: str) -> dg.SkipReason | None:
        return waits_for_turn(instance, job_name, pools) if pools else waits_for_last_run(instance, job_name)

    when = (
        "a run is queued, two are going or a lower-priority job waits for one of its pools"
        if pools
        else "the last run is still queued or going"
    )

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=every_minutes_cron(minutes, stagger(name, minutes)),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every {minutes} minutes; skipped while {when} ({job.name}).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return skip(context.instance, job.name) or dg.RunRequest()

    return _schedule


def waits_for_last_run(instance: dg.DagsterInstance, job_name: str) -> dg.SkipReason | None:
    """A schedule tick's skip, naming the run, while the job's last run is unfinished; None once it has ended."""
    running = unfinished_run_of(instance, job_name)
    if running is None:
        return None
    return dg.SkipReason(
        f"{job_name} run {running.run_id} is still {running.status.value.lower()}: this tick waits for it"
    )


def waits_for_turn(instance: dg.DagsterInstance, job_name: str, pools: Sequence[str]) -> dg.SkipReason | None:
    """A pipelined job's tick: skipped, naming the run, while one of its runs waits to start, two are unfinished,
    or a step of a job of lower priority waits for one of `pools` (a stock job, the audit: a pool goes to the
    highest priority waiting, so order syncs always waiting, this system's or another reading the same system's
    catalogue, would hold them off for good; a cancellation job's goes first anyway); else None: beside one run
    going, the next starts and reads once that one has read (and any cancellation job waiting), while that one
    stages and sends."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=UNFINISHED), limit=2)
    runs = [r.dagster_run for r in records]
    blocking = next((r for r in runs if r.status in WAITING), None) or (runs[0] if len(runs) == 2 else None)
    if blocking is not None:
        return dg.SkipReason(
            f"{job_name} run {blocking.run_id} is still {blocking.status.value.lower()}"
            + ("" if blocking.status in WAITING else " beside another")
            + ": this tick waits for it"
        )
    if not runs:
        return None
    priority = int(runs[0].tags.get("dagster/priority", 0))
    for pool in pools:
        waiting = [
            step
            for step in instance.event_log_storage.get_concurrency_info(pool).pending_steps
            if step.assigned_timestamp is None and step.run_id != runs[0].run_id and (step.priority or 0) < priority
        ]
        if waiting:
            run = instance.get_run_by_id(waiting[0].run_id)
            return dg.SkipReason(
                f"{run.job_name if run else 'a'} run {waiting[0].run_id} waits for the {pool} pool: this tick lets it "
                "go first"
            )
    return None
