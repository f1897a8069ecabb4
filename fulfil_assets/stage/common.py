"""Helpers every staging module shares: tolerant column selection, country names, content hashes."""

from __future__ import annotations

import polars as pl

from fulfil_assets.frames import ensure_columns

ORDER_COLUMNS = {
    "order_key": pl.String,
    "source_system": pl.String,
    "source_order_id": pl.String,
    "order_ref": pl.String,
    "channel": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
    "updated_at": pl.Datetime("us", "UTC"),
    "paid": pl.Boolean,
    "status": pl.String,
    "ship_name": pl.String,
    "company": pl.String,
    "address1": pl.String,
    "address2": pl.String,
    "address3": pl.String,
    "city": pl.String,
    "region": pl.String,
    "postcode": pl.String,
    "country_code": pl.String,
    "phone": pl.String,
    "email": pl.String,
    "shipping_method": pl.String,
    "currency": pl.String,
    "total": pl.Float64,
    "fulfilment_location": pl.String,
    "content_hash": pl.String,
}
LINE_COLUMNS = {
    "order_key": pl.String,
    "line_no": pl.Int32,
    "sku": pl.String,
    "source_variant_id": pl.String,
    "quantity": pl.Int64,
    "unit_price": pl.Float64,
    "source_line_id": pl.String,  # the order system's own id of the line (what it ships by)
    "ship_to_id": pl.String,  # the line's ship-to address at the order system (BigCommerce shipments)
}
# English country names as OMSs show them -> ISO 3166-1 alpha-2.
COUNTRY_CODES = {
    "united kingdom": "GB",
    "great britain": "GB",
    "uk": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "ireland": "IE",
    "republic of ireland": "IE",
    "france": "FR",
    "germany": "DE",
    "united states": "US",
    "usa": "US",
    "united states of america": "US",
    "spain": "ES",
    "italy": "IT",
    "netherlands": "NL",
    "belgium": "BE",
    "jersey": "JE",
    "guernsey": "GG",
    "isle of man": "IM",
    "australia": "AU",
    "canada": "CA",
    "denmark": "DK",
    "sweden": "SE",
    "norway": "NO",
    "poland": "PL",
}


def country_code(name: pl.Expr) -> pl.Expr:
    """ISO-2 from a country name or code; null when unrecognised."""
    cleaned = name.str.strip_chars().str.to_lowercase()
    as_code = name.str.strip_chars().str.to_uppercase()
    return (
        pl.when(as_code.str.contains(r"^[A-Z]{2}$"))
        .then(as_code)
        .otherwise(cleaned.replace_strict(COUNTRY_CODES, default=None, return_dtype=pl.String))
    )


def conform(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """Exactly `columns`, in order, cast to their types."""
    frame = ensure_columns(frame, columns)
    return frame.select([pl.col(c).cast(t, strict=False) for c, t in columns.items()])


def with_content_hash(orders: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """A hash of what the target's payload is made from (address, method, location, lines with their storefront
    variant): validation checks an order again when it changes (after sending, an amendment)."""
    fields = [
        "ship_name",
        "company",
        "address1",
        "address2",
        "address3",
        "city",
        "region",
        "postcode",
        "country_code",
        "phone",
        "email",
        "shipping_method",
        "fulfilment_location",
    ]
    line_sig = (
        lines.sort("order_key", "line_no")
        .group_by("order_key", maintain_order=True)
        .agg(
            pl.format(
                "{}x{}@{}", pl.col("sku").fill_null(""), pl.col("quantity"), pl.col("source_variant_id").fill_null("")
            )
            .str.join("|")
            .alias("_lines")
        )
    )
    return (
        orders.join(line_sig, on="order_key", how="left")
        .with_columns(
            pl.concat_str(
                [pl.col(f).fill_null("") for f in fields] + [pl.col("_lines").fill_null("")], separator="\x1f"
            )
            .hash(seed=0)
            .cast(pl.String)
            .alias("content_hash")
        )
        .drop("_lines")
    )
