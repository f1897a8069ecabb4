"""Cin7 Core raw tables -> canonical `orders` and `order_lines` (pure polars)."""

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
from resources.cin7 import AUTHORISED, VOIDED

SALE_COLUMNS = {
    "id": pl.String,
    "customer": pl.String,
    "phone": pl.String,
    "email": pl.String,
    "carrier": pl.String,
    "status": pl.String,
    "sale_order_date": pl.String,
    "last_modified_on": pl.String,
    "order__sale_order_number": pl.String,
    "order__status": pl.String,
    "order__total": pl.Float64,
    "shipping_address__line1": pl.String,
    "shipping_address__line2": pl.String,
    "shipping_address__city": pl.String,
    "shipping_address__state": pl.String,
    "shipping_address__postcode": pl.String,
    "shipping_address__country": pl.String,
    "shipping_address__company": pl.String,
    "shipping_address__contact": pl.String,
    "_dlt_id": pl.String,
}
SALE_LINE_COLUMNS = {
    "_dlt_parent_id": pl.String,
    "_dlt_list_idx": pl.Int64,
    "sku": pl.String,
    "product_id": pl.String,
    "quantity": pl.Float64,
    "price": pl.Float64,
}
LIST_COLUMNS = {
    "sale_id": pl.String,
    "source_channel": pl.String,
    "status": pl.String,
    "order_status": pl.String,
    "_updated_at": pl.String,
}
STATUS = {VOIDED: "cancelled", "SHIPPED": "despatched", "COMPLETED": "despatched", "SHIPPING": "part_despatched"}


def _ts(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.to_datetime(time_zone="UTC", strict=False)


def stage_cin7(sales: pl.DataFrame, lines: pl.DataFrame, sale_list: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical orders and lines from Cin7 sales read in detail. Paid means the sale order is AUTHORISED; a voided
    sale is cancelled; shipped or completed ones are despatched. Both come from the sale list where it has them
    (listed with every change, while a sale voided, shipped in full or taken back to draft is not read in detail
    again), and so does `updated_at` where the list's is later. A draft never read in detail is not staged: it is
    read once authorised. Quantities that are not whole numbers become null (and fail QUANTITY_INVALID) rather
    than rounded."""
    s = ensure_columns(sales, SALE_COLUMNS)
    listed = ensure_columns(sale_list, LIST_COLUMNS).select(
        pl.col("sale_id").alias("id"),
        "source_channel",
        pl.col("status").alias("listed_status"),
        pl.col("order_status").alias("listed_order_status"),
        pl.col("_updated_at").alias("listed_updated_at"),
    )
    key = pl.format("cin7:{}", pl.col("id"))
    orders = s.join(listed.unique("id"), on="id", how="left").with_columns(
        key.alias("order_key"),
        pl.lit("cin7").alias("source_system"),
        pl.col("id").alias("source_order_id"),
        pl.col("order__sale_order_number").alias("order_ref"),
        pl.col("source_channel").alias("channel"),
        _ts("sale_order_date").alias("created_at"),
        pl.max_horizontal(_ts("last_modified_on"), _ts("listed_updated_at")).alias("updated_at"),
        (pl.coalesce("listed_order_status", "order__status") == AUTHORISED).alias("paid"),
        pl.coalesce("listed_status", "status")
        .replace_strict(STATUS, default="open", return_dtype=pl.String)
        .alias("status"),
        pl.coalesce("shipping_address__contact", "customer").alias("ship_name"),
        pl.col("shipping_address__company").alias("company"),
        pl.col("shipping_address__line1").alias("address1"),
        pl.col("shipping_address__line2").alias("address2"),
        pl.lit(None, pl.String).alias("address3"),
        pl.col("shipping_address__city").alias("city"),
        pl.col("shipping_address__state").alias("region"),
        pl.col("shipping_address__postcode").alias("postcode"),
        country_code(pl.col("shipping_address__country")).alias("country_code"),
        pl.col("carrier").alias("shipping_method"),
        pl.lit("GBP").alias("currency"),
        pl.col("order__total").alias("total"),
    )
    ln = ensure_columns(lines, SALE_LINE_COLUMNS)
    qty = pl.col("quantity").cast(pl.Float64)
    order_lines = ln.join(s.select("_dlt_id", "id"), left_on="_dlt_parent_id", right_on="_dlt_id", how="inner").select(
        key.alias("order_key"),
        (pl.col("_dlt_list_idx") + 1).alias("line_no"),
        "sku",
        pl.col("product_id").alias("source_variant_id"),
        pl.when(qty == qty.floor()).then(qty.cast(pl.Int64)).alias("quantity"),
        pl.col("price").alias("unit_price"),
    )
    order_lines = conform(order_lines, LINE_COLUMNS).sort("order_key", "line_no")
    return with_content_hash(conform(orders, ORDER_COLUMNS), order_lines), order_lines


def unreadable_sales(
    unreadable: pl.DataFrame, sales: pl.DataFrame, sale_list: pl.DataFrame
) -> tuple[pl.DataFrame, list[str]]:
    """The exceptions to open (`order_key, reason_code, detail`) for sales Cin7 would not return since their last
    good read (`SOURCE_UNREADABLE`, for the office), and the order keys of those read in full since, or voided since
    (resolved: a voided sale is not read again, and its cancellation needs only its list row). The raw tables carry
    dlt's `_dlt_load_id`, which orders the loads."""
    columns = {"id": pl.String, "order_number": pl.String, "reason": pl.String, "_dlt_load_id": pl.String}
    refused = (
        ensure_columns(unreadable, columns)
        .sort("_dlt_load_id")
        .group_by("id", maintain_order=True)
        .last()
        .join(
            ensure_columns(sales, {"id": pl.String, "_dlt_load_id": pl.String})
            .group_by("id")
            .agg(pl.col("_dlt_load_id").max().alias("read_at")),
            on="id",
            how="left",
        )
    )
    voided = ensure_columns(sale_list, {"sale_id": pl.String, "status": pl.String}).filter(pl.col("status") == VOIDED)
    still = refused.filter(pl.col("read_at").is_null() | (pl.col("read_at") < pl.col("_dlt_load_id"))).join(
        voided.select(pl.col("sale_id").alias("id")), on="id", how="anti"
    )
    problems = still.select(
        pl.format("cin7:{}", "id").alias("order_key"),
        pl.lit("SOURCE_UNREADABLE").alias("reason_code"),
        pl.format(
            "Cin7 will not return sale {} ({}): {}. Its other sales go on; it is read again when Cin7 next lists it "
            "as changed (re-save it in Cin7, or ask Cin7 support)",
            pl.col("order_number").fill_null("?"),
            "id",
            "reason",
        ).alias("detail"),
    )
    resolved = refused.join(still.select("id"), on="id", how="anti")["id"]
    return problems, [f"cin7:{i}" for i in resolved.to_list()]
