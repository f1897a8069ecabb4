"""The fulfil code location: one small Definitions per stage of the data path, resources bound once."""

import os
import warnings

import dagster as dg

from fulfil_assets import dagster_fixes
from fulfil_assets.alerts import (
    alerts_job,
    failed_check_alert_sensor,
    queued_run_alert_sensor,
    run_failure_alert_sensor,
)
from fulfil_assets.audit import assets as audit
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, load_config, target_of
from fulfil_assets.despatch import definitions as despatch
from fulfil_assets.ingest import definitions as ingest
from fulfil_assets.ingest.assets import RAW_ASSETS, READ_MINUTES_TAG, RawDltResource, ingest_group
from fulfil_assets.ingest.cursors import CANCELLATION_READ_MINUTES, READ_MINUTES
from fulfil_assets.push import definitions as push
from fulfil_assets.push.assets import SUBMISSION_ASSETS
from fulfil_assets.push.cancel_assets import cancellation_assets
from fulfil_assets.reconcile import definitions as reconcile
from fulfil_assets.reconcile.reconciled import type_label
from fulfil_assets.schedules import BACKGROUND, CANCELS, ORDERS, every_minutes
from fulfil_assets.stage import definitions as stage
from fulfil_assets.stage.assets import ORDER_STAGING
from fulfil_assets.stock import definitions as stock
from fulfil_assets.validate import definitions as validate
from fulfil_assets.validate.assets import ORDER_SYSTEM_TAG, TARGET_READS
from fulfil_assets.warehouse_tables import COLUMN_DESCRIPTIONS, FulfilWarehouse, table_schema
from resources.bigcommerce import BigCommerceResource
from resources.cin7 import Cin7Resource
from resources.file_drop import FileDrop
from resources.linnworks import LinnworksResource
from resources.peoplevox import PeoplevoxResource
from resources.shopify import ShopifyResource
from resources.warehouse import warehouse_url
from resources.webhook import AlertWebhook


def resources_for(config: FulfilConfig) -> dict[str, object]:
    """Resources from fulfil.yaml for the systems it configures; every secret comes from the environment
    through `EnvVar`."""
    systems = config.systems
    resources: dict[str, object] = {"warehouse": FulfilWarehouse(url=warehouse_url()), "dlt": RawDltResource()}
    if (lw := systems.linnworks) is not None:
        creds = lw.credentials
        resources["linnworks"] = LinnworksResource(
            base_url=lw.base_url,
            application_id=dg.EnvVar(creds.application_id),
            application_secret=dg.EnvVar(creds.application_secret),
            token=dg.EnvVar(creds.token),
            budget_share=lw.budget_share,
            timeout_s=lw.timeout_s,
        )
    if (whistl := systems.whistl) is not None:
        resources["whistl_drop"] = (
            FileDrop(
                url=whistl.drop_url,
                password=dg.EnvVar(whistl.password_env),
                host_key=whistl.host_key or "",
                known_hosts=whistl.known_hosts or "",
            )
            if whistl.drop_url.startswith("sftp://")
            else FileDrop(url=whistl.drop_url)
        )
    if (c7 := systems.cin7) is not None:
        resources["cin7"] = Cin7Resource(
            base_url=c7.base_url,
            account_id=dg.EnvVar(c7.credentials.account_id),
            application_key=dg.EnvVar(c7.credentials.application_key),
            budget_share=c7.budget_share,
        )
    if (shop := systems.shopify) is not None:
        resources["shopify"] = ShopifyResource(
            base_url=shop.base_url,
            access_token=dg.EnvVar(shop.credentials.access_token),
            budget_share=shop.budget_share,
            leak_per_s=shop.leak_per_s,
        )
    if (bc := systems.bigcommerce) is not None:
        resources["bigcommerce"] = BigCommerceResource(
            base_url=bc.base_url, access_token=dg.EnvVar(bc.credentials.access_token), budget_share=bc.budget_share
        )
    if (pvx := systems.peoplevox) is not None:
        creds_p = pvx.credentials
        resources["peoplevox"] = PeoplevoxResource(
            base_url=pvx.base_url,
            client_id=dg.EnvVar(creds_p.client_id),
            username=dg.EnvVar(creds_p.username),
            password=dg.EnvVar(creds_p.password),
            budget_share=pvx.budget_share,
            **({"callback_token": dg.EnvVar(creds_p.callback_token)} if pvx.callback_url else {}),
        )
    return resources


