"""The stock stage's Definitions, built for the flows fulfil.yaml configures."""

from collections.abc import Iterator

import dagster as dg

from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, stock_config
from fulfil_assets.ingest.assets import ingest_group
from fulfil_assets.schedules import STOCK, every_minutes, waiting_run_of
from fulfil_assets.stock.assets import stock_assets


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Per flow: its stock assets, a job (ingest both systems, stage stock and orders, push) on the flow's own
    schedule (the push asset's freshness policy turns red when it is older than twice that); and a sensor
    that runs the Whistl flows' stock jobs right after a despatch file is processed, so that what shipped leaves
    the storefront fast."""
    assets = stock_assets(config)
    jobs, schedules = [], []
    for flow, asset in zip(config.flows, assets, strict=True):
        minutes = stock_config(config, flow).every_minutes
        groups = [ingest_group(s) for s in FLOW_SYSTEMS[flow]]
        job = dg.define_asset_job(
            f"{flow}_stock_job",
            selection=dg.AssetSelection.groups(*groups)
            | dg.AssetSelection.assets("orders", "order_lines", "oms_stock", "wms_stock")
            | dg.AssetSelection.assets(asset),
            tags=STOCK,
            description=f"Read {' and '.join(FLOW_SYSTEMS[flow])}, stage stock and orders, and send {flow}'s "
            "changed available-to-sell levels.",
        )
        jobs.append(job)
        schedules.append(every_minutes(f"{flow}_stock_schedule", job, minutes))
    after = [j for f, j in zip(config.flows, jobs, strict=True) if FLOW_SYSTEMS[f][1] == "whistl"]
    sensors = []
    if after:

        @dg.run_status_sensor(
            run_status=dg.DagsterRunStatus.SUCCESS,
            request_jobs=after,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
        def stock_after_despatch_sensor(context: dg.RunStatusSensorContext) -> Iterator[dg.RunRequest]:
            """After each successful despatch run, one stock run per Whistl flow (once per despatch run), unless
            that flow's stock run is still waiting to start: it will read the despatch too."""
            if context.dagster_run.job_name != "despatch_job":
                return
            for job in after:
                if waiting_run_of(context.instance, job.name) is None:
                    yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:{job.name}", job_name=job.name)

        sensors.append(stock_after_despatch_sensor)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors)
