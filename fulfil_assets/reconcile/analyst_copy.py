"""The copy of the embedded warehouse that analysts query: published after the runs that change it, so that an
analyst's connection never holds the file a run must write."""

import dagster as dg

from fulfil_assets.schedules import BACKGROUND, waiting_run_of
from resources.warehouse import Warehouse, warehouse_url

# Jobs whose success changes what analysts read (and every order system's `<oms>_order_sync_job`,
# `<oms>_cancellation_job` and `<oms>_tracking_job`).
WRITERS = (
    "order_sync_job",
    "despatch_job",
    "peoplevox_despatch_job",
    "tracking_job",
    "reconcile_job",
)
PER_SYSTEM_WRITERS = ("_order_sync_job", "_cancellation_job", "_tracking_job")
COPY_EVERY_S = 60


@dg.asset(group_name="reconcile", kinds={"duckdb"})
def analyst_copy(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """A consistent copy of the whole warehouse (`<warehouse>.analysts.duckdb`, every schema), replaced in one
    rename: open it read-only (`duckdb.connect(path, read_only=True)`) to query while runs write. On PostgreSQL
    there is nothing to publish: query the warehouse itself."""
    db = warehouse.get_db()
    path = db.publish_analyst_copy()
    if path is None:
        context.log.info("PostgreSQL warehouse: analysts query it directly")
        return dg.MaterializeResult(metadata={"published": False})
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "size_mb": round(path.stat().st_size / 2**20, 1)}
    )


analyst_copy_job = dg.define_asset_job(
    "analyst_copy_job",
    selection=[analyst_copy],
    tags=BACKGROUND,
    description="Publish the copy of the warehouse analysts query.",
)


@dg.sensor(job=analyst_copy_job, minimum_interval_seconds=COPY_EVERY_S, default_status=dg.DefaultSensorStatus.RUNNING)
def analyst_copy_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """At most once a minute, a new copy for analysts when a run that changes the warehouse has succeeded since
    the last one (the cursor is the newest such run's end); none while a copy run is still waiting to start, as
    that one will copy the newer state. On PostgreSQL there is no copy to publish: no run at all."""
    if not warehouse_url().startswith("duckdb"):
        return dg.SensorResult(skip_reason="a PostgreSQL warehouse: analysts query it directly, no copy to publish")
    if (waiting := waiting_run_of(context.instance, analyst_copy_job.name)) is not None:
        return dg.SensorResult(skip_reason=f"copy run {waiting.run_id} has not started yet", cursor=context.cursor)
    since = float(context.cursor) if context.cursor else 0.0
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=None, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=50
    )
    ended = [
        r.end_time
        for r in records
        if (r.dagster_run.job_name in WRITERS or r.dagster_run.job_name.endswith(PER_SYSTEM_WRITERS))
        and r.end_time
        and r.end_time > since
    ]
    if not ended:
        return dg.SensorResult(run_requests=[], cursor=context.cursor)
    newest = max(ended)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"analysts:{newest}")], cursor=str(newest))