def cancellation_defs(config: FulfilConfig) -> dg.Definitions:
    """A cancellation job per order system (read its orders, stage them, send the cancellations they show to the
    warehouses) on a short schedule, so that a cancellation beats the warehouse's picking cut-off and one order
    system slow at its rate limit (Cin7) never holds another's cancellations."""
    cancelling = {a.key.path[-1].removesuffix("_cancellations"): a.key for a in cancellation_assets(config)}
    if not cancelling:
        return dg.Definitions()
    jobs, schedules = [], []
    for oms in sorted({FLOW_SYSTEMS[f][0] for f in config.flows}):
        raw = order_raw_keys(oms)
        targets = sorted({target_of(f) for f in config.flows if FLOW_SYSTEMS[f][0] == oms})
        job = dg.define_asset_job(
            f"{oms}_cancellation_job",
            selection=dg.AssetSelection.assets(*raw, "orders", "order_lines", *(cancelling[t] for t in targets)),
            # A quarter-minute of detail reads at most: the orders it reads wait for the next order sync to send
            # them, so it keeps the system's pool from the order sync only briefly.
            tags={**CANCELS, READ_MINUTES_TAG: str(CANCELLATION_READ_MINUTES)},
            description=f"Read {oms}'s orders, stage them, and send the cancellations they show to the warehouse "
            "before it picks.",
        )
        jobs.append(job)
        schedules.append(every_minutes(f"{oms}_cancellation_schedule", job, config.schedules.cancellation_minutes))
    return dg.Definitions(jobs=jobs, schedules=schedules)


def order_raw_keys(oms: str) -> list[dg.AssetKey]:
    """The raw tables of `oms` its orders are staged from: what an order or cancellation run reads from it (its
    stock, catalogue and reference lists are the stock job's to read, not every minute's)."""
    return [dg.AssetKey([f"raw_{oms}", dep]) for dep in ORDER_STAGING[oms].deps]


def order_sync_defs(config: FulfilConfig) -> dg.Definitions:
    """The order sync: one job and schedule per order system, so that each system's orders reach their warehouse
    on its own cadence (a Cin7 backlog or a failing Shopify holds only its own job), and `order_sync_job`, every
    system at once, for a whole pass started by hand."""
    whole = dg.define_asset_job(
        "order_sync_job",
        selection=dg.AssetSelection.groups(*(ingest_group(s) for s in RAW_ASSETS), "stage", "validate", "push"),
        tags=BACKGROUND,
        description="Every system at once: ingest orders and stock, stage, validate, and send what is ready to the "
        "warehouses (the scheduled syncs run per order system).",
    )
    jobs: list[dg.UnresolvedAssetJobDefinition] = [whole]
    schedules = []
    for oms in sorted({FLOW_SYSTEMS[f][0] for f in config.flows}):
        flows = [f for f in config.flows if FLOW_SYSTEMS[f][0] == oms]
        wms = sorted({FLOW_SYSTEMS[f][1] for f in flows} & set(RAW_ASSETS))
        job = dg.define_asset_job(
            f"{oms}_order_sync_job",
            selection=dg.AssetSelection.assets(*order_raw_keys(oms))
            | dg.AssetSelection.assets(*(dg.AssetKey([f"raw_{t}", table]) for t in wms for table in TARGET_READS[t]))
            | dg.AssetSelection.groups("validate")
            | dg.AssetSelection.assets("orders", "order_lines", "wms_stock")
            | dg.AssetSelection.assets(*sorted({SUBMISSION_ASSETS[target_of(f)] for f in flows})),
            # A run reads its interval's worth of details (two minutes at least): a backlog drains at the share.
            tags={
                **ORDERS,
                READ_MINUTES_TAG: str(max(READ_MINUTES, config.schedules.order_sync_minutes)),
                ORDER_SYSTEM_TAG: oms,  # its validation checks this system's orders only
            },
            description=f"Read {oms}'s orders (and the catalogue and service codes of the targets its flows send "
            f"to), stage and validate them, and send what is ready ({oms}'s stock is its stock job's to read).",
        )
        jobs.append(job)
        schedules.append(
            every_minutes(
                f"{oms}_order_sync_schedule", job, config.schedules.order_sync_minutes, pools=sorted({oms, *wms})
            )
        )
    return dg.Definitions(jobs=jobs, schedules=schedules)


