"""The reconciled tables as Dagster assets: rebuilt together from the canonical tables and ledgers, each with its
table name, column schema and row count in the UI, and a check on the ones a person acts on."""

from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets.config import FulfilConfig, ReconcileConfig
from fulfil_assets.ledger import now_utc
from fulfil_assets.reconcile import reconciled as rt
from fulfil_assets.routing import order_routes
from fulfil_assets.schedules import BACKGROUND, every_minutes
from fulfil_assets.warehouse_tables import table_schema
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

DESCRIPTIONS = {
    "exception_summary": "Open exceptions by reason, owner and age band, with the oldest and example order refs.",
    "orders_stuck": "Orders waiting between systems past their threshold (`reconcile:` in fulfil.yaml): paid but "
    "not at the warehouse, at the warehouse past the despatch SLA, despatched but the order system not told, "
    "held by an exception too long. Each row says who acts.",
    "despatch_latency": "Per despatch and order system: despatched_at -> the order system confirmed its tracking.",
    "despatch_latency_daily": "Daily p50/p95 of despatch -> order system update, per flow.",
    "fulfilment_reconciliation": "Per day and flow: orders and value the order system holds, beside what the "
    "warehouse confirmed, despatched and the order system confirmed tracking for. Counts, never run statuses.",
    "daily_activity": "Per day and flow, by the day each happened: orders placed, first confirmed at the warehouse, "
    "despatched, first tracked and cancelled (what each day's work was, without joining three tables).",
    "stock_drift": "Per flow, location and SKU: warehouse available, what the order system should show, what it "
    "shows, what fulfil last pushed, the difference and since when it has differed.",
    "order_timeline": "One row per event in an order's life across systems (`fulfil trace ORDER_REF` prints it).",
}
STUCK_STAGES = ("not_validated", "no_flow", "not_sent", "not_despatched", "open_in_oms", "exception_open")
SOURCES = [
    "orders",
    "validated_orders",
    "order_exceptions",
    "wms_submissions",
    "despatches",
    ["tracking_posts", "linnworks"],
]


