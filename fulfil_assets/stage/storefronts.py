"""Shopify and BigCommerce raw tables -> canonical `orders` and `order_lines` (pure polars)."""

from __future__ import annotations

import polars as pl

from fulfil_assets.frames import ensure_columns
from fulfil_assets.stage.common import LINE_COLUMNS, ORDER_COLUMNS, conform, with_content_hash

S = pl.String
SHOPIFY_ORDER = {
    c: S
    for c in (
        "id",
        "order_number",
        "email",
        "created_at",
        "updated_at",
        "cancelled_at",
        "financial_status",
        "fulfillment_status",
        "currency",
        "shipping_address__name",
        "shipping_address__company",
        "shipping_address__address1",
        "shipping_address__address2",
        "shipping_address__city",
        "shipping_address__province",
        "shipping_address__zip",
        "shipping_address__country_code",
        "shipping_address__phone",
        "_dlt_id",
    )
} | {"total_price": pl.Float64}
SHOPIFY_LINE = {
    "_dlt_parent_id": S,
    "_dlt_list_idx": pl.Int64,
    "id": S,
    "sku": S,
    "variant_id": S,
    "quantity": pl.Int64,
    "price": pl.Float64,
}
SHOPIFY_SHIPPING = {"_dlt_parent_id": S, "_dlt_list_idx": pl.Int64, "title": S}
PAID_SHOPIFY = ("paid", "partially_refunded")
BC_ORDER = {c: S for c in ("id", "date_created", "date_modified", "payment_status", "currency_code", "_dlt_id")} | {
    "status_id": pl.Int64,
    "total_inc_tax": pl.Float64,
}
BC_ADDRESS = {
    c: S
    for c in (
        "order_id",
        "id",
        "first_name",
        "last_name",
        "company",
        "street_1",
        "street_2",
        "city",
        "state",
        "zip",
        "country_iso2",
        "phone",
        "email",
        "shipping_method",
    )
}
BC_PRODUCT = {
    "order_id": S,
    "id": pl.Int64,
    "order_address_id": S,
    "sku": S,
    "variant_id": S,
    "quantity": pl.Int64,
    "base_price": pl.Float64,
}
BC_STATUS = {5: "cancelled", 2: "despatched", 10: "despatched", 3: "part_despatched"}
PAID_BC = ("captured", "paid", "partially refunded")


def _iso(col: str) -> pl.Expr:
    return pl.col(col).cast(S).str.to_datetime(time_zone="UTC", strict=False)


def _rfc2822(col: str) -> pl.Expr:
    return pl.col(col).cast(S).str.to_datetime("%a, %d %b %Y %H:%M:%S %z", strict=False).dt.convert_time_zone("UTC")


