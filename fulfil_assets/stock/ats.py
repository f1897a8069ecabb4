"""Available to sell, per flow, SKU and order-system location (pure polars).

`ats = max(0, available - open_unsent - buffer)` for a stock SKU, where `available` is what the stock source
(the warehouse; Linnworks for Shopify) shows at the location mapped to the order-system location (a negative
figure, an oversold warehouse, counts as 0) and `open_unsent` is what the order system holds open that has not
reached the warehouse yet. A bundle sells as many as its scarcest component allows:
`ats(bundle) = min(floor(ats(component) / quantity))`.
"""

from __future__ import annotations

import polars as pl

SOURCE = {"source_location": pl.String, "sku": pl.String, "available": pl.Int64}
DELTAS = {
    "flow": pl.String,
    "oms": pl.String,
    "location": pl.String,
    "sku": pl.String,
    "source_location": pl.String,
    "is_bundle": pl.Boolean,
    "wms_available": pl.Int64,
    "open_unsent": pl.Int64,
    "buffer": pl.Int64,
    "ats": pl.Int64,
    "oms_level": pl.Int64,
    "last_confirmed": pl.Int64,
    "to_push": pl.Boolean,
}


def open_unsent(orders: pl.DataFrame, lines: pl.DataFrame, sent: pl.DataFrame, bundles: pl.DataFrame) -> pl.DataFrame:
    """Units per stock SKU that open orders (`orders`: `order_key`, `status`) hold and the warehouse has not yet
    received (`sent`: the `order_key`s it holds), bundles counted as their components."""
    waiting = orders.filter(pl.col("status") == "open").join(sent.select("order_key"), on="order_key", how="anti")
    units = (
        lines.join(waiting.select("order_key"), on="order_key", how="semi")
        .filter(pl.col("sku").is_not_null() & (pl.col("quantity") > 0))
        .select("sku", pl.col("quantity").cast(pl.Int64))
    )
    parts = bundles.select(
        pl.col("bundle_sku").alias("sku"), "component_sku", pl.col("quantity").cast(pl.Int64).alias("per")
    )
    expanded = units.join(parts, on="sku", how="left").select(
        pl.coalesce("component_sku", "sku").alias("sku"), (pl.col("quantity") * pl.col("per").fill_null(1))
    )
    return expanded.group_by("sku").agg(pl.col("quantity").sum().alias("open_unsent"))


def available_to_sell(
    source: pl.DataFrame,
    locations: pl.DataFrame,
    oms_levels: pl.DataFrame,
    unsent: pl.DataFrame,
    buffers: pl.DataFrame,
    bundles: pl.DataFrame,
    default_buffer: int,
) -> pl.DataFrame:
    """Per order-system location (`locations`: `location`, `source_location`) and SKU the order system lists
    there (`oms_levels`: `location`, `sku`, `level`): the stock source's figure, what open orders hold, the
    buffer (`buffers` per SKU, else `default_buffer`) and the result. A SKU the source does not hold sells 0."""
    listed = oms_levels.join(locations, on="location", how="inner")
    stock = source.select(
        "source_location", "sku", pl.col("available").cast(pl.Int64).clip(lower_bound=0).alias("wms_available")
    )
    frame = (
        listed.join(stock, on=["source_location", "sku"], how="left")
        .join(unsent, on="sku", how="left")
        .join(buffers.select("sku", pl.col("buffer").cast(pl.Int64)), on="sku", how="left")
        .with_columns(
            pl.col("wms_available").fill_null(0),
            pl.col("open_unsent").fill_null(0).cast(pl.Int64),
            pl.col("buffer").fill_null(default_buffer),
            pl.col("sku").is_in(bundles["bundle_sku"].implode()).alias("is_bundle"),
        )
        .with_columns(
            (pl.col("wms_available") - pl.col("open_unsent") - pl.col("buffer")).clip(lower_bound=0).alias("ats")
        )
    )
    # Bundles: from their components' results at the same location (a component the source lacks sells 0).
    components = stock.join(locations, on="source_location").select(
        "location", pl.col("sku").alias("component_sku"), "wms_available"
    )
    parts = bundles.select("bundle_sku", "component_sku", pl.col("quantity").cast(pl.Int64))
    component_ats = (
        listed.filter(pl.col("sku").is_in(bundles["bundle_sku"].implode()))
        .select("location", pl.col("sku").alias("bundle_sku"))
        .join(parts, on="bundle_sku")
        .join(components, on=["location", "component_sku"], how="left")
        .join(unsent.rename({"sku": "component_sku"}), on="component_sku", how="left")
        .join(
            buffers.select(pl.col("sku").alias("component_sku"), pl.col("buffer").cast(pl.Int64)),
            on="component_sku",
            how="left",
        )
        .with_columns(
            (
                pl.col("wms_available").fill_null(0)
                - pl.col("open_unsent").fill_null(0)
                - pl.col("buffer").fill_null(default_buffer)
            ).clip(lower_bound=0)
            // pl.col("quantity")
        )
        .group_by("location", "bundle_sku")
        .agg(pl.col("wms_available").min().alias("bundle_ats"))
        .rename({"bundle_sku": "sku"})
    )
    return (
        frame.join(component_ats, on=["location", "sku"], how="left")
        .with_columns(
            pl.when(pl.col("is_bundle")).then(pl.col("bundle_ats").fill_null(0)).otherwise(pl.col("ats")).alias("ats")
        )
        .drop("bundle_ats")
    )


def deltas(ats: pl.DataFrame, confirmed: pl.DataFrame, flow: str, oms: str) -> pl.DataFrame:
    """The `stock_deltas` rows of one flow: each result beside what the order system shows now and what fulfil
    last confirmed there (`confirmed`: `location`, `sku`, `level`). A SKU is pushed when its result differs from
    the last confirmed push, or, never pushed, from what the order system shows; and whenever the order system
    shows more than may be sold (a level raised by hand there: an oversell waiting to happen). A level below the
    result is left alone: the order system may have sold units fulfil has not read yet."""
    last = confirmed.select("location", "sku", pl.col("level").alias("last_confirmed"))
    return (
        ats.join(last, on=["location", "sku"], how="left")
        .with_columns(
            pl.lit(flow).alias("flow"),
            pl.lit(oms).alias("oms"),
            pl.col("level").alias("oms_level"),
            (
                pl.when(pl.col("last_confirmed").is_not_null())
                .then(pl.col("ats") != pl.col("last_confirmed"))
                .otherwise(pl.col("ats") != pl.col("level").fill_null(-1))
                | (pl.col("level").fill_null(-1) > pl.col("ats"))
            ).alias("to_push"),
        )
        .select([pl.col(c).cast(t) for c, t in DELTAS.items()])
        .sort("location", "sku")
    )
