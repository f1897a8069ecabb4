"""What a system audit finds, as pure functions over staged frames (no Dagster, no warehouse): the catalogue, the
mappings, the orders against each rule, the stock each order system shows against what may be sold, and how often
each sync can safely run within the systems' published rate limits. `audit/assets.py` reads the frames."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from fulfil_assets.config import FLOW_SYSTEMS
from fulfil_assets.reasons import OWNERS
from fulfil_assets.validate.suites import SKU_PATTERNS
from resources.limits import LIMITS, SystemLimits

CATALOGUE = {
    "system": pl.String,
    "flow": pl.String,
    "problem": pl.String,
    "sku": pl.String,
    "orders": pl.Int64,
    "detail": pl.String,
}
# Each catalogue problem, what it means for the brand and who fixes it.
PROBLEMS = {
    "unknown_at_warehouse": ("sold in the order system, unknown at the warehouse", "office"),
    "refused_by_warehouse_rules": ("a SKU the warehouse's rules refuse (Whistl: letters and digits only)", "office"),
    "not_sold": ("held by the warehouse, sold by no order system", "office"),
    "duplicate": ("two spellings of one SKU in one catalogue", "office"),
    "bundle_component_missing": ("a bundle with a component the warehouse does not know", "office"),
    "variant_without_sku": ("a storefront variant with no SKU: its orders cannot be sent", "office"),
}


def _rows(frame: pl.DataFrame, problem: str) -> pl.DataFrame:
    """`frame` (system, flow, sku, orders, detail; missing ones null) as catalogue findings of `problem`."""
    return frame.with_columns(pl.lit(problem).alias("problem")).select(
        [
            (pl.col(c) if c in frame.columns or c == "problem" else pl.lit(None)).cast(t).alias(c)
            for c, t in CATALOGUE.items()
        ]
    )


def catalogue_findings(
    checked: pl.DataFrame,
    catalogues: pl.DataFrame,
    oms_skus: pl.DataFrame,
    bundles: pl.DataFrame,
    variants: pl.DataFrame,
    flows: list[str],
    variant_map: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per flow and system, the SKUs that would hold orders back or that nobody sells. `checked`: one row per
    order line as its target would receive it (`flow, target, order_key, wms_sku`); `catalogues`: the SKUs each
    target knows (`system, sku`); `oms_skus`: each order system's catalogue (`system, sku`); `bundles`:
    `bundle_sku, component_sku`; `variants`: storefront variants (`system, variant_id, product, sku`);
    `flows`: the configured flows; `variant_map`: `variant_skus.csv` (`system,
    variant_id, sku`), the office's SKUs for storefront variants that have none."""
    mapped = (
        variant_map
        if variant_map is not None
        else pl.DataFrame(schema={c: pl.String for c in ("system", "variant_id", "sku")})
    )
    known = catalogues.select(
        pl.col("system").alias("target"), pl.col("sku").alias("wms_sku"), pl.lit(True).alias("_k")
    )
    with_catalogue = known.select("target").unique()
    sold = checked.filter(pl.col("wms_sku").is_not_null()).join(with_catalogue, on="target", how="semi")
    unknown = (
        sold.join(known, on=["target", "wms_sku"], how="left")
        .filter(pl.col("_k").is_null())
        .group_by("target", "flow", "wms_sku")
        .agg(pl.col("order_key").n_unique().alias("orders"))
        .select(
            pl.col("target").alias("system"),
            "flow",
            pl.col("wms_sku").alias("sku"),
            "orders",
            pl.format("sold in {} order(s); {} does not know it", "orders", "target").alias("detail"),
        )
    )
    refused_frames = []
    for target, pattern in SKU_PATTERNS.items():
        listed = catalogues.filter((pl.col("system") == target) & ~pl.col("sku").str.contains(pattern))
        orders = sold.filter(pl.col("target") == target).group_by("wms_sku").agg(pl.col("order_key").n_unique())
        refused_frames.append(
            listed.join(orders, left_on="sku", right_on="wms_sku", how="left").select(
                "system",
                pl.col("order_key").fill_null(0).alias("orders"),
                "sku",
                pl.format("in {}'s catalogue; its rules refuse it", "system").alias("detail"),
            )
        )
    components = bundles.select(pl.col("bundle_sku").alias("sku"), "component_sku")
    listed = pl.concat([oms_skus.select("sku"), mapped.select("sku")])
    sold_anywhere = pl.concat(
        [listed, listed.join(components, on="sku").select(pl.col("component_sku").alias("sku"))]
    ).unique()
    warehouses = sorted({FLOW_SYSTEMS[f][1] for f in flows} & {"whistl", "peoplevox"})
    not_sold = catalogues.filter(pl.col("system").is_in(warehouses)).join(sold_anywhere, on="sku", how="anti")
    not_sold = not_sold.select(
        "system", "sku", pl.format("{} holds it; no order system lists it", "system").alias("detail")
    )
    spelled = pl.concat([catalogues.select("system", "sku"), oms_skus.select("system", "sku")]).unique()
    duplicate = (
        spelled.filter(pl.col("sku").is_not_null())
        .with_columns(pl.col("sku").str.strip_chars().str.to_uppercase().alias("_norm"))
        .with_columns(pl.col("sku").n_unique().over("system", "_norm").alias("_n"))
        .filter(pl.col("_n") > 1)
        .with_columns(pl.col("sku").sort().str.join(", ").over("system", "_norm").alias("_all"))
        .select("system", "sku", pl.format("one SKU spelled {} ways in {}: {}", "_n", "system", "_all").alias("detail"))
    )
    missing = []
    for target in warehouses:
        known_here = catalogues.filter(pl.col("system") == target).select(pl.col("sku").alias("component_sku"))
        if known_here.is_empty():
            continue
        gaps = bundles.join(known_here, on="component_sku", how="anti")
        missing.append(
            gaps.select(
                pl.lit(target).alias("system"),
                pl.col("bundle_sku").alias("sku"),
                pl.format("needs {}, which {} does not know", "component_sku", pl.lit(target)).alias("detail"),
            )
        )
    unmapped = variants.join(mapped.select("system", "variant_id"), on=["system", "variant_id"], how="anti")
    blank = unmapped.filter(pl.col("sku").is_null() | (pl.col("sku").str.strip_chars() == "")).select(
        "system",
        pl.format("variant {}", "variant_id").alias("sku"),
        pl.format("{} variant {} of '{}' has no SKU", "system", "variant_id", "product").alias("detail"),
    )
    flow_of = pl.DataFrame(
        [(system, f) for f in flows for system in FLOW_SYSTEMS[f]], schema=["system", "flow"], orient="row"
    )
    found = [
        _rows(unknown, "unknown_at_warehouse"),
        *(_rows(f, "refused_by_warehouse_rules") for f in refused_frames),
        _rows(not_sold, "not_sold"),
        _rows(duplicate, "duplicate"),
        *(_rows(f, "bundle_component_missing") for f in missing),
        _rows(blank, "variant_without_sku"),
    ]
    out = pl.concat(found)
    # Findings at a warehouse that concern every flow sending there name no single flow: say which flows they hold.
    unnamed = (
        out.filter(pl.col("flow").is_null())
        .drop("flow")
        .join(flow_of.group_by("system").agg(pl.col("flow").sort().str.join(", ")), on="system", how="left")
    )
    return pl.concat([out.filter(pl.col("flow").is_not_null()), unnamed.select(out.columns)]).sort(
        "problem", "system", "sku"
    )