def build_definitions(config: FulfilConfig) -> dg.Definitions:
    """All stages merged, with the order sync jobs and their schedules."""
    sync = order_sync_defs(config)
    cancel_defs = cancellation_defs(config)
    stages = [
        ingest.build_defs(config),
        stage.build_defs(config),
        validate.build_defs(config),
        push.build_defs(config),
        reconcile.build_defs(config),
        sync,
        cancel_defs,
        despatch.build_defs(config),
        stock.build_defs(config),
        audit.build_defs(config),
    ]
    merged = dg.Definitions.merge(*stages, dg.Definitions(resources=resources_for(config), executor=executor_for()))
    with warnings.catch_warnings():  # `map_asset_specs` is a preview API in Dagster 1.13; what it returns is plain
        warnings.simplefilter("ignore", dg.PreviewWarning)
        merged = merged.map_asset_specs(func=described_for_the_ui)
    return dg.Definitions.merge(merged, alert_definitions(config, merged)) if config.alerts else merged


EXECUTORS = ("in_process", "multiprocess", "celery")


def executor_for(url: str | None = None) -> dg.ExecutorDefinition:
    """A run's steps go one after another in the run's own process: on DuckDB (one writer) always, and by default on
    PostgreSQL too, where runs still overlap (each job is one system's work, so a run's steps seldom have another
    to wait beside) and a step costs no process of its own. Measured on 2 cores, 30 minutes live: a process per step
    (`FULFIL_EXECUTOR=multiprocess`, for a machine with cores to spare) held orders and tracking 2-4 times longer.
    `FULFIL_EXECUTOR=celery` puts steps on Celery workers (the broker from `CELERY_BROKER_URL`, the queue from
    `FULFIL_CELERY_QUEUE`, default `dagster`). Either way each system's pool keeps its dlt pipeline to one step at a
    time across processes, runs and workers."""
    url = url or warehouse_url()
    if url.startswith("duckdb"):
        return dg.in_process_executor
    executor = os.environ.get("FULFIL_EXECUTOR", "in_process")
    if executor not in EXECUTORS:
        raise ValueError(f"FULFIL_EXECUTOR={executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "celery":
        from dagster_celery import celery_executor

        if not os.environ.get("CELERY_BROKER_URL"):  # Celery would fall back to a guest login on localhost
            raise ValueError("FULFIL_EXECUTOR=celery needs CELERY_BROKER_URL (the broker's URL, its password in it)")

        queue = os.environ.get("FULFIL_CELERY_QUEUE", "dagster")
        return celery_executor.configured({"config_source": {"task_default_queue": queue}}, name="celery")
    return dg.multiprocess_executor if executor == "multiprocess" else dg.in_process_executor


# The `fulfil` table each asset keeps (by the asset key's first part), for its table name and column schema in the UI.
ASSET_TABLES = {
    "orders": "orders",
    "order_lines": "order_lines",
    "validated_orders": "validated_orders",
    "order_exceptions": "order_exceptions",
    "wms_stock": "wms_stock",
    "oms_stock": "oms_stock",
    "wms_submissions": "wms_submissions",
    "peoplevox_submissions": "wms_submissions",
    "linnworks_submissions": "wms_submissions",
    "whistl_cancellations": "cancellations",
    "peoplevox_cancellations": "cancellations",
    "linnworks_cancellations": "cancellations",
    "despatches": "despatches",
    "peoplevox_despatch_lines": "despatches",
    "tracking_posts": "tracking_posts",
    "stock_deltas": "stock_deltas",
    "stock_pushes": "stock_pushes",
}
POLARS_KIND = {"orders", "order_lines", "validated_orders", "order_exceptions", "wms_stock", "oms_stock"}
# Who acts on what an asset shows (by the asset key's first part), as the exceptions' own owners name them: the
# office fixes catalogue and mapping problems, customer service addresses and phones, the warehouse owner despatch
# and stock-file problems, finance the money. The data team owns every asset besides.
WHO_ACTS = {
    "validated_orders": ["team:office", "team:cx"],
    "order_exceptions": ["team:office", "team:cx", "team:warehouse"],
    "exception_summary": ["team:office", "team:cx", "team:warehouse"],
    "orders_stuck": ["team:office", "team:warehouse"],
    "wms_stock": ["team:warehouse"],
    "despatches": ["team:warehouse"],
    "peoplevox_despatch_lines": ["team:warehouse"],
    "tracking_posts": ["team:cx"],
    "despatch_latency": ["team:cx", "team:warehouse"],
    "despatch_latency_daily": ["team:cx", "team:warehouse"],
    "stock_deltas": ["team:office"],
    "stock_pushes": ["team:office"],
    "stock_drift": ["team:office", "team:warehouse"],
    "fulfilment_reconciliation": ["team:finance"],
    "daily_activity": ["team:finance", "team:warehouse"],
}


def described_for_the_ui(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Every asset with its owners (who acts on it, `WHO_ACTS`, and the data team), its `fulfil` table's name and
    column schema (the raw dlt assets carry dlt's own), and a kind for the canonical tables built with polars."""
    metadata = dict(spec.metadata)
    table = ASSET_TABLES.get(spec.key.path[0])
    if table is not None:
        metadata.setdefault("dagster/table_name", f"fulfil.{table}")
        metadata.setdefault(
            "dagster/column_schema",
            dg.TableSchema(
                columns=[
                    dg.TableColumn(c, type_label(t), description=COLUMN_DESCRIPTIONS.get(c))
                    for c, t in table_schema(table).items()
                ]
            ),
        )
    kinds = set(spec.kinds) | ({"polars"} if spec.key.path[0] in POLARS_KIND else set())
    owners = spec.owners or [*WHO_ACTS.get(spec.key.path[0], []), "team:data"]
    return spec.replace_attributes(owners=owners, metadata=metadata, kinds=kinds)


def alert_definitions(config: FulfilConfig, defs: dg.Definitions) -> dg.Definitions:
    """Failed runs and checks turning red, posted to the alert webhook; what could not be posted goes again every
    10 minutes."""
    settings = config.alerts
    assert settings is not None
    sensors: list[dg.SensorDefinition] = []
    if settings.run_failures:
        sensors.append(run_failure_alert_sensor)
    if settings.checks:
        sensors.append(failed_check_alert_sensor(sorted(defs.resolve_asset_graph().asset_check_keys)))
    sensors.append(queued_run_alert_sensor(settings.queued_run_minutes))
    return dg.Definitions(
        jobs=[alerts_job],
        sensors=sensors,
        schedules=[every_minutes("alerts_retry_schedule", alerts_job, 10)],
        resources={
            "alert_webhook": AlertWebhook(url=dg.EnvVar(settings.webhook_url_env), timeout_s=settings.timeout_s)
        },
    )


dagster_fixes.apply()
defs = build_definitions(load_config())
