"""The despatch stage: Whistl's files in (one run per file), Peoplevox's despatches polled, and tracking out to
every order system in its own job, which never holds the warehouse slot."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from fulfil_assets.config import FulfilConfig, is_shadow
from fulfil_assets.despatch.assets import build_assets, tracking_systems
from fulfil_assets.despatch.backlog import despatch_backlog_checks
from fulfil_assets.despatch.checks import tracking_checks
from fulfil_assets.despatch.peoplevox_callbacks import inbox_dir, peoplevox_callback_sensor_factory, subscription_asset
from fulfil_assets.despatch.sensors import despatch_file_sensor_factory
from fulfil_assets.schedules import LATENCY, every_minutes, waiting_run_of

# Runs after which tracking may be due: a despatch file, a Peoplevox despatch poll, a Linnworks order sync (its
# processed orders, for Shopify fulfilments) or a whole pass.
TRACKING_AFTER = ("despatch_job", "peoplevox_despatch_job", "linnworks_order_sync_job", "order_sync_job")


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The despatch stage's assets, checks, jobs, sensors and schedules for the configured flows."""
    assets = build_assets(config)
    names = {a.key.to_user_string() for a in assets}
    backlog = despatch_backlog_checks(config)  # run by tracking_job, not inside the despatch runs they watch
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    if "despatches" in names:
        despatch_job = dg.define_asset_job(
            "despatch_job",
            selection=dg.AssetSelection.assets("despatches") - dg.AssetSelection.checks(*backlog),
            tags=LATENCY,
            description="Take in Whistl's acknowledgement, despatch and rejection files; plan the tracking posts.",
        )
        jobs.append(despatch_job)
        sensors.append(
            despatch_file_sensor_factory(
                despatch_job, config.schedules.despatch_poll_seconds, config.schedules.despatch_settle_seconds
            )
        )
    if (pvx := config.systems.peoplevox) is not None:
        selected: list[Any] = [["raw_peoplevox", "despatches"], "peoplevox_despatch_lines"]
        if pvx.callback_url is not None:
            flow = "linnworks_peoplevox"
            assets.append(subscription_asset(str(pvx.callback_url), flow, is_shadow(config, flow)))
            selected.append("peoplevox_callback_subscription")
        peoplevox_job = dg.define_asset_job(
            "peoplevox_despatch_job",
            selection=dg.AssetSelection.assets(*selected) - dg.AssetSelection.checks(*backlog),
            tags=LATENCY,
            description="Ask Peoplevox for new despatches and plan their tracking posts (and, with a callback URL, "
            "make sure Peoplevox calls back on each despatch).",
        )
        jobs.append(peoplevox_job)
        if pvx.callback_url is not None:
            sensors.append(peoplevox_callback_sensor_factory(peoplevox_job, inbox_dir()))
        schedules.append(
            every_minutes("peoplevox_despatch_schedule", peoplevox_job, config.schedules.peoplevox_despatch_minutes)
        )
    systems = tracking_systems(config)
    checks = [c for oms in systems for c in tracking_checks(oms, config.schedules.tracking_wait_minutes)] + backlog
    if systems:
        tracking_job = dg.define_asset_job(
            "tracking_job",
            selection=dg.AssetSelection.assets(*[["tracking_posts", oms] for oms in systems])
            | dg.AssetSelection.checks(*backlog),
            tags=LATENCY,
            description="Post the tracking due to each order system: each post is read, sent and recorded in short "
            "steps, so a slow order system never holds a despatch run.",
        )
        jobs.append(tracking_job)
        schedules.append(every_minutes("tracking_schedule", tracking_job, config.schedules.tracking_retry_minutes))

        @dg.run_status_sensor(
            run_status=dg.DagsterRunStatus.SUCCESS,
            request_job=tracking_job,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
        def tracking_after_despatch_sensor(context: dg.RunStatusSensorContext) -> Iterator[dg.RunRequest]:
            """After each successful run that may have planned tracking, one tracking run (once per run), unless a
            tracking run is still waiting to start: that one posts whatever this run planned."""
            if context.dagster_run.job_name in TRACKING_AFTER and not waiting_run_of(context.instance, "tracking_job"):
                yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:tracking")

        sensors.append(tracking_after_despatch_sensor)
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors, schedules=schedules)
