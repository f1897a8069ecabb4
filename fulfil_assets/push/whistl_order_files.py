"""Whistl order files: canonical orders -> the CSV rows of the file exchange (pure)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import polars as pl

CANCEL_FILE_COLUMNS = ("order_reference", "reason", "requested_at")


def order_file_rows(orders: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """One row per order line; `orders` carries the validated `service_code`, `phone_normalised` and
    `postcode_normalised`."""
    return (
        orders.join(lines, on="order_key", how="inner")
        .sort("order_ref", "line_no")
        .select(
            pl.col("order_ref").alias("order_reference"),
            pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("order_date"),
            "service_code",
            pl.col("ship_name").alias("ship_name"),
            pl.col("address1").alias("ship_address1"),
            pl.col("address2").fill_null("").alias("ship_address2"),
            pl.col("address3").fill_null("").alias("ship_address3"),
            pl.col("city").alias("ship_city"),
            pl.col("postcode_normalised").alias("ship_postcode"),
            pl.col("country_code").alias("ship_country"),
            pl.col("phone_normalised").fill_null("").alias("ship_phone"),
            pl.col("email").fill_null("").alias("ship_email"),
            pl.col("line_no").alias("line_number"),
            "sku",
            "quantity",
        )
    )


def render_csv(rows: pl.DataFrame, columns: tuple[str, ...]) -> bytes:
    """CSV bytes (UTF-8, CRLF, header first) with exactly `columns`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows.select(columns).iter_rows())
    return buf.getvalue().encode("utf-8")


def order_file_name(now: datetime, batch: int, kind: str = "ord") -> str:
    """`<kind>_YYYYMMDDHHMMSSffffff_<batch>.csv` (`ord` orders, `can` cancellations): unique per run and batch."""
    return f"{kind}_{now.strftime('%Y%m%d%H%M%S%f')}_{batch:03d}.csv"