def shipping_methods(checked: pl.DataFrame) -> pl.DataFrame:
    """Per flow and shipping method, by volume: orders, the service code it maps to at the target (null: held as
    SERVICE_UNMAPPED). `checked`: `flow, target, order_key, shipping_method, service_code`."""
    return (
        checked.unique("order_key")
        .group_by("flow", "target", "shipping_method", "service_code")
        .agg(pl.len().cast(pl.Int64).alias("orders"))
        .with_columns(pl.col("service_code").is_not_null().alias("mapped"))
        .sort("flow", "orders", "shipping_method", descending=[False, True, False])
    )


def services_unmapped(offered: list[str], service_map: pl.DataFrame, system: str, target: str) -> pl.DataFrame:
    """The shipping services `system` offers (Linnworks' postal services) that the map sends to no service of
    `target` (Peoplevox's carrier services): orders placed with them would be held."""
    mapped = service_map.filter((pl.col("system") == system) & (pl.col("wms") == target))["shipping_method"]
    return pl.DataFrame({"service": sorted(set(offered) - set(mapped.to_list()))}, schema={"service": pl.String})


def unmapped_locations(oms_locations: pl.DataFrame, stock_locations: pl.DataFrame, flows: list[str]) -> pl.DataFrame:
    """Order-system locations (`system, location`) no flow's stock location mapping covers: the stock there is
    never set by fulfil. `stock_locations`: `flow, location`."""
    covered = stock_locations.filter(pl.col("flow").is_in(flows)).with_columns(
        pl.col("flow").replace_strict({f: FLOW_SYSTEMS[f][0] for f in flows}).alias("system")
    )
    oms = {FLOW_SYSTEMS[f][0] for f in flows}
    return (
        oms_locations.filter(pl.col("system").is_in(sorted(oms)))
        .unique()
        .join(covered.select("system", "location"), on=["system", "location"], how="anti")
        .sort("system", "location")
    )


