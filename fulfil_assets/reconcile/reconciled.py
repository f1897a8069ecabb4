"""The reconciled tables analysts query (schema `fulfil`): pure polars functions over the canonical tables and
ledgers, each with its columns described once (`COLUMNS`), for the Dagster UI and `docs/tables.md`.

Every figure is counted from what each system confirmed (the ledgers' `sent`/`acknowledged`/`despatched` states,
the despatch files' rows), never from a run's status.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from fulfil_assets import effects
from fulfil_assets.warehouse_tables import BUILT_AT, COLUMNS, MONEY

# A `tracking_posts` row that carried a tracking number (not the close that follows: Linnworks' `ProcessOrder`).
CARRIES_TRACKING = pl.col("kind").fill_null("tracking") != "process"
AGE_BANDS = ((1, "under 1h"), (24, "1-24h"), (168, "1-7d"))
AT_WMS = (effects.SENT, effects.ACKNOWLEDGED, effects.DESPATCHED)


TYPE_LABELS = {
    pl.String: "text",
    pl.Int64: "integer",
    pl.Int32: "integer",
    pl.Float64: "number",
    pl.Boolean: "boolean",
    pl.Date: "date",
    pl.Datetime: "timestamp (UTC)",
    pl.Decimal: "decimal",
}


def type_label(dtype: pl.DataType) -> str:
    """A column type in an analyst's words (`timestamp (UTC)`, not `Datetime(time_unit='us', time_zone='UTC')`)."""
    return TYPE_LABELS.get(dtype.base_type(), str(dtype))


