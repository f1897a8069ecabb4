"""Despatches a warehouse reports through its API (Peoplevox) as canonical `despatches` rows (pure polars)."""

from __future__ import annotations

import polars as pl

from fulfil_assets.frames import ensure_columns
from fulfil_assets.whistl_formats import DESPATCH_SCHEMA

# The despatch-file rows plus the order they belong to (null until matched).
DESPATCH_COLUMNS = {**DESPATCH_SCHEMA, "order_key": pl.String}


def peoplevox_despatches(raw: pl.DataFrame, sent: pl.DataFrame) -> pl.DataFrame:
    """Peoplevox `Despatches` rows (one per despatch and item) as despatch lines: lines numbered by item within
    a despatch, one parcel each, matched to the order fulfil sent under that reference (`sent`: order_ref,
    order_key; unmatched rows keep a null order_key)."""
    r = ensure_columns(
        raw,
        {
            c: pl.String
            for c in (
                "despatch_number",
                "sales_order_number",
                "item_code",
                "quantity",
                "tracking_number",
                "carrier_reference",
                "service_type",
                "despatch_date",
            )
        },
    )
    when = pl.col("despatch_date")
    # dlt may have typed the ISO times already; otherwise they are text.
    when = when.str.to_datetime(time_zone="UTC", strict=False) if r.schema["despatch_date"] == pl.String else when
    keys = ensure_columns(sent, {"order_ref": pl.String, "order_key": pl.String}).unique("order_ref")
    return (
        r.with_columns(pl.col("item_code").rank("ordinal").over("despatch_number").alias("line_no"))
        .join(keys, left_on="sales_order_number", right_on="order_ref", how="left")
        .select(
            pl.lit("peoplevox").alias("wms"),
            pl.col("sales_order_number").alias("order_ref"),
            "order_key",
            pl.col("despatch_number").alias("despatch_ref"),
            "line_no",
            pl.lit(1).alias("parcel_no"),
            pl.col("item_code").alias("sku"),
            pl.col("quantity").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias("quantity"),
            pl.col("carrier_reference").alias("carrier"),
            pl.col("service_type").alias("service_code"),
            pl.col("tracking_number").replace("", None),
            pl.lit(None, pl.String).alias("tracking_url"),
            when.alias("despatched_at"),
            pl.lit(None, pl.Boolean).alias("partial"),
            pl.lit("peoplevox:GetData/Despatches").alias("source_file"),
            pl.lit(None, pl.String).alias("reason"),
        )
        .cast(DESPATCH_COLUMNS)  # type: ignore[arg-type]
        .sort("despatch_ref", "line_no")
    )
