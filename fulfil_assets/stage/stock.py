"""Each system's stock as the canonical `oms_stock` (what order systems show) and `wms_stock` (what warehouses
physically hold) tables (pure polars)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from fulfil_assets.frames import ensure_columns

OMS_STOCK = {
    "oms": pl.String,
    "sku": pl.String,
    "location": pl.String,
    "level": pl.Int64,
    "fetched_at": pl.Datetime("us", "UTC"),
}
WMS_STOCK = {
    "wms": pl.String,
    "sku": pl.String,
    "location": pl.String,
    "on_hand": pl.Int64,
    "allocated": pl.Int64,
    "available": pl.Int64,
    "snapshot_at": pl.Datetime("us", "UTC"),
    "source_file": pl.String,
}
QUANTITIES = ("on_hand", "allocated", "available")
QUARANTINE = {"source": pl.String, "source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String}


def _oms(frame: pl.DataFrame, oms: str, fetched_at: datetime) -> pl.DataFrame:
    return frame.with_columns(pl.lit(oms).alias("oms"), pl.lit(fetched_at).alias("fetched_at")).select(
        [pl.col(c).cast(t) for c, t in OMS_STOCK.items()]
    )


def linnworks_stock(levels: pl.DataFrame, fetched_at: datetime) -> pl.DataFrame:
    """Linnworks stock level per SKU and stock location."""
    lv = ensure_columns(levels, {"sku": pl.String, "location__stock_location_id": pl.String, "stock_level": pl.Int64})
    return _oms(
        lv.select("sku", pl.col("location__stock_location_id").alias("location"), pl.col("stock_level").alias("level")),
        "linnworks",
        fetched_at,
    )


def cin7_stock(availability: pl.DataFrame, fetched_at: datetime) -> pl.DataFrame:
    """Cin7 Core available stock per SKU and location (bins and batches summed)."""
    av = ensure_columns(availability, {"sku": pl.String, "location": pl.String, "available": pl.Float64})
    return _oms(
        av.group_by("sku", "location").agg(pl.col("available").sum().cast(pl.Int64).alias("level")), "cin7", fetched_at
    )


def shopify_stock(levels: pl.DataFrame, variants: pl.DataFrame, fetched_at: datetime) -> pl.DataFrame:
    """Shopify available per SKU and location: levels are keyed by inventory item, which the catalogue's
    variants map to SKUs (a level whose item has no SKU is dropped: nothing can be sold against it)."""
    lv = ensure_columns(levels, {"inventory_item_id": pl.Int64, "location_id": pl.Int64, "available": pl.Int64})
    vr = ensure_columns(variants, {"sku": pl.String, "inventory_item_id": pl.Int64})
    skus = vr.filter(pl.col("sku").is_not_null() & (pl.col("sku") != "")).select("sku", "inventory_item_id").unique()
    return _oms(
        lv.join(skus, on="inventory_item_id", how="inner").select(
            "sku", pl.col("location_id").cast(pl.String).alias("location"), pl.col("available").alias("level")
        ),
        "shopify",
        fetched_at,
    )


def bigcommerce_stock(levels: pl.DataFrame, fetched_at: datetime) -> pl.DataFrame:
    """BigCommerce available to sell per SKU and location."""
    lv = ensure_columns(levels, {"sku": pl.String, "location_id": pl.String, "available_to_sell": pl.Int64})
    return _oms(
        lv.select(
            "sku", pl.col("location_id").cast(pl.String).alias("location"), pl.col("available_to_sell").alias("level")
        ),
        "bigcommerce",
        fetched_at,
    )


def peoplevox_stock(available: pl.DataFrame, snapshot_at: datetime) -> pl.DataFrame:
    """Peoplevox `Available` report rows as warehouse stock per site (on hand = available: the report has no
    allocation column)."""
    av = ensure_columns(available, {"item_code": pl.String, "site_reference": pl.String, "available": pl.String})
    qty = pl.col("available").cast(pl.Float64).cast(pl.Int64)
    return av.select(
        pl.lit("peoplevox").alias("wms"),
        pl.col("item_code").alias("sku"),
        pl.col("site_reference").alias("location"),
        qty.alias("on_hand"),
        pl.lit(0).alias("allocated"),
        qty.alias("available"),
        pl.lit(snapshot_at).alias("snapshot_at"),
        pl.lit(None, pl.String).alias("source_file"),
    ).cast(WMS_STOCK)  # type: ignore[arg-type]


SNAPSHOT_FILES = {
    "file_name": pl.String,
    "file_hash": pl.String,
    "snapshot_at": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
}


def latest_versions(rows: pl.DataFrame) -> pl.DataFrame:
    """Only the newest version of each file name (by modification time, then content hash): a same-named re-send
    replaces the first, it never merges with it."""
    if rows.is_empty() or "_file_hash" not in rows.columns:
        return rows
    version = pl.concat_str(pl.col("_file_modified_at").cast(pl.String), pl.col("_file_hash").fill_null(""))
    return rows.filter(version == version.max().over("_file_name"))


def snapshot_files(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per snapshot file (newest version): its content hash, its time (latest `snapshot_at` in it) and
    how many rows it has."""
    r = ensure_columns(rows, {"_file_name": pl.String, "_file_hash": pl.String, "snapshot_at": pl.String})
    if r.is_empty():
        return pl.DataFrame(schema=SNAPSHOT_FILES)
    return (
        r.group_by("_file_name")
        .agg(
            pl.col("_file_hash").first().fill_null("").alias("file_hash"),
            pl.col("snapshot_at").str.strip_chars().str.to_datetime(time_zone="UTC", strict=False).max(),
            pl.len().cast(pl.Int64).alias("rows"),
        )
        .rename({"_file_name": "file_name"})
        .select(list(SNAPSHOT_FILES))
        .cast(SNAPSHOT_FILES)  # type: ignore[arg-type]
    )