def tables_markdown() -> str:
    """`docs/tables.md`: every reconciled table and its columns, from `COLUMNS` (a test keeps the file in step)."""
    out = [
        "# Reconciled tables",
        "",
        "Schema `fulfil` of the warehouse (on the embedded default, query the analysts' copy: see the README).",
        "Rebuilt by `reconcile_job` every `reconcile.every_minutes`; `orders_stuck` thresholds are in `reconcile:` of",
        "`fulfil.yaml`. Generated from `fulfil_assets/reconcile/reconciled.py`.",
    ]
    for table, columns in COLUMNS.items():
        out += ["", f"## `{table}`", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c}` | {type_label(t)} | {text} |" for c, (t, text) in columns.items()]
    return "\n".join(out) + "\n"


def schema_of(table: str) -> dict[str, pl.DataType]:
    """A table's polars schema as its builder makes it (`built_at` is stamped on every table afterwards)."""
    return {c: t for c, (t, _) in COLUMNS[table].items() if c != BUILT_AT}


def _empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=schema_of(table))


def _utc(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us", "UTC"))


def exception_summary(exceptions: pl.DataFrame, orders: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Open exceptions by reason, owner and age band, with the oldest and a few order refs (`exceptions`: the
    `order_exceptions` table; `orders`: order_key, order_ref)."""
    open_ = exceptions.filter(pl.col("resolved_at").is_null())
    if open_.is_empty():
        return _empty("exception_summary")
    hours = (pl.lit(now) - _utc("first_seen")).dt.total_minutes() / 60
    band = pl.lit("over 7d")
    for limit, name in reversed(AGE_BANDS):
        band = pl.when(hours < limit).then(pl.lit(name)).otherwise(band)
    return (
        open_.join(orders.select("order_key", "order_ref"), on="order_key", how="left")
        .with_columns(band.alias("age_band"), _utc("first_seen"))
        .sort("first_seen")
        .group_by("reason_code", "owner", "age_band")
        .agg(
            pl.len().cast(pl.Int64).alias("open_exceptions"),
            pl.col("first_seen").min().alias("oldest_first_seen"),
            pl.col("order_ref").drop_nulls().head(5).str.join(", ").alias("example_order_refs"),
        )
        .sort("open_exceptions", "reason_code", descending=[True, False])
        .select(list(schema_of("exception_summary")))
        .cast(schema_of("exception_summary"))  # type: ignore[arg-type]
    )


def orders_stuck(
    orders: pl.DataFrame,
    validated: pl.DataFrame,
    submissions: pl.DataFrame,
    despatches: pl.DataFrame,
    tracking: pl.DataFrame,
    exceptions: pl.DataFrame,
    now: datetime,
    *,
    routes: pl.DataFrame | None = None,
    unsent_minutes: int,
    despatch_sla_hours: int,
    oms_update_minutes: int,
    exception_hours: int,
) -> pl.DataFrame:
    """Orders waiting between systems past their threshold, one row per order and stage:
    - paid and open but not confirmed at the WMS `unsent_minutes` after they were placed: `not_sent` once validated
      (owner: the exception's owner when one holds it, else the data team); `not_validated` while fulfil has read
      the order but validation has not run on it since, its flow from `routes` (`order_key, flow`: what
      `routing.order_routes` gives); `no_flow` when no configured flow takes it (data team, both);
    - at the WMS but not despatched `despatch_sla_hours` after it took them (warehouse);
    - despatched but their tracking not confirmed by the order system `oms_update_minutes` after (data team);
    - held by an exception open longer than `exception_hours` (its owner)."""
    routed = (
        routes if routes is not None else pl.DataFrame(schema={"order_key": pl.String, "flow": pl.String})
    ).select("order_key", pl.col("flow").alias("_route"))
    base = (
        orders.select(
            "order_key", "order_ref", "status", "paid", _utc("created_at"), "source_system", "fulfilment_location"
        )
        .join(validated.select("order_key", "flow", pl.lit(True).alias("_validated")), on="order_key", how="left")
        .join(routed.unique("order_key"), on="order_key", how="left")
        .with_columns(pl.coalesce("flow", "_route").alias("flow"), pl.col("_validated").fill_null(False))
    )
    open_ex = exceptions.filter(pl.col("resolved_at").is_null())
    first_ex = (
        open_ex.sort("first_seen")
        .group_by("order_key")
        .agg(pl.col("owner").first().alias("ex_owner"), pl.col("reason_code").first().alias("ex_reason"))
    )
    at_wms = submissions.filter(pl.col("status").is_in(AT_WMS))
    frames = []

    unsent = (
        base.filter(pl.col("paid") & (pl.col("status") == "open"))
        .join(at_wms.select("order_key"), on="order_key", how="anti")
        .join(first_ex, on="order_key", how="left")
        .filter(pl.col("created_at") < pl.lit(now) - pl.duration(minutes=unsent_minutes))
        .select(
            "order_key",
            "order_ref",
            "flow",
            pl.when(pl.col("_validated"))
            .then(pl.lit("not_sent"))
            .when(pl.col("flow").is_not_null())
            .then(pl.lit("not_validated"))
            .otherwise(pl.lit("no_flow"))
            .alias("stage"),
            pl.col("created_at").alias("since"),
            pl.when(pl.col("_validated"))
            .then(pl.col("ex_owner").fill_null("data"))
            .otherwise(pl.lit("data"))
            .alias("owner"),
            pl.when(~pl.col("_validated") & pl.col("flow").is_not_null())
            .then(
                pl.format(
                    "read from {}, not validated yet (the order sync validates; it has not run since)", "source_system"
                )
            )
            .when(~pl.col("_validated"))
            .then(
                pl.format(
                    "read from {} (location {}), but no configured flow takes it (see routes in fulfil.yaml)",
                    "source_system",
                    pl.col("fulfilment_location").fill_null("none"),
                )
            )
            .when(pl.col("ex_reason").is_not_null())
            .then(pl.format("held by {}", "ex_reason"))
            .otherwise(pl.lit("paid, not confirmed at the warehouse"))
            .alias("reason"),
        )
    )
    frames.append(unsent)

    despatched_keys = despatches.filter(pl.col("quantity") > 0).select("order_key").unique()
    not_despatched = (
        at_wms.filter(pl.col("status") != "despatched")
        .select("order_key", _utc("confirmed_at").alias("since"), pl.col("wms"))
        .join(despatched_keys, on="order_key", how="anti")
        .join(base.filter(pl.col("status") == "open"), on="order_key")
        .filter(pl.col("since") < pl.lit(now) - pl.duration(hours=despatch_sla_hours))
        .select(
            "order_key",
            "order_ref",
            "flow",
            pl.lit("not_despatched").alias("stage"),
            "since",
            pl.lit("warehouse").alias("owner"),
            pl.format("at {} past the {}h despatch SLA", "wms", pl.lit(despatch_sla_hours)).alias("reason"),
        )
    )
    frames.append(not_despatched)

    late_posts = (
        tracking.filter(pl.col("status") != "sent")
        .filter(CARRIES_TRACKING)
        .join(
            despatches.group_by("despatch_ref").agg(_utc("despatched_at").min().alias("since")),
            on="despatch_ref",
            how="left",
        )
        .with_columns(pl.coalesce("since", _utc("created_at")).alias("since"))
        .group_by("order_key")
        .agg(pl.col("since").min(), pl.col("oms").first(), pl.col("status").first())
        .filter(pl.col("since") < pl.lit(now) - pl.duration(minutes=oms_update_minutes))
        .join(base, on="order_key", how="left")
        .select(
            "order_key",
            "order_ref",
            "flow",
            pl.lit("open_in_oms").alias("stage"),
            "since",
            pl.lit("data").alias("owner"),
            pl.format("despatched; tracking to {} is {}", "oms", "status").alias("reason"),
        )
    )
    frames.append(late_posts)

    long_held = (
        open_ex.filter(_utc("first_seen") < pl.lit(now) - pl.duration(hours=exception_hours))
        .join(base, on="order_key", how="left")
        .select(
            "order_key",
            "order_ref",
            "flow",
            pl.lit("exception_open").alias("stage"),
            _utc("first_seen").alias("since"),
            "owner",
            pl.format("{} open over {}h: {}", "reason_code", pl.lit(exception_hours), "detail").alias("reason"),
        )
    )
    frames.append(long_held)
    schema = schema_of("orders_stuck")
    out = pl.concat([f.cast({k: v for k, v in schema.items() if k in f.columns}) for f in frames], how="diagonal")
    return (
        out.with_columns(((pl.lit(now) - pl.col("since")).dt.total_minutes()).cast(pl.Int64).alias("waiting_minutes"))
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("stage", "since", "order_key")
    )


def despatch_latency(despatches: pl.DataFrame, tracking: pl.DataFrame, validated: pl.DataFrame) -> pl.DataFrame:
    """Per despatch and order system told: despatched_at -> the order system confirmed its tracking (the
    `tracking_posts` ledger's `confirmed_at` of the despatch's first post to confirm)."""
    shipped = (
        despatches.filter(pl.col("quantity") > 0)
        .group_by("order_key", "despatch_ref")
        .agg(_utc("despatched_at").min().alias("despatched_at"))
    )
    posts = (
        tracking.filter(CARRIES_TRACKING)
        .with_columns(pl.when(pl.col("status") == "sent").then(_utc("confirmed_at")).alias("oms_updated_at"))
        .group_by("order_key", "despatch_ref", "oms")
        .agg(pl.col("oms_updated_at").max())
    )
    schema = schema_of("despatch_latency")
    return (
        shipped.join(posts, on=["order_key", "despatch_ref"], how="inner")
        .join(validated.select("order_key", "flow"), on="order_key", how="left")
        .with_columns(
            ((pl.col("oms_updated_at") - pl.col("despatched_at")).dt.total_milliseconds() / 1000).alias(
                "latency_seconds"
            )
        )
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("despatched_at", "order_key")
    )


def despatch_latency_daily(latency: pl.DataFrame) -> pl.DataFrame:
    """Per despatch day and flow: despatches, how many the order system confirmed, and their p50/p95."""
    schema = schema_of("despatch_latency_daily")
    if latency.is_empty():
        return pl.DataFrame(schema=schema)
    return (
        latency.with_columns(pl.col("despatched_at").dt.date().alias("day"))
        .group_by("day", "flow")
        .agg(
            pl.len().cast(pl.Int64).alias("despatches"),
            pl.col("oms_updated_at").is_not_null().sum().cast(pl.Int64).alias("updated"),
            pl.col("latency_seconds").drop_nulls().quantile(0.5, "linear").alias("p50_seconds"),
            pl.col("latency_seconds").drop_nulls().quantile(0.95, "linear").alias("p95_seconds"),
        )
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("day", "flow")
    )


def fulfilment_reconciliation(
    orders: pl.DataFrame,
    validated: pl.DataFrame,
    submissions: pl.DataFrame,
    despatches: pl.DataFrame,
    tracking: pl.DataFrame,
) -> pl.DataFrame:
    """Per day placed and flow: what the order system holds (paid orders and value) beside what the WMS confirmed,
    what it despatched and what the order system confirmed tracking for, so finance closes on counts and sums
    both sides agree on."""
    at_wms = submissions.filter(pl.col("status").is_in(AT_WMS)).select("order_key").unique()
    shipped = despatches.filter(pl.col("quantity") > 0).select("order_key").unique()
    tracked = tracking.filter((pl.col("status") == "sent") & CARRIES_TRACKING)
    base = orders.join(validated.select("order_key", "flow"), on="order_key", how="inner").with_columns(
        _utc("created_at").dt.date().alias("day"),
        pl.col("total").cast(MONEY).fill_null(0).alias("value"),
        pl.col("order_key").is_in(at_wms["order_key"].implode()).alias("is_sent"),
        pl.col("order_key").is_in(shipped["order_key"].implode()).alias("is_despatched"),
        pl.col("order_key").is_in(tracked["order_key"].unique().implode()).alias("is_tracked"),
        (pl.col("paid").fill_null(False) & (pl.col("status") != "cancelled")).alias("is_oms"),
    )
    schema = schema_of("fulfilment_reconciliation")
    return (
        base.group_by("day", "flow")
        .agg(
            pl.col("is_oms").sum().alias("oms_orders"),
            pl.col("value").filter(pl.col("is_oms")).sum().alias("oms_value"),
            (pl.col("is_oms") & pl.col("is_sent")).sum().alias("sent_orders"),
            pl.col("value").filter(pl.col("is_oms") & pl.col("is_sent")).sum().alias("sent_value"),
            pl.col("is_despatched").sum().alias("despatched_orders"),
            pl.col("value").filter(pl.col("is_despatched")).sum().alias("despatched_value"),
            pl.col("is_tracked").sum().alias("tracked_orders"),
            (pl.col("status") == "cancelled").sum().alias("cancelled_orders"),
        )
        .with_columns((pl.col("oms_orders") - pl.col("sent_orders")).alias("unsent_orders"))
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("day", "flow")
    )


def daily_activity(
    orders: pl.DataFrame,
    validated: pl.DataFrame,
    submissions: pl.DataFrame,
    despatches: pl.DataFrame,
    tracking: pl.DataFrame,
) -> pl.DataFrame:
    """Per day and flow, by the day each thing happened (not the day the order was placed, as
    `fulfilment_reconciliation` counts): orders placed, first confirmed at the warehouse, despatched, first tracked,
    cancelled. What the warehouse and the carriers did on a day, without a join of three tables."""
    flows = validated.select("order_key", "flow")

    def per_day(frame: pl.DataFrame, at: str, name: str) -> pl.LazyFrame:
        return (
            frame.lazy()
            .join(flows.lazy(), on="order_key", how="inner")
            .filter(pl.col(at).is_not_null())
            .group_by("order_key", "flow")
            .agg(_utc(at).min().dt.date().alias("day"))
            .group_by("day", "flow")
            .agg(pl.len().alias(name))
        )

    confirmed = submissions.filter(pl.col("status").is_in(AT_WMS))
    tracked = tracking.filter((pl.col("status") == "sent") & CARRIES_TRACKING)
    shipped = (
        despatches.lazy()
        .filter(pl.col("quantity") > 0)
        .join(flows.lazy(), on="order_key", how="inner")
        .select("flow", "order_key", _utc("despatched_at").dt.date().alias("day"))
        .unique()
        .group_by("day", "flow")
        .agg(pl.len().alias("despatched_orders"))
    )
    parts = [
        per_day(orders, "created_at", "placed_orders"),
        per_day(confirmed, "confirmed_at", "sent_orders"),
        shipped,
        per_day(tracked, "confirmed_at", "tracked_orders"),
        per_day(orders.filter(pl.col("status") == "cancelled"), "updated_at", "cancelled_orders"),
    ]
    keys = pl.concat([p.select("day", "flow") for p in parts]).unique()
    for part in parts:
        keys = keys.join(part, on=["day", "flow"], how="left")
    schema = schema_of("daily_activity")
    return (
        keys.collect()
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .with_columns(pl.exclude("day", "flow").fill_null(0))
        .sort("day", "flow")
    )


def stock_drift(deltas: pl.DataFrame, previous: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Per flow, location and SKU: the warehouse's available, what the order system should show, what it shows
    and what fulfil last pushed; `drifting_since` carries over from `previous` (the table as last built) while the
    levels keep differing, and starts now when they begin to."""
    schema = schema_of("stock_drift")
    current = deltas.select(
        "flow",
        "oms",
        "location",
        "sku",
        "wms_available",
        pl.col("ats").alias("available_to_sell"),
        "oms_level",
        pl.col("last_confirmed").alias("last_pushed"),
        (pl.col("oms_level") - pl.col("ats")).alias("difference"),
    )
    before = previous.select("flow", "location", "sku", pl.col("drifting_since").alias("_before"))
    return (
        current.join(before, on=["flow", "location", "sku"], how="left")
        .with_columns(
            pl.when(pl.col("difference").fill_null(0) != 0)
            .then(pl.coalesce("_before", pl.lit(now).cast(pl.Datetime("us", "UTC"))))
            .alias("drifting_since")
        )
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("flow", "location", "sku")
    )


def order_timeline(
    orders: pl.DataFrame,
    verdicts: pl.DataFrame,
    exceptions: pl.DataFrame,
    submissions: pl.DataFrame,
    acknowledgements: pl.DataFrame,
    cancellations: pl.DataFrame,
    amendments: pl.DataFrame,
    despatches: pl.DataFrame,
    tracking: pl.DataFrame,
) -> pl.DataFrame:
    """One row per event in each order's life across systems: placed, each failed rule and exception, sent and
    what the WMS answered, cancellations and amendments, each despatch line, each tracking post and its answer.
    Events in the same second keep the order of an order's life (warehouse files stamp whole seconds)."""
    refs = orders.select("order_key", "order_ref")
    t = _utc

    def event(frame: pl.DataFrame, rank: int, at: str, system: pl.Expr, what: pl.Expr, detail: pl.Expr) -> pl.DataFrame:
        return frame.select(
            "order_key",
            t(at).alias("happened_at"),
            system.cast(pl.String).alias("system"),
            what.cast(pl.String).alias("event"),
            detail.cast(pl.String).alias("detail"),
            pl.lit(rank).alias("_rank"),
        )

    fulfil = pl.lit("fulfil")
    events = [
        event(
            orders,
            0,
            "created_at",
            pl.col("source_system"),
            pl.lit("placed"),
            pl.format("{} {} {}", "status", pl.col("total").cast(pl.String), "currency"),
        ),
        event(
            verdicts.filter(~pl.col("passed")),
            1,
            "checked_at",
            fulfil,
            pl.format("rule {} failed", "rule"),
            pl.col("detail"),
        ),
        event(
            exceptions,
            2,
            "first_seen",
            fulfil,
            pl.format("exception {} for {}", "reason_code", "owner"),
            pl.col("detail"),
        ),
        event(
            exceptions.filter(pl.col("resolved_at").is_not_null()),
            11,
            "resolved_at",
            fulfil,
            pl.format("exception {} resolved", "reason_code"),
            pl.lit(None),
        ),
        event(
            acknowledgements.join(refs, on="order_ref"),
            5,
            "received_at",
            pl.col("wms"),
            pl.format("WMS answered {}", "status"),
            pl.format("{} ({})", "file_name", "ack_file"),
        ),
        event(
            despatches.filter(pl.col("order_key").is_not_null()),
            8,
            "despatched_at",
            pl.col("wms"),
            pl.format("despatch {} line {}", "despatch_ref", "line_no"),
            pl.format("{} x{} parcel {} {} {}", "sku", "quantity", "parcel_no", "carrier", "tracking_number"),
        ),
    ]
    for name, ledger, target, rank in (
        ("order", submissions, "wms", 3),
        ("cancellation", cancellations, "wms", 6),
        ("amendment", amendments, "wms", 6),
        ("tracking", tracking, "oms", 9),
    ):
        events.append(
            event(
                ledger.filter(pl.col("attempted_at").is_not_null()),
                rank,
                "attempted_at",
                pl.col(target),
                pl.format("{} sent ({} attempt(s))", pl.lit(name), "attempts"),
                pl.coalesce("last_error", "result"),
            )
        )
        events.append(
            event(
                ledger.filter(pl.col("confirmed_at").is_not_null()),
                rank + 1,
                "confirmed_at",
                pl.col(target),
                pl.format("{} confirmed ({} now)", pl.lit(name), "status"),
                pl.col("result"),
            )
        )
    schema = schema_of("order_timeline")
    return (
        pl.concat(events)
        .join(refs, on="order_key", how="left")
        .sort(
            "order_key",
            pl.col("happened_at").dt.truncate("1s"),
            "_rank",
            "happened_at",
            "event",
            nulls_last=True,
        )
        .with_columns((pl.int_range(pl.len()).over("order_key") + 1).alias("seq"))
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
    )