def column_schema(table: str) -> dg.TableSchema:
    """A reconciled table's columns with their descriptions, for the Dagster UI."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, type=rt.type_label(dtype), description=text)
            for name, (dtype, text) in rt.COLUMNS[table].items()
        ]
    )


def read_sources(db: WarehouseDb) -> dict[str, pl.DataFrame]:
    """The canonical tables and ledgers the reconciled tables are built from."""
    names = (
        "orders",
        "validated_orders",
        "order_exceptions",
        "order_verdicts",
        "wms_submissions",
        "wms_acknowledgements",
        "cancellations",
        "amendments",
        "despatches",
        "tracking_posts",
        "stock_deltas",
        "stock_drift",
    )
    return {name: db.read(f"SELECT * FROM {SCHEMA}.{name}", schema=table_schema(name)) for name in names}


def build_tables(
    src: dict[str, pl.DataFrame], settings: ReconcileConfig, now: datetime, routes: pl.DataFrame | None = None
) -> dict[str, pl.DataFrame]:
    """Every reconciled table from the sources (pure: the same sources and `now` give the same tables); `routes`
    (`routing.order_routes` of the orders) names the flow of orders not validated yet."""
    latency = rt.despatch_latency(src["despatches"], src["tracking_posts"], src["validated_orders"])
    built = {
        "exception_summary": rt.exception_summary(src["order_exceptions"], src["orders"], now),
        "orders_stuck": rt.orders_stuck(
            src["orders"],
            src["validated_orders"],
            src["wms_submissions"],
            src["despatches"],
            src["tracking_posts"],
            src["order_exceptions"],
            now,
            routes=routes,
            unsent_minutes=settings.unsent_minutes,
            despatch_sla_hours=settings.despatch_sla_hours,
            oms_update_minutes=settings.oms_update_minutes,
            exception_hours=settings.exception_hours,
        ),
        "despatch_latency": latency,
        "despatch_latency_daily": rt.despatch_latency_daily(latency),
        "fulfilment_reconciliation": rt.fulfilment_reconciliation(
            src["orders"], src["validated_orders"], src["wms_submissions"], src["despatches"], src["tracking_posts"]
        ),
        "daily_activity": rt.daily_activity(
            src["orders"], src["validated_orders"], src["wms_submissions"], src["despatches"], src["tracking_posts"]
        ),
        "stock_drift": rt.stock_drift(src["stock_deltas"], src["stock_drift"], now),
        "order_timeline": rt.order_timeline(
            src["orders"],
            src["order_verdicts"],
            src["order_exceptions"],
            src["wms_submissions"],
            src["wms_acknowledgements"],
            src["cancellations"],
            src["amendments"],
            src["despatches"],
            src["tracking_posts"],
        ),
    }
    return {
        table: frame.with_columns(pl.lit(now, rt.COLUMNS[table][rt.BUILT_AT][0]).alias(rt.BUILT_AT))
        for table, frame in built.items()
    }


def order_events(db: WarehouseDb, order_ref: str) -> pl.DataFrame:
    """The timeline of the orders with reference (or source order id) `order_ref`, read fresh from the tables."""
    keys = db.read(
        f"SELECT order_key, order_ref FROM {SCHEMA}.orders WHERE order_ref = :r OR source_order_id = :r",
        {"r": order_ref},
    )
    if keys.is_empty():
        return pl.DataFrame(schema=rt.schema_of("order_timeline"))
    params = {"keys": keys["order_key"].to_list(), "refs": keys["order_ref"].to_list()}
    mine = db.any_of("order_key", "keys")

    def read(table: str, where: str = mine) -> pl.DataFrame:
        return db.read(f"SELECT * FROM {SCHEMA}.{table} WHERE {where}", params, schema=table_schema(table))

    return rt.order_timeline(
        read("orders"),
        read("order_verdicts"),
        read("order_exceptions"),
        read("wms_submissions"),
        read("wms_acknowledgements", db.any_of("order_ref", "refs")),
        read("cancellations"),
        read("amendments"),
        read("despatches"),
        read("tracking_posts"),
    )


def summary(table: str, frame: pl.DataFrame) -> dict[str, Any]:
    """Plottable numbers per table (one value per stage, reason or owner), beside the row count."""
    out: dict[str, Any] = {"dagster/row_count": frame.height}
    if table == "orders_stuck":
        for stage in STUCK_STAGES:
            out[f"stuck_{stage}"] = int((frame["stage"] == stage).sum())
        owners = frame.group_by("owner").len().sort("owner").iter_rows() if frame.height else []
        out["summary"] = dg.MetadataValue.md(
            f"**{frame.height} orders waiting past their threshold**: {out['stuck_not_validated']} read but not "
            f"validated yet, {out['stuck_no_flow']} taken by no flow, {out['stuck_not_sent']} not at the warehouse, "
            f"{out['stuck_not_despatched']} past the despatch SLA, {out['stuck_open_in_oms']} with the order system "
            f"not told, {out['stuck_exception_open']} held too long. For: "
            + (", ".join(f"{o} {n}" for o, n in owners) or "nobody")
        )
    elif table == "exception_summary":
        for owner, n in frame.group_by("owner").agg(pl.col("open_exceptions").sum()).iter_rows():
            out[f"open_for_{owner}"] = int(n)
    elif table == "stock_drift":
        out["drifting"] = int(frame["drifting_since"].is_not_null().sum())
        out["oversell_risk_units"] = int(frame["difference"].clip(lower_bound=0).fill_null(0).sum())
    elif table == "despatch_latency_daily" and frame.height:
        last = frame.sort("day").tail(1).row(0, named=True)
        out["latest_day_p95_seconds"] = float(last["p95_seconds"] or 0.0)
    return out


def graded(count: int, warn: int, error: int) -> tuple[bool, dg.AssetCheckSeverity]:
    """A check's verdict from a count and its thresholds: passed below `warn`, amber from it, red from `error`."""
    if count >= error:
        return False, dg.AssetCheckSeverity.ERROR
    return count < warn, dg.AssetCheckSeverity.WARN