def judge_snapshot(
    snapshot_at: datetime | None, usable: int, last_accepted: int | None, now: datetime, min_ratio: float
) -> str | None:
    """Why a snapshot cannot be applied as the whole catalogue (None: it can). A file cut short or still being
    written shows as far fewer rows than the last good one; a time in the future would freeze stock."""
    if snapshot_at is None:
        return "no readable snapshot_at"
    if snapshot_at > now + timedelta(minutes=5):
        return f"snapshot_at {snapshot_at:%Y-%m-%d %H:%M} is in the future"
    if usable == 0:
        return "not one usable stock row"
    if last_accepted and usable < min_ratio * last_accepted:
        return (
            f"{usable} usable rows against {last_accepted} in the last good snapshot (below {min_ratio:.0%}): "
            "cut short, or still being written?"
        )
    return None


def whistl_stock(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The newest full snapshot among Whistl's raw snapshot rows (latest `snapshot_at`, then file name) as
    `wms_stock`, and that file's unusable rows as quarantine rows (no SKU, a quantity that is not a whole
    number, an unreadable time, a SKU listed twice). Units Whistl holds in quarantine (damaged, on hold) are
    never available, whether or not its `available` column already leaves them out:
    `available = min(available, on_hand - allocated - quarantine)`."""
    text = {
        c: pl.String for c in ("sku", "on_hand", "allocated", "available", "quarantine", "snapshot_at", "_file_name")
    }
    r = ensure_columns(rows, {**text, "_row_no": pl.Int64})
    if r.is_empty():
        return pl.DataFrame(schema=WMS_STOCK), pl.DataFrame(schema=QUARANTINE)
    parsed = r.with_columns(
        pl.col("sku").str.strip_chars(),
        *[pl.col(c).str.strip_chars().cast(pl.Int64, strict=False).alias(f"_{c}") for c in QUANTITIES],
        pl.col("quarantine").str.strip_chars().replace("", None).alias("_quarantine_text"),
        pl.col("snapshot_at").str.to_datetime(time_zone="UTC", strict=False).alias("_at"),
    )
    newest = (parsed.group_by("_file_name").agg(pl.col("_at").max()).sort("_at", "_file_name", nulls_last=False))[
        "_file_name"
    ][-1]
    snap = parsed.filter(pl.col("_file_name") == newest)
    problems = pl.concat_list(
        pl.when(pl.col("sku").fill_null("") == "").then(pl.lit("no sku")),
        *[
            # Negative is a real state (oversold in the warehouse): kept, and counted as 0 available to sell.
            pl.when(pl.col(f"_{c}").is_null()).then(
                pl.format("{} {} is not a whole number", pl.lit(c), pl.col(c).fill_null("''"))
            )
            for c in QUANTITIES
        ],
        pl.when(
            pl.col("_quarantine_text").is_not_null() & pl.col("_quarantine_text").cast(pl.Int64, strict=False).is_null()
        ).then(pl.format("quarantine {} is not a whole number", pl.col("quarantine"))),
        pl.when(pl.col("_at").is_null()).then(pl.lit("snapshot_at is not an ISO time")),
        pl.when(pl.col("sku").is_duplicated() & (pl.col("sku").fill_null("") != "")).then(pl.lit("sku listed twice")),
    ).list.drop_nulls()
    snap = snap.with_columns(problems.list.join("; ").alias("_reason"))
    good = snap.filter(pl.col("_reason") == "").select(
        pl.lit("whistl").alias("wms"),
        "sku",
        pl.lit("main").alias("location"),
        pl.col("_on_hand").alias("on_hand"),
        pl.col("_allocated").alias("allocated"),
        pl.min_horizontal(
            "_available",
            pl.col("_on_hand")
            - pl.col("_allocated")
            - pl.col("_quarantine_text").cast(pl.Int64, strict=False).fill_null(0),
        ).alias("available"),
        pl.col("_at").alias("snapshot_at"),
        pl.col("_file_name").alias("source_file"),
    )
    bad = snap.filter(pl.col("_reason") != "").select(
        pl.lit("whistl_stock").alias("source"),
        pl.col("_file_name").alias("source_file"),
        (pl.col("_row_no") + 1).alias("line"),
        pl.col("_reason").alias("reason"),
        pl.concat_str([pl.col(c).fill_null("") for c in ("sku", *QUANTITIES, "snapshot_at")], separator=",").alias(
            "raw"
        ),
    )
    return good.cast(WMS_STOCK), bad.cast(QUARANTINE)  # type: ignore[arg-type]
