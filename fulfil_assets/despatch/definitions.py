"""The despatch stage: Whistl's files in, Peoplevox's despatches polled, and tracking out to every order system.
A despatch run posts the tracking of what it took in itself (one run from the warehouse's file to the customer's
order: no second run to wait for); `tracking_job` posts what is still due on a schedule, and Shopify's
fulfilments after each Linnworks order sync."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from fulfil_assets import effects
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, is_shadow, whistl_in_shadow
from fulfil_assets.despatch.assets import DESPATCH_JOBS, build_assets, tracking_systems
from fulfil_assets.despatch.backlog import despatch_backlog_checks
from fulfil_assets.despatch.checks import tracking_checks
from fulfil_assets.despatch.peoplevox_callbacks import inbox_dir, peoplevox_callback_sensor_factory, subscription_asset
from fulfil_assets.despatch.sensors import despatch_file_sensor_factory, peoplevox_despatch_sensor_factory
from fulfil_assets.schedules import LATENCY, every_minutes, unfinished_run_of, waiting_run_of
from resources.warehouse import SCHEMA, Warehouse

# Runs after which tracking may be due that do not post it themselves: a Linnworks order sync (its processed
# orders, for Shopify fulfilments) or a whole pass.
TRACKING_AFTER = ("linnworks_order_sync_job", "order_sync_job")
TRACKING_SENSOR_INTERVAL_S = 10


def tracking_of(config: FulfilConfig, wms: str) -> list[list[str]]:
    """The `tracking_posts/<oms>` asset keys a despatch of `wms` makes due: the order systems of the flows that send
    to it, and Shopify where its orders reach `wms` through Linnworks (`shopify_linnworks`, `linnworks_<wms>`)."""
    due = {FLOW_SYSTEMS[f][0] for f in config.flows if FLOW_SYSTEMS[f][1] == wms}
    if "shopify_linnworks" in config.flows and f"linnworks_{wms}" in config.flows:
        due.add("shopify")
    return [["tracking_posts", oms] for oms in sorted(due & set(tracking_systems(config)))]


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
            selection=dg.AssetSelection.assets("despatches", *tracking_of(config, "whistl")).without_checks(),
            tags=LATENCY,
            description="Take in Whistl's acknowledgement, despatch and rejection files and post the tracking of "
            "what was despatched.",
        )
        jobs.append(despatch_job)
        sensors.append(
            despatch_file_sensor_factory(
                despatch_job,
                config.schedules.despatch_poll_seconds,
                config.schedules.despatch_settle_seconds,
                whistl_in_shadow(config),
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
            selection=dg.AssetSelection.assets(*selected, *tracking_of(config, "peoplevox")).without_checks(),
            tags=LATENCY,
            description="Read Peoplevox's new despatches and post their tracking (and, with a callback URL, make "
            "sure Peoplevox calls back on each despatch). Started by `peoplevox_despatch_sensor` as soon as Peoplevox "
            "reports a despatch, with the schedule as a backstop.",
        )
        jobs.append(peoplevox_job)
        sensors.append(peoplevox_despatch_sensor_factory(peoplevox_job, config.schedules.despatch_poll_seconds))
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
            description="Post the tracking still due to each order system (what a despatch run could not post, "
            "Shopify's fulfilments once Linnworks processed the order) and check the despatch backlog.",
        )
        jobs.append(tracking_job)
        schedules.append(every_minutes("tracking_schedule", tracking_job, config.schedules.tracking_retry_minutes))

        @dg.run_status_sensor(
            run_status=dg.DagsterRunStatus.SUCCESS,
            request_job=tracking_job,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=TRACKING_SENSOR_INTERVAL_S,
        )
        def tracking_after_order_sync_sensor(context: dg.RunStatusSensorContext) -> Iterator[dg.RunRequest]:
            """After each successful Linnworks order sync or whole pass (Shopify's fulfilments come from the orders
            Linnworks processed), one tracking run, unless a tracking run is still waiting to start: that one posts
            them."""
            if context.dagster_run.job_name in TRACKING_AFTER and not waiting_run_of(context.instance, "tracking_job"):
                yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:tracking")

        if "shopify_linnworks" in config.flows:
            sensors.append(tracking_after_order_sync_sensor)

        @dg.run_status_sensor(
            run_status=dg.DagsterRunStatus.SUCCESS,
            request_job=tracking_job,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=TRACKING_SENSOR_INTERVAL_S,
        )
        def tracking_left_by_despatch_sensor(
            context: dg.RunStatusSensorContext, warehouse: Warehouse
        ) -> Iterator[dg.RunRequest]:
            """After a despatch run whose posting time was up (`tracking_in_despatch_seconds`) with posts still due:
            one tracking run for them at once, not at the next `tracking_retry_minutes`; none while a tracking run
            is waiting to start or going (it takes them)."""
            if context.dagster_run.job_name not in DESPATCH_JOBS:
                return
            if unfinished_run_of(context.instance, "tracking_job") is not None:
                return
            due = warehouse.get_db().read(
                f"SELECT COUNT(*) AS n FROM {SCHEMA}.tracking_posts "
                f"WHERE status IN ('{effects.PENDING}', '{effects.SENDING}')"
            )
            if int(due["n"][0]):
                yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:tracking-left")

        sensors.append(tracking_left_by_despatch_sensor)
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors, schedules=schedules)