def latency_verdict(today: pl.DataFrame, settings: ReconcileConfig) -> dg.AssetCheckResult:
    """`tracking_latency_within_target` from today's `despatch_latency_daily` rows: graded by the worst flow's p95;
    a failed amber "no data" when no despatch of today has been confirmed by its order system (none taken in, or
    none confirmed yet), never a pass on nothing measured."""
    despatches = int(today["despatches"].sum() or 0)
    measured = int(today["updated"].sum() or 0)
    counts = {"despatches_today": despatches, "confirmed_today": measured}
    if not measured:
        why = (
            "no despatch was taken in today"
            if not despatches
            else f"{despatches} despatch(es) today, none confirmed by its order system yet"
        )
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"No data: no despatch measured today ({why}); the latency is unknown, not good.",
            metadata={"no_data": True, **counts, "worst_p95_seconds": dg.MetadataValue.null()},
        )
    measured_flows = today.filter(pl.col("p95_seconds").is_not_null())
    worst = float(measured_flows["p95_seconds"].max())  # type: ignore[arg-type]
    passed, severity = graded(int(worst), settings.latency_p95_warn_seconds + 1, settings.latency_p95_error_seconds + 1)
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        description=f"Worst despatch -> tracking p95 today: {worst:.0f} s (warn above "
        f"{settings.latency_p95_warn_seconds} s, error above {settings.latency_p95_error_seconds} s).",
        metadata={
            "no_data": False,
            **counts,
            "worst_p95_seconds": worst,
            **{f"p95_seconds_{flow}": float(p) for flow, p in measured_flows.select("flow", "p95_seconds").iter_rows()},
            "flows_without_data": dg.MetadataValue.json(
                sorted(str(f) for f in today.filter(pl.col("p95_seconds").is_null())["flow"].to_list())
            ),
        },
    )


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The reconcile stage: the tables analysts query, rebuilt on a schedule, with checks on stuck orders and
    drift."""
    settings = config.reconcile
    specs = [
        dg.AssetSpec(
            table,
            group_name="reconcile",
            description=DESCRIPTIONS[table],
            deps=SOURCES,
            kinds={"polars", "table"},
            metadata={"dagster/column_schema": column_schema(table), "dagster/table_name": f"{SCHEMA}.{table}"},
            # Analysts read these: stale past two rebuilds is red (the schedule or the job is not running).
            freshness_policy=dg.FreshnessPolicy.time_window(
                fail_window=timedelta(minutes=2 * settings.every_minutes),
                warn_window=timedelta(minutes=settings.every_minutes + 1),
            ),
        )
        for table in rt.COLUMNS
    ]

    @dg.multi_asset(specs=specs, name="reconciled_tables", can_subset=False)
    def reconciled_tables(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Any:
        """Rebuild every reconciled table in one transaction per table (readers see the old or the new table)."""
        with warehouse.session() as db:
            src = read_sources(db)
            built = build_tables(src, settings, now_utc(), order_routes(src["orders"], config))
            for table, frame in built.items():
                db.write(table, frame, mode="replace")
        for table, frame in built.items():
            yield dg.MaterializeResult(asset_key=table, metadata=summary(table, frame))

    @dg.asset_check(asset="orders_stuck", blocking=False)
    def no_order_stuck_between_systems(warehouse: Warehouse) -> dg.AssetCheckResult:
        """Orders waiting past their threshold between systems (`reconcile:` in fulfil.yaml): amber from
        `stuck_warn` orders, red from `stuck_error`. Who acts is in each row of `orders_stuck` (office and customer
        service for held orders, the warehouse past the despatch SLA, the data team for updates not made)."""
        stuck = warehouse.get_db().read(f"SELECT stage, order_ref FROM {SCHEMA}.orders_stuck")
        per_stage = dict(stuck.group_by("stage").len().iter_rows()) if stuck.height else {}
        passed, severity = graded(stuck.height, settings.stuck_warn, settings.stuck_error)
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            description=f"{stuck.height} orders wait between systems past their threshold"
            + (": `orders_stuck` says where each waits and who acts." if stuck.height else "."),
            metadata={
                "stuck": stuck.height,
                **{f"stuck_{k}": int(v) for k, v in per_stage.items()},
                "examples": dg.MetadataValue.json(stuck["order_ref"].drop_nulls().head(10).to_list()),
            },
        )

    @dg.asset_check(asset="stock_drift", blocking=False)
    def no_oversell_risk(warehouse: Warehouse) -> dg.AssetCheckResult:
        """Units order systems show above what fulfil says may be sold (an oversell waiting to happen): amber from
        `oversell_warn_units`, red from `oversell_error_units` (default: any). The data team acts: fulfil pushes
        the level down on the next stock run, so a lasting one means the writes fail."""
        risk = warehouse.get_db().read(
            f"SELECT flow, sku, location, difference FROM {SCHEMA}.stock_drift WHERE difference > 0"
        )
        units = int(risk["difference"].sum()) if risk.height else 0
        passed, severity = graded(units, settings.oversell_warn_units, settings.oversell_error_units)
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            description=f"{units} units on {risk.height} SKU/locations could be oversold (the order system shows "
            "more than may be sold)" + (": see `stock_drift`, difference > 0." if risk.height else "."),
            metadata={
                "skus_at_risk": risk.height,
                "units_at_risk": units,
                "examples": dg.MetadataValue.json(risk.head(10).to_dicts()),
            },
        )

    @dg.asset_check(asset="exception_summary", blocking=False)
    def exception_backlog(warehouse: Warehouse) -> dg.AssetCheckResult:
        """Exceptions left open longer than `exception_hours`: amber from `backlog_warn`, red from
        `backlog_error`. Each reason's owner acts (docs/operations.md says what to do)."""
        aged = warehouse.get_db().read(
            f"SELECT owner FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL AND first_seen < :before",
            {"before": now_utc() - timedelta(hours=settings.exception_hours)},
            schema={"owner": pl.String},
        )
        passed, severity = graded(aged.height, settings.backlog_warn, settings.backlog_error)
        per_owner = dict(aged.group_by("owner").len().iter_rows()) if aged.height else {}
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            description=f"{aged.height} exceptions open past {settings.exception_hours} h"
            + (
                ": " + ", ".join(f"{n} for {owner}" for owner, n in sorted(per_owner.items())) + "."
                if per_owner
                else "."
            ),
            metadata={
                "open_past_threshold": aged.height,
                **{f"past_threshold_for_{owner}": int(n) for owner, n in per_owner.items()},
            },
        )

    @dg.asset_check(asset="despatch_latency_daily", blocking=False)
    def tracking_latency_within_target(warehouse: Warehouse) -> dg.AssetCheckResult:
        """Today's p95 from a despatch to its order system confirming the tracking: amber above
        `latency_p95_warn_seconds`, red above `latency_p95_error_seconds` ("where is my order?" contacts follow).
        Amber too when nothing was measured today (no despatch taken in, or none confirmed yet): no data is never
        green. The data team acts (a slow or refusing order system, a stopped tracking schedule, despatches not
        taken in: see no_despatch_backlog)."""
        today = warehouse.get_db().read(
            f"SELECT flow, despatches, updated, p95_seconds FROM {SCHEMA}.despatch_latency_daily WHERE day = :day",
            {"day": now_utc().date()},
            schema={"flow": pl.String, "despatches": pl.Int64, "updated": pl.Int64, "p95_seconds": pl.Float64},
        )
        return latency_verdict(today, settings)

    job = dg.define_asset_job(
        "reconcile_job",
        selection=dg.AssetSelection.assets(*rt.COLUMNS),
        tags=BACKGROUND,
        description="Rebuild the reconciled tables analysts query.",
    )
    schedule = every_minutes("reconcile_schedule", job, settings.every_minutes)
    return dg.Definitions(
        assets=[reconciled_tables],
        asset_checks=[
            no_order_stuck_between_systems,
            no_oversell_risk,
            exception_backlog,
            tracking_latency_within_target,
        ],
        jobs=[job],
        schedules=[schedule],
    )
