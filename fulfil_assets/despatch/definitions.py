import dagster as dg

from fulfil_assets.despatch.assets import despatches, tracking_posts
from fulfil_assets.despatch.sensors import despatch_file_sensor_factory

WAREHOUSE_TAGS = {"fulfil/warehouse": "write"}
despatch_job = dg.define_asset_job(
    "despatch_job",
    selection=[despatches, tracking_posts],
    tags=WAREHOUSE_TAGS,
    description="Take in Whistl's despatch and rejection files; post tracking.",
)
tracking_retry_job = dg.define_asset_job(
    "tracking_retry_job",
    selection=[tracking_posts],
    tags=WAREHOUSE_TAGS,
    description="Post any tracking still pending (transient failures).",
)


def build_defs(poll_seconds: int, retry_minutes: int) -> dg.Definitions:
    """The despatch stage: assets, jobs, the file sensor and the retry schedule."""
    return dg.Definitions(
        assets=[despatches, tracking_posts],
        jobs=[despatch_job, tracking_retry_job],
        sensors=[despatch_file_sensor_factory(despatch_job, poll_seconds)],
        schedules=[
            dg.ScheduleDefinition(
                name="tracking_retry_schedule",
                job=tracking_retry_job,
                cron_schedule=f"*/{retry_minutes} * * * *",
                default_status=dg.DefaultScheduleStatus.RUNNING,
            )
        ],
    )