def rule_failures(verdicts: pl.DataFrame, refs: pl.DataFrame, examples: int = 5) -> pl.DataFrame:
    """Per flow, rule and reason: orders failing it, the share of the flow's orders checked, examples and who
    fixes them. `verdicts`: `order_key, rule, passed, reason_code`; `refs`: `order_key, order_ref, flow`."""
    checked = refs.group_by("flow").agg(pl.col("order_key").n_unique().alias("checked"))
    failing = verdicts.filter(~pl.col("passed")).join(refs, on="order_key")
    return (
        failing.sort("order_ref")
        .group_by("flow", "rule", "reason_code")
        .agg(
            pl.col("order_key").n_unique().alias("failing"),
            pl.col("order_ref").head(examples).str.join(", ").alias("examples"),
        )
        .join(checked, on="flow")
        .with_columns(
            (pl.col("failing") / pl.col("checked")).round(4).alias("share"),
            pl.col("reason_code").replace_strict(OWNERS, default="office").alias("owner"),
        )
        .select("flow", "rule", "reason_code", "owner", "failing", "checked", "share", "examples")
        .sort("flow", "failing", "rule", descending=[False, True, False])
    )


def held_orders(verdicts: pl.DataFrame, refs: pl.DataFrame) -> pl.DataFrame:
    """Every order a rule would hold, one row per reason, with who fixes it (the list the office works from)."""
    return (
        verdicts.filter(~pl.col("passed"))
        .join(refs, on="order_key")
        .select(
            "flow",
            "order_ref",
            "rule",
            "reason_code",
            pl.col("reason_code").replace_strict(OWNERS, default="office").alias("owner"),
        )
        .unique()
        .sort("flow", "order_ref", "reason_code")
    )


def stale_orders(orders: pl.DataFrame, now: datetime, stale_days: float) -> pl.DataFrame:
    """Orders still open in their order system `stale_days` after they were placed: `orders`: `order_key,
    order_ref, source_system, status, created_at`."""
    cutoff = now - timedelta(days=stale_days)
    return (
        orders.filter((pl.col("status") == "open") & (pl.col("created_at") < cutoff))
        .select(
            "source_system",
            "order_ref",
            "created_at",
            ((pl.lit(now) - pl.col("created_at")).dt.total_hours() / 24).round(1).alias("open_days"),
        )
        .sort("created_at")
    )


def open_but_despatched(orders: pl.DataFrame, despatched: pl.DataFrame) -> pl.DataFrame:
    """Orders the warehouse despatched that their order system still shows open (tracking never reached it):
    `despatched`: `order_ref, wms, despatched_at`."""
    return (
        orders.filter(pl.col("status") == "open")
        .join(despatched, on="order_ref")
        .group_by("source_system", "order_ref", "wms")
        .agg(pl.col("despatched_at").min())
        .sort("despatched_at", "order_ref")
    )


def stock_truth(ats: pl.DataFrame) -> pl.DataFrame:
    """Per flow, location and SKU: what the order system shows beside what may be sold now, and the units it
    would oversell (`at_risk`: shown above available to sell). `ats`: `flow, location, sku, oms_level, ats,
    wms_available, open_unsent, buffer`."""
    return ats.with_columns(
        (pl.col("oms_level").fill_null(0) - pl.col("ats")).clip(lower_bound=0).cast(pl.Int64).alias("at_risk")
    ).sort("at_risk", "flow", "sku", descending=[True, False, False])


def negative_stock(wms_stock: pl.DataFrame) -> pl.DataFrame:
    """Warehouse SKUs showing negative stock (oversold there): `wms, location, sku, available`."""
    return wms_stock.filter(pl.col("available") < 0).sort("available", "sku")


