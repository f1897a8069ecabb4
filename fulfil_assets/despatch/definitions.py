import dagster as dg

from fulfil_assets.config import FulfilConfig, every_minutes_cron
from fulfil_assets.despatch.assets import build_assets
from fulfil_assets.despatch.sensors import despatch_file_sensor_factory

WAREHOUSE_TAGS = {"fulfil/warehouse": "write"}


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The despatch stage: assets, jobs, the file sensor and the retry schedule."""
    assets = build_assets(config)
    names = {a.key.to_user_string() for a in assets}
    despatch_job = dg.define_asset_job(
        "despatch_job",
        selection=sorted(names),
        tags=WAREHOUSE_TAGS,
        description="Take in Whistl's acknowledgement, despatch and rejection files; post tracking.",
    )
    jobs = [despatch_job]
    schedules = []
    if "tracking_posts" in names:
        tracking_retry_job = dg.define_asset_job(
            "tracking_retry_job",
            selection=["tracking_posts"],
            tags=WAREHOUSE_TAGS,
            description="Post any tracking still pending (transient failures).",
        )
        jobs.append(tracking_retry_job)
        schedules.append(
            dg.ScheduleDefinition(
                name="tracking_retry_schedule",
                job=tracking_retry_job,
                cron_schedule=every_minutes_cron(config.schedules.tracking_retry_minutes),
                default_status=dg.DefaultScheduleStatus.RUNNING,
            )
        )
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=[
            despatch_file_sensor_factory(
                despatch_job, config.schedules.despatch_poll_seconds, config.schedules.despatch_settle_seconds
            )
        ],
        schedules=schedules,
    )
