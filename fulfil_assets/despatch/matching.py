"""One set of rules for every warehouse's despatches (pure polars): Whistl's files, Peoplevox's `GetData` reads and
callbacks, and any later warehouse pass through `match_despatches`, and each problem is the same exception
whichever warehouse reported it. fulfil posts no tracking for an order with a problem: the warehouse owner checks
the parcel and enters it in the order system by hand."""

from __future__ import annotations

from typing import Literal

import polars as pl

PROBLEM_SCHEMA = {"order_key": pl.String, "reason_code": pl.String, "detail": pl.String}
# When one order has several problems, the exception names the first of these and lists every detail.
PRECEDENCE = ("DESPATCH_UNKNOWN_LINE", "DESPATCH_OVER_QUANTITY")
LineKey = Literal["line_no", "sku"]


def _unknown_orders(unmatched: pl.DataFrame) -> pl.DataFrame:
    """`DESPATCH_UNKNOWN_ORDER` per order reference no sent order has (keyed `<wms>:<reference>`)."""
    return (
        unmatched.group_by("wms", "order_ref", maintain_order=True)
        .agg(pl.col("despatch_ref").first(), pl.len().alias("n"))
        .select(
            pl.format("{}:{}", "wms", "order_ref").alias("order_key"),
            pl.lit("DESPATCH_UNKNOWN_ORDER").alias("reason_code"),
            pl.format(
                "despatch {} ({} rows) for order {} which fulfil never sent", "despatch_ref", "n", "order_ref"
            ).alias("detail"),
        )
    )


def _line_problems(matched: pl.DataFrame, earlier: pl.DataFrame, lines: pl.DataFrame, by: LineKey) -> pl.DataFrame:
    """Per despatched order line (`by` the warehouse's line number, or the SKU where the warehouse reports items,
    not lines), counting every despatch so far: a line the order never had (`DESPATCH_UNKNOWN_LINE`) and a line
    shipped beyond what was ordered (`DESPATCH_OVER_QUANTITY`)."""
    previous = earlier.select(matched.columns) if earlier.height else matched.clear()
    every = pl.concat([previous, matched], how="vertical_relaxed").unique(
        ["wms", "despatch_ref", "line_no", "parcel_no"], keep="last"
    )
    named = [pl.col("sku").first()] if by != "sku" else []  # the line's SKU, for the detail
    shipped = every.group_by("order_key", by).agg(pl.col("quantity").sum().alias("shipped"), *named)
    ordered = lines.group_by("order_key", by).agg(pl.col("quantity").sum())
    judged = shipped.join(ordered, on=["order_key", by], how="left").join(
        matched.select("order_key").unique(), on="order_key", how="semi"
    )
    what = pl.format("line {} ({})", by, "sku") if by == "line_no" else pl.format("SKU {}", "sku")
    unknown = judged.filter(pl.col("quantity").is_null()).select(
        "order_key",
        pl.lit("DESPATCH_UNKNOWN_LINE").alias("reason_code"),
        pl.format("{}: shipped {}, but the order fulfil sent has no such line", what, "shipped").alias("detail"),
    )
    over = judged.filter(pl.col("shipped") > pl.col("quantity")).select(
        "order_key",
        pl.lit("DESPATCH_OVER_QUANTITY").alias("reason_code"),
        pl.format("{}: shipped {} of {}", what, "shipped", "quantity").alias("detail"),
    )
    return pl.concat([unknown, over])


def match_despatches(
    rows: pl.DataFrame, sent: pl.DataFrame, lines: pl.DataFrame, earlier: pl.DataFrame, by: LineKey = "line_no"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Despatch rows (a `wms` column; no `order_key`) matched to the orders fulfil sent (`sent`: order_ref,
    order_key), and one problem row per order (`order_key, reason_code, detail`): `DESPATCH_UNKNOWN_ORDER` for a
    reference fulfil never sent, `DESPATCH_UNKNOWN_LINE` for a line the sent order lacks, `DESPATCH_OVER_QUANTITY`
    for more than ordered (`lines`: order_key, line_no, sku, quantity as sent; `earlier`: the order's despatch rows
    already taken in)."""
    matched = rows.join(
        sent.select("order_ref", "order_key").unique("order_ref", keep="first", maintain_order=True),
        on="order_ref",
        how="left",
    )
    unknown = _unknown_orders(matched.filter(pl.col("order_key").is_null()))
    matched = matched.filter(pl.col("order_key").is_not_null())
    problems = _line_problems(matched, earlier, lines, by)
    rank = {code: i for i, code in enumerate(PRECEDENCE)}
    per_order = (
        problems.with_columns(pl.col("reason_code").replace_strict(rank, return_dtype=pl.Int32).alias("_rank"))
        .sort("order_key", "_rank", "detail")
        .group_by("order_key", maintain_order=True)
        .agg(pl.col("reason_code").first(), pl.col("detail").str.join("; "))
    )
    return matched, pl.concat([unknown, per_order]).cast(PROBLEM_SCHEMA)  # type: ignore[arg-type]
