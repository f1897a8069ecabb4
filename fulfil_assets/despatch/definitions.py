"""The despatch stage: Whistl's files in, Peoplevox's despatches polled, and tracking out to every order system.
A despatch run posts the tracking of what it took in itself (one run from the warehouse's file to the customer's
order: no second run to wait for); each order system's `<oms>_tracking_job` posts what is still due to it, at once
when a despatch run left some, on a schedule, and (Shopify's fulfilments) after each Linnworks order sync."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from fulfil_assets import effects
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, every_minutes_cron, is_shadow, whistl_in_shadow
from fulfil_assets.despatch.assets import DESPATCH_JOBS, FILES_CHECK, build_assets, tracking_systems
from fulfil_assets.despatch.backlog import despatch_backlog_checks
from fulfil_assets.despatch.checks import tracking_checks
from fulfil_assets.despatch.peoplevox_callbacks import inbox_dir, peoplevox_callback_sensor_factory, subscription_asset
from fulfil_assets.despatch.sensors import despatch_file_sensor_factory, peoplevox_despatch_sensor_factory
from fulfil_assets.schedules import (
    LATENCY,
    every_minutes,
    stagger,
    unfinished_run_of,
    waiting_run_of,
    waits_for_last_run,
)
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
    backlog = despatch_backlog_checks(config)  # run by their own job, not inside the despatch runs they watch
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    if "despatches" in names:
        despatch_job = dg.define_asset_job(
            "despatch_job",
            # The checks run by their own jobs, but the one the despatches step itself reports (every file taken in).
            selection=dg.AssetSelection.assets("despatches", *tracking_of(config, "whistl")).without_checks()
            | dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("despatches"), FILES_CHECK)),
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
    retry = config.schedules.tracking_retry_minutes
    if backlog:
        backlog_job = dg.define_asset_job(
            "despatch_backlog_job",
            selection=dg.AssetSelection.checks(*backlog),
            tags=LATENCY,
            description="Check that no despatch waits at a warehouse unread past `despatch_backlog_minutes`.",
        )
        jobs.append(backlog_job)
        schedules.append(every_minutes("despatch_backlog_check_schedule", backlog_job, retry))
    if systems:
        jobs.append(
            dg.define_asset_job(
                "tracking_job",
                selection=dg.AssetSelection.assets(*[["tracking_posts", oms] for oms in systems])
                | dg.AssetSelection.checks(*backlog),
                tags=LATENCY,
                description="Post the tracking still due to every order system and check the despatch backlog, by "
                "hand (the daemon runs each order system's own tracking job).",
            )
        )
        per_system = {oms: oms_tracking_job(oms) for oms in systems}
        jobs += per_system.values()
        schedules += [tracking_retry_schedule(oms, job, retry) for oms, job in per_system.items()]

        if "shopify_linnworks" in config.flows and "shopify" in per_system:
            sensors.append(tracking_after_order_sync_sensor(per_system["shopify"]))
        sensors.append(tracking_left_by_despatch_sensor(list(per_system.values())))
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors, schedules=schedules)


def oms_tracking_job(oms: str) -> "dg.UnresolvedAssetJobDefinition":
    """`<oms>_tracking_job`: the tracking still due to one order system, so that one system slow at its rate limit
    (Shopify's fulfilments, Cin7 at its share) never holds another's tracking in the same run."""
    return dg.define_asset_job(
        f"{oms}_tracking_job",
        selection=dg.AssetSelection.assets(["tracking_posts", oms]),  # with its `tracking_reached_...` check
        tags=LATENCY,
        description=f"Post the tracking still due to {oms} (what a despatch run could not post in its time"
        + (", and the fulfilments of orders Linnworks processed)." if oms == "shopify" else ")."),
    )


def tracking_after_order_sync_sensor(job: "dg.UnresolvedAssetJobDefinition") -> dg.SensorDefinition:
    """After each successful Linnworks order sync or whole pass (Shopify's fulfilments come from the orders Linnworks
    processed), one run of Shopify's tracking job, unless one is still waiting to start: that one posts them."""

    @dg.run_status_sensor(
        name="tracking_after_order_sync_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        request_job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=TRACKING_SENSOR_INTERVAL_S,
    )
    def _sensor(context: dg.RunStatusSensorContext) -> Iterator[dg.RunRequest]:
        if context.dagster_run.job_name in TRACKING_AFTER and not waiting_run_of(context.instance, job.name):
            yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:tracking")

    return _sensor


def tracking_left_by_despatch_sensor(jobs: "list[dg.UnresolvedAssetJobDefinition]") -> dg.SensorDefinition:
    """After a despatch run whose posting time was up (`tracking_in_despatch_seconds`) with posts still due: a run
    of each such order system's tracking job at once, not at the next `tracking_retry_minutes`; none for a system
    whose tracking run is waiting to start or going (it takes them)."""
    by_oms = {job.name.removesuffix("_tracking_job"): job for job in jobs}

    @dg.run_status_sensor(
        name="tracking_left_by_despatch_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        request_jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=TRACKING_SENSOR_INTERVAL_S,
    )
    def _sensor(context: dg.RunStatusSensorContext, warehouse: Warehouse) -> Iterator[dg.RunRequest]:
        if context.dagster_run.job_name not in DESPATCH_JOBS:
            return
        if unfinished_run_of(context.instance, "tracking_job") is not None:  # a run by hand posts them all
            return
        for oms in sorted(systems_with_tracking_due(warehouse)):
            job = by_oms.get(oms)
            if job is not None and unfinished_run_of(context.instance, job.name) is None:
                yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:tracking-left:{oms}", job_name=job.name)

    return _sensor


def systems_with_tracking_due(warehouse: Warehouse) -> set[str]:
    """The order systems with a tracking post pending or unconfirmed."""
    due = warehouse.get_db().read(
        f"SELECT DISTINCT oms FROM {SCHEMA}.tracking_posts WHERE status IN ('{effects.PENDING}', '{effects.SENDING}')"
    )
    return set(due["oms"].to_list())


def tracking_retry_schedule(oms: str, job: "dg.UnresolvedAssetJobDefinition", minutes: int) -> dg.ScheduleDefinition:
    """`<oms>_tracking_schedule`: that system's tracking job every `minutes`, for posts still due; a tick is
    skipped, with the reason, while the job's last run is unfinished or (but for Shopify, whose fulfilments its run
    plans from the orders Linnworks processed) when no post to the system is due: no process started to do nothing."""
    name = f"{oms}_tracking_schedule"

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=every_minutes_cron(minutes, stagger(name, minutes)),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every {minutes} minutes, when tracking to {oms} is due and no {job.name} run is unfinished.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext, warehouse: Warehouse) -> dg.RunRequest | dg.SkipReason:
        if (waiting := waits_for_last_run(context.instance, job.name)) is not None:
            return waiting
        if oms != "shopify" and oms not in systems_with_tracking_due(warehouse):
            return dg.SkipReason(f"no tracking post to {oms} is due")
        return dg.RunRequest()

    return _schedule