def volumes(orders: pl.DataFrame, skus: pl.DataFrame, now: datetime, days: float) -> pl.DataFrame:
    """Each order system's measured volume: orders a day over the last `days` (or over the days its orders span,
    when fewer: at least one), lines an order, SKUs and locations. `orders`: `source_system, order_key,
    created_at, lines`; `skus`: the order systems' stock rows (`system, sku, location`)."""
    recent = orders.filter(pl.col("created_at") >= now - timedelta(days=days))
    per_day = recent.group_by("source_system").agg(
        pl.len().alias("orders"),
        pl.col("lines").mean().fill_null(1.0).alias("lines_per_order"),
        ((pl.lit(now) - pl.col("created_at").min()).dt.total_seconds() / 86400).alias("span_days"),
    )
    catalogue = skus.group_by("system").agg(
        pl.col("sku").n_unique().alias("skus"),
        pl.col("location").n_unique().alias("locations"),
        pl.len().alias("stock_rows"),
    )
    return (
        catalogue.join(per_day.rename({"source_system": "system"}), on="system", how="full", coalesce=True)
        .with_columns(
            (pl.col("orders").fill_null(0) / pl.col("span_days").fill_null(1.0).clip(1.0, days)).alias(
                "orders_per_day"
            ),
            pl.col("lines_per_order").fill_null(1.0),
            *(pl.col(c).fill_null(0) for c in ("skus", "locations", "stock_rows")),
        )
        .select("system", "orders_per_day", "lines_per_order", "skus", "locations", "stock_rows")
        .sort("system")
    )


def _calls_per_minute(limits: SystemLimits, orders_per_day: float) -> float:
    """Calls a minute the orders themselves need, whatever the schedules: each read in detail once and its
    tracking posted once (stock pushes come with the stock sync)."""
    return orders_per_day / 1440 * (limits.calls_per_order + limits.calls_per_post)


def stock_sync_calls(limits: SystemLimits, stock_rows: int, orders_per_day: float, lines: float, minutes: float) -> int:
    """Calls one stock sync makes: its stock list, and the levels the orders since the last sync changed."""
    changed = min(stock_rows, math.ceil(orders_per_day / 1440 * minutes * lines))
    return math.ceil(stock_rows / limits.stock_page) + math.ceil(changed / limits.stock_batch)


def capacity(
    volume: pl.DataFrame,
    shares: dict[str, float],
    order_minutes: float,
    stock_minutes: float,
    limits_of: dict[str, SystemLimits] = LIMITS,
) -> pl.DataFrame:
    """Per order system: its share of the published limit (calls a minute), what today's orders need, the fastest
    safe interval for the order sync (with the stock sync on `stock_minutes`) and for the stock sync (with the
    order sync on `order_minutes`), and a peak day's calls (ten times today's orders) beside what the share
    allows in a day. An interval is 'none' when the orders alone need more than the share."""
    rows = []
    for r in volume.iter_rows(named=True):
        limits = limits_of.get(r["system"])
        if limits is None:
            continue
        share = limits.calls_per_minute * shares.get(r["system"], 0.5)
        need = _calls_per_minute(limits, r["orders_per_day"])
        stock_now = stock_sync_calls(limits, r["stock_rows"], r["orders_per_day"], r["lines_per_order"], stock_minutes)
        left_for_lists = share - need - stock_now / stock_minutes
        fastest_orders = math.ceil(1 / left_for_lists) if left_for_lists > 0 else None
        left_for_stock = share - need - 1 / order_minutes
        fastest_stock = None
        if left_for_stock > 0:
            fastest_stock = next(
                (
                    m
                    for m in (1, 2, 5, 10, 15, 30, 60, 120, 240, 480, 1440)
                    if stock_sync_calls(limits, r["stock_rows"], r["orders_per_day"], r["lines_per_order"], m) / m
                    <= left_for_stock
                ),
                None,
            )
        peak = 10 * r["orders_per_day"] * (limits.calls_per_order + limits.calls_per_post) + 1440 / order_minutes
        peak += (
            1440
            / stock_minutes
            * stock_sync_calls(limits, r["stock_rows"], 10 * r["orders_per_day"], r["lines_per_order"], stock_minutes)
        )
        rows.append(
            {
                "system": r["system"],
                "limit_per_minute": limits.calls_per_minute,
                "share_per_minute": round(share, 2),
                "orders_per_day": round(r["orders_per_day"], 1),
                "order_calls_per_minute": round(need, 2),
                "fastest_order_sync_minutes": fastest_orders,
                "fastest_stock_sync_minutes": fastest_stock,
                "peak_day_calls": math.ceil(peak),
                "calls_allowed_a_day": math.floor(share * 1440),
                "peak_day_fits": peak <= share * 1440,
                "limit_note": limits.note,
            }
        )
    schema = {
        "system": pl.String,
        "limit_per_minute": pl.Float64,
        "share_per_minute": pl.Float64,
        "orders_per_day": pl.Float64,
        "order_calls_per_minute": pl.Float64,
        "fastest_order_sync_minutes": pl.Int64,
        "fastest_stock_sync_minutes": pl.Int64,
        "peak_day_calls": pl.Int64,
        "calls_allowed_a_day": pl.Int64,
        "peak_day_fits": pl.Boolean,
        "limit_note": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)