def stage_shopify(
    orders: pl.DataFrame,
    line_items: pl.DataFrame,
    shipping_lines: pl.DataFrame,
    fulfillment_orders: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical orders and lines from Shopify. Lines keep the variant id (validation maps it to the SKU the
    OMS uses); the fulfilment location is the location Shopify assigned the order's first fulfillment order."""
    fo = ensure_columns(
        fulfillment_orders if fulfillment_orders is not None else pl.DataFrame(),
        {"id": pl.Int64, "order_id": pl.Int64, "assigned_location_id": pl.Int64},
    )
    assigned = (
        fo.filter(pl.col("order_id").is_not_null())
        .sort("id")
        .unique("order_id", keep="first")
        .select(pl.col("order_id").cast(S).alias("_oid"), pl.col("assigned_location_id").cast(S).alias("_loc"))
    )
    o = ensure_columns(orders, SHOPIFY_ORDER)
    o = o.join(assigned, left_on=pl.col("id").cast(S), right_on="_oid", how="left")
    ship = ensure_columns(shipping_lines, SHOPIFY_SHIPPING).sort("_dlt_list_idx").unique("_dlt_parent_id", keep="first")
    key = pl.format("shopify:{}", pl.col("id"))
    staged = o.join(
        ship.select(pl.col("_dlt_parent_id").alias("_dlt_id"), pl.col("title").alias("shipping_method")),
        on="_dlt_id",
        how="left",
    ).with_columns(
        key.alias("order_key"),
        pl.lit("shopify").alias("source_system"),
        pl.col("id").cast(S).alias("source_order_id"),
        pl.format("SH{}", "order_number").alias("order_ref"),
        pl.lit("Shopify").alias("channel"),
        _iso("created_at").alias("created_at"),
        _iso("updated_at").alias("updated_at"),
        pl.col("financial_status").is_in(PAID_SHOPIFY).alias("paid"),
        pl.when(pl.col("cancelled_at").is_not_null())
        .then(pl.lit("cancelled"))
        .when(pl.col("fulfillment_status") == "fulfilled")
        .then(pl.lit("despatched"))
        .when(pl.col("fulfillment_status") == "partial")
        .then(pl.lit("part_despatched"))
        .otherwise(pl.lit("open"))
        .alias("status"),
        pl.col("shipping_address__name").alias("ship_name"),
        pl.col("shipping_address__company").alias("company"),
        pl.col("shipping_address__address1").alias("address1"),
        pl.col("shipping_address__address2").alias("address2"),
        pl.col("shipping_address__city").alias("city"),
        pl.col("shipping_address__province").alias("region"),
        pl.col("shipping_address__zip").alias("postcode"),
        pl.col("shipping_address__country_code").alias("country_code"),
        pl.col("shipping_address__phone").alias("phone"),
        pl.col("total_price").alias("total"),
        pl.col("_loc").alias("fulfilment_location"),
    )
    li = ensure_columns(line_items, SHOPIFY_LINE)
    parents = o.select("_dlt_id", pl.col("id").alias("_order_id"))
    lines = li.join(parents, left_on="_dlt_parent_id", right_on="_dlt_id", how="inner").select(
        pl.format("shopify:{}", "_order_id").alias("order_key"),
        (pl.col("_dlt_list_idx") + 1).alias("line_no"),
        "sku",
        pl.col("variant_id").cast(S).alias("source_variant_id"),
        "quantity",
        pl.col("price").alias("unit_price"),
        pl.col("id").cast(S).alias("source_line_id"),
    )
    lines = conform(lines, LINE_COLUMNS).sort("order_key", "line_no")
    return with_content_hash(conform(staged, ORDER_COLUMNS), lines), lines


def stage_bigcommerce(
    orders: pl.DataFrame, products: pl.DataFrame, addresses: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical orders and lines from BigCommerce v2 orders, their products and first ship-to address."""
    o = ensure_columns(orders, BC_ORDER).with_columns(pl.col("id").cast(S))
    addr = (
        ensure_columns(addresses, BC_ADDRESS)
        .with_columns(pl.col("order_id").cast(S))
        .sort("id")
        .unique("order_id", keep="first")
    )
    key = pl.format("bigcommerce:{}", pl.col("id"))
    staged = o.join(addr.drop("id"), left_on="id", right_on="order_id", how="left").with_columns(
        key.alias("order_key"),
        pl.lit("bigcommerce").alias("source_system"),
        pl.col("id").alias("source_order_id"),
        pl.format("BC{}", "id").alias("order_ref"),
        pl.lit("BigCommerce").alias("channel"),
        _rfc2822("date_created").alias("created_at"),
        _rfc2822("date_modified").alias("updated_at"),
        pl.col("payment_status").is_in(PAID_BC).alias("paid"),
        pl.col("status_id").replace_strict(BC_STATUS, default="open", return_dtype=S).alias("status"),
        pl.concat_str([pl.col("first_name"), pl.col("last_name")], separator=" ", ignore_nulls=True)
        .str.strip_chars()
        .alias("ship_name"),
        pl.col("street_1").alias("address1"),
        pl.col("street_2").alias("address2"),
        pl.col("state").alias("region"),
        pl.col("zip").alias("postcode"),
        pl.col("country_iso2").alias("country_code"),
        pl.col("currency_code").alias("currency"),
        pl.col("total_inc_tax").alias("total"),
    )
    p = ensure_columns(products, BC_PRODUCT).with_columns(pl.col("order_id").cast(S))
    lines = (
        p.sort("order_id", "id")
        .with_columns(pl.int_range(1, pl.len() + 1).over("order_id").alias("line_no"))
        .select(
            pl.format("bigcommerce:{}", "order_id").alias("order_key"),
            "line_no",
            "sku",
            pl.col("variant_id").cast(S).alias("source_variant_id"),
            "quantity",
            pl.col("base_price").alias("unit_price"),
            pl.col("id").cast(S).alias("source_line_id"),
            pl.col("order_address_id").cast(S).alias("ship_to_id"),
        )
    )
    lines = conform(lines, LINE_COLUMNS).sort("order_key", "line_no")
    return with_content_hash(conform(staged, ORDER_COLUMNS), lines), lines
