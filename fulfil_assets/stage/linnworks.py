"""Linnworks raw tables -> canonical `orders` and `order_lines` (pure polars)."""

from __future__ import annotations

import polars as pl

from fulfil_assets.stage.common import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    conform,
    country_code,
    ensure_columns,
    with_content_hash,
)

OPEN_COLUMNS = {
    "order_id": pl.String,
    "num_order_id": pl.Int64,
    "general_info__status": pl.Int64,
    "general_info__received_date": pl.Datetime("us", "UTC"),
    "general_info__sub_source": pl.String,
    "general_info__part_shipped": pl.Boolean,
    "general_info__location": pl.String,
    "customer_info__address__full_name": pl.String,
    "customer_info__address__company": pl.String,
    "customer_info__address__address1": pl.String,
    "customer_info__address__address2": pl.String,
    "customer_info__address__address3": pl.String,
    "customer_info__address__town": pl.String,
    "customer_info__address__region": pl.String,
    "customer_info__address__post_code": pl.String,
    "customer_info__address__country": pl.String,
    "customer_info__address__phone_number": pl.String,
    "customer_info__address__email_address": pl.String,
    "shipping_info__postal_service_name": pl.String,
    "totals_info__currency": pl.String,
    "totals_info__total_charge": pl.Float64,
    "_fulfil_seen_at": pl.String,
    "_dlt_id": pl.String,
}
ITEM_COLUMNS = {
    "_dlt_root_id": pl.String,
    "_dlt_list_idx": pl.Int64,
    "sku": pl.String,
    "stock_item_id": pl.String,
    "quantity": pl.Int64,
    "price_per_unit": pl.Float64,
}
PROCESSED_COLUMNS = {"pk_order_id": pl.String, "d_processed_on": pl.String, "d_cancelled_on": pl.String}


def _utc(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A timestamp column as UTC, whether dlt stored it as a timestamp or as ISO text."""
    if column in frame.columns and isinstance(frame.schema[column], pl.Datetime):
        return (
            pl.col(column).dt.convert_time_zone("UTC")
            if frame.schema[column].time_zone
            else pl.col(column).dt.replace_time_zone("UTC")
        )
    return pl.col(column).cast(pl.String).str.to_datetime(time_zone="UTC", strict=False)


def stage_linnworks(
    open_orders: pl.DataFrame, items: pl.DataFrame, processed: pl.DataFrame, order_ref_prefix: str = "LW"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical orders and lines. Status: open if in the latest open-order read; cancelled or despatched
    when Linnworks reports it processed/cancelled; `closed` when it left the open set with no report yet."""
    oo = ensure_columns(open_orders, OPEN_COLUMNS)
    proc = (
        ensure_columns(processed, PROCESSED_COLUMNS)
        .select(
            pl.col("pk_order_id").alias("order_id"),
            pl.col("d_processed_on").is_not_null().alias("_processed"),
            pl.col("d_cancelled_on").is_not_null().alias("_cancelled"),
            pl.coalesce(_utc(processed, "d_cancelled_on"), _utc(processed, "d_processed_on")).alias("_closed_at"),
        )
        .unique("order_id", keep="last")
    )
    latest = oo.select(pl.col("_fulfil_seen_at").max()).item()
    key = pl.format("linnworks:{}", pl.col("order_id"))
    orders = oo.join(proc, on="order_id", how="left").with_columns(
        key.alias("order_key"),
        pl.lit("linnworks").alias("source_system"),
        pl.col("order_id").alias("source_order_id"),
        pl.format("{}{}", pl.lit(order_ref_prefix), pl.col("num_order_id")).alias("order_ref"),
        pl.col("general_info__sub_source").alias("channel"),
        pl.col("general_info__received_date").alias("created_at"),
        pl.coalesce("_closed_at", "general_info__received_date").alias("updated_at"),
        (pl.col("general_info__status") == 1).alias("paid"),
        pl.when(pl.col("_cancelled").fill_null(False))
        .then(pl.lit("cancelled"))
        .when(pl.col("_processed").fill_null(False))
        .then(pl.lit("despatched"))
        .when(pl.lit(latest is not None) & (pl.col("_fulfil_seen_at") != pl.lit(latest)))
        .then(pl.lit("closed"))
        .when(pl.col("general_info__part_shipped").fill_null(False))
        .then(pl.lit("part_despatched"))
        .otherwise(pl.lit("open"))
        .alias("status"),
        pl.col("customer_info__address__full_name").alias("ship_name"),
        pl.col("customer_info__address__company").alias("company"),
        pl.col("customer_info__address__address1").alias("address1"),
        pl.col("customer_info__address__address2").alias("address2"),
        pl.col("customer_info__address__address3").alias("address3"),
        pl.col("customer_info__address__town").alias("city"),
        pl.col("customer_info__address__region").alias("region"),
        pl.col("customer_info__address__post_code").alias("postcode"),
        country_code(pl.col("customer_info__address__country")).alias("country_code"),
        pl.col("customer_info__address__phone_number").alias("phone"),
        pl.col("customer_info__address__email_address").alias("email"),
        pl.col("shipping_info__postal_service_name").alias("shipping_method"),
        pl.col("totals_info__currency").alias("currency"),
        pl.col("totals_info__total_charge").alias("total"),
        pl.col("general_info__location").alias("fulfilment_location"),
    )
    it = ensure_columns(items, ITEM_COLUMNS).drop("order_id", strict=False)  # the order's own id is the key
    lines = it.join(oo.select("_dlt_id", "order_id"), left_on="_dlt_root_id", right_on="_dlt_id", how="inner").select(
        key.alias("order_key"),
        (pl.col("_dlt_list_idx") + 1).alias("line_no"),
        pl.col("sku"),
        pl.col("stock_item_id").alias("source_variant_id"),
        pl.col("quantity"),
        pl.col("price_per_unit").alias("unit_price"),
    )
    lines = conform(lines, LINE_COLUMNS).sort("order_key", "line_no")
    orders = with_content_hash(conform(orders, ORDER_COLUMNS), lines)
    return orders, lines
