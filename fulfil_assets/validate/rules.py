"""The order rules as pure polars: one verdict per order and rule, with a reason code, detail and owner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
from phonenumbers import PhoneMetadata

from fulfil_assets.frames import ensure_columns
from fulfil_assets.reasons import OWNERS
from fulfil_assets.validate.suites import PHONE_REGIONS, POSTCODE_PATTERNS, failure_expr, row_failures

VERDICT_SCHEMA = {
    "order_key": pl.String,
    "rule": pl.String,
    "passed": pl.Boolean,
    "reason_code": pl.String,
    "detail": pl.String,
    "owner": pl.String,
}
STOREFRONTS = ("shopify", "bigcommerce")
CALLING_CODES = {r: str(PhoneMetadata.metadata_for_region(r).country_code) for r in PHONE_REGIONS}
NATIONAL_PREFIXES = {r: PhoneMetadata.metadata_for_region(r).national_prefix or "" for r in PHONE_REGIONS}


def _clean(col: str) -> pl.Expr:
    """Trimmed text, blank as null."""
    text = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def phone_e164(phone: pl.Expr, country: pl.Expr) -> pl.Expr:
    """E.164 from what the customer typed, parsed for the ship-to country (vectorised: +CC, 00CC, national
    prefix, `(0)`); null when blank; `?digits` when it cannot be placed in a supported country."""
    raw = phone.str.replace_all("(0)", "", literal=True)
    digits = raw.str.replace_all(r"[^0-9]", "")
    cc = country.replace_strict(CALLING_CODES, default=None, return_dtype=pl.String)
    prefix = country.replace_strict(NATIONAL_PREFIXES, default="", return_dtype=pl.String)
    national = (
        pl.when((prefix != "") & digits.str.starts_with(prefix))
        .then(digits.str.slice(prefix.str.len_chars()))
        .otherwise(digits)
    )
    return (
        pl.when(phone.is_null())
        .then(None)
        .when(digits == "")
        .then(pl.concat_str([pl.lit("?"), raw]))
        .when(raw.str.strip_chars().str.starts_with("+"))
        .then(pl.concat_str([pl.lit("+"), digits]))
        .when(digits.str.starts_with("00"))
        .then(pl.concat_str([pl.lit("+"), digits.str.slice(2)]))
        .when(cc.is_null())
        .then(pl.concat_str([pl.lit("?"), digits]))
        .otherwise(pl.concat_str([pl.lit("+"), cc, national]))
    )


def normalise_postcode(postcode: pl.Expr, country: pl.Expr) -> pl.Expr:
    """Upper case, trimmed; UK-format countries get one space before the inward code (IE: after the
    routing key). The raw value is kept in `postcode`."""
    compact = postcode.str.to_uppercase().str.replace_all(r"\s+", "")
    n = compact.str.len_chars()
    spaced = pl.concat_str([compact.str.slice(0, n - 3), pl.lit(" "), compact.str.slice(-3)])
    return (
        pl.when(country.is_in(["GB", "JE", "GG", "IM", "CA"]) & (n >= 5))
        .then(spaced)
        .when((country == "IE") & (n == 7))
        .then(pl.concat_str([compact.str.slice(0, 3), pl.lit(" "), compact.str.slice(3)]))
        .when(country.is_in(["SE", "NL"]) & (n == 5 + (country == "NL").cast(pl.Int64)))
        .then(pl.concat_str([compact.str.slice(0, n - 2), pl.lit(" "), compact.str.slice(-2)]))
        .otherwise(postcode.str.strip_chars().str.to_uppercase())
    )


def prepare_lines(
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    wms: str,
    service_map: pl.DataFrame,
    variant_map: pl.DataFrame | None = None,
    bundles: pl.DataFrame | None = None,
    locations: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The frame the suites check: one row per order line as the WMS will receive it (storefront variants
    mapped to SKUs, bundles expanded into components), with the order's cleaned and normalised fields and its
    location at the target (`target_location`, from `locations.csv`)."""
    svc = service_map.filter(pl.col("wms") == wms).select(
        pl.col("system").alias("source_system"), "shipping_method", "service_code"
    )
    loc = (
        locations
        if locations is not None
        else pl.DataFrame(schema={c: pl.String for c in ("system", "location", "target", "target_location")})
    ).filter(pl.col("target") == wms)
    loc = loc.select(pl.col("system").alias("source_system"), pl.col("location").alias("_loc"), "target_location")
    orders = ensure_columns(orders, {"fulfilment_location": pl.String, "paid": pl.Boolean}).with_columns(
        pl.col("fulfilment_location").cast(pl.String)  # all blank: polars may have typed it Null
    )
    o = (
        orders.with_columns(
            [_clean(c).alias(c) for c in ("ship_name", "address1", "city", "country_code", "phone", "postcode")]
        )
        .with_columns(
            phone_e164(pl.col("phone"), pl.col("country_code")).alias("phone_e164"),
            normalise_postcode(pl.col("postcode").fill_null(""), pl.col("country_code")).alias("postcode_norm"),
        )
        .with_columns(
            pl.when(pl.col("phone_e164").str.starts_with("+44"))
            .then(pl.concat_str([pl.lit("0"), pl.col("phone_e164").str.slice(3)]))
            .otherwise(pl.col("phone_e164"))
            .alias("phone_wms"),
            pl.concat_str(
                [
                    pl.when(pl.col("country_code").is_in(list(POSTCODE_PATTERNS)))
                    .then(pl.col("country_code"))
                    .otherwise(pl.lit("ANY")),
                    pl.col("postcode_norm"),
                ],
                separator=" ",
            ).alias("postcode_key"),
        )
        .join(svc, on=["source_system", "shipping_method"], how="left")
        .join(loc, left_on=["source_system", "fulfilment_location"], right_on=["source_system", "_loc"], how="left")
        .with_columns(
            pl.col("fulfilment_location").fill_null("(none assigned yet)").alias("location_shown"),
            # A storefront's unpaid order has no location read yet (its fulfilment orders are read once paid):
            # the location rule waits for payment rather than calling it unmapped.
            pl.when(pl.col("fulfilment_location").is_null() & pl.col("paid").not_().fill_null(False))
            .then(pl.lit("(awaiting payment)"))
            .otherwise(pl.col("target_location"))
            .alias("location_checked"),
        )
    )
    ln = ensure_columns(lines, {"source_variant_id": pl.String}).with_columns(
        _clean("sku").alias("sku"), pl.col("source_variant_id").cast(pl.String)
    )
    # (Lines of orders not in `orders` fall away in the final join.)
    storefront = o.filter(pl.col("source_system").is_in(STOREFRONTS)).select("order_key", "source_system")
    if storefront.is_empty():
        ln = ln.with_columns(pl.col("sku").alias("sku_mapped"))
    else:  # storefront lines carry a variant id: variant_skus.csv maps it to the SKU, else the line's own SKU
        vmap = (
            variant_map
            if variant_map is not None
            else pl.DataFrame(schema={"system": pl.String, "variant_id": pl.String, "sku": pl.String})
        ).select(
            pl.col("system").alias("source_system"),
            pl.col("variant_id").alias("source_variant_id"),
            pl.col("sku").alias("_mapped"),
        )
        ln = (
            ln.join(storefront, on="order_key", how="left")
            .join(vmap, on=["source_system", "source_variant_id"], how="left")
            .with_columns(
                pl.when(pl.col("source_system").is_not_null())
                .then(pl.coalesce("_mapped", "sku"))
                .otherwise(pl.col("sku"))
                .alias("sku_mapped")
            )
            .drop("_mapped", "source_system")
        )
    ln = ln.with_columns(pl.col("sku_mapped").alias("wms_sku"), pl.col("line_no").cast(pl.Int32).alias("wms_line_no"))
    if bundles is not None and bundles.height:
        # Only orders holding a bundle change shape: expand those and renumber their lines for the WMS.
        parts = bundles.select(
            pl.col("bundle_sku").alias("sku_mapped"), pl.col("component_sku"), pl.col("quantity").alias("_per")
        )
        has_bundle = ln.filter(pl.col("sku_mapped").is_in(parts["sku_mapped"].implode())).select("order_key").unique()
        plain = ln.join(has_bundle, on="order_key", how="anti")
        expanded = (
            ln.join(has_bundle, on="order_key", how="semi")
            .join(parts, on="sku_mapped", how="left")
            .with_columns(
                pl.coalesce("component_sku", "sku_mapped").alias("wms_sku"),
                (pl.col("quantity") * pl.col("_per").fill_null(1)).alias("quantity"),
            )
            .drop("component_sku", "_per")
            .sort("order_key", "line_no", "wms_sku", nulls_last=True)
            .with_columns(pl.int_range(1, pl.len() + 1).over("order_key").cast(pl.Int32).alias("wms_line_no"))
        )
        ln = pl.concat([plain, expanded.select(plain.columns)])
    frame = o.join(ln, on="order_key", how="left")  # an order with no lines keeps one row of nulls: held
    return frame.with_row_index("row_id")


def suite_rules(suite: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """The rules of a suite that can run with these parameters, in suite order."""
    return list(
        dict.fromkeys(e["meta"]["rule"] for e in suite["expectations"] if failure_expr(e, parameters) is not None)
    )


def order_verdicts(frame: pl.DataFrame, failures: pl.DataFrame, rules: list[str]) -> pl.DataFrame:
    """One row per order and rule from `row_failures`: an order fails a rule when any of its lines does."""
    per_order = (
        failures.join(frame.select("row_id", "order_key"), on="row_id")
        .sort("row_id", "expectation")
        .group_by("order_key", "rule", maintain_order=True)
        .agg(pl.col("reason_code").first(), pl.col("detail").unique(maintain_order=True).str.join("; "))
    )
    keys = frame.select("order_key").unique()
    parts = [
        keys.join(per_order.filter(pl.col("rule") == rule).drop("rule"), on="order_key", how="left").with_columns(
            pl.lit(rule).alias("rule")
        )
        for rule in rules
    ]
    if not parts:
        return pl.DataFrame(schema=VERDICT_SCHEMA)
    out = pl.concat(parts).with_columns(
        pl.col("reason_code").is_null().alias("passed"),
        pl.col("reason_code").replace_strict(OWNERS, default=None, return_dtype=pl.String).alias("owner"),
    )
    return out.select(list(VERDICT_SCHEMA)).cast(VERDICT_SCHEMA)  # type: ignore[arg-type]


def check_orders(
    frame: pl.DataFrame, suite: dict[str, Any], parameters: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Row failures and per-order verdicts for a prepared frame."""
    failures = row_failures(frame, suite, parameters)
    return failures, order_verdicts(frame, failures, suite_rules(suite, parameters))


def wms_ready_orders(orders: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """Orders that may go to the WMS: paid, open and passing every rule."""
    failing = verdicts.filter(~pl.col("passed")).select("order_key").unique()
    return orders.filter(pl.col("paid") & (pl.col("status") == "open")).join(failing, on="order_key", how="anti")


def merge_exceptions(existing: pl.DataFrame, verdicts: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The exceptions table after a run: failures open (first_seen kept), passes resolve open ones."""
    cols = {
        "order_key": pl.String,
        "rule": pl.String,
        "reason_code": pl.String,
        "detail": pl.String,
        "owner": pl.String,
        "first_seen": pl.Datetime("us", "UTC"),
        "last_seen": pl.Datetime("us", "UTC"),
        "resolved_at": pl.Datetime("us", "UTC"),
    }
    existing = (
        existing.select([pl.col(c).cast(t) for c, t in cols.items()]) if existing.height else pl.DataFrame(schema=cols)
    )
    ts = pl.lit(now, dtype=pl.Datetime("us", "UTC"))
    failed = verdicts.filter(~pl.col("passed")).select("order_key", "rule", "reason_code", "detail", "owner")
    passed = verdicts.filter(pl.col("passed")).select("order_key", "rule")
    still_open = existing.filter(pl.col("resolved_at").is_null())
    opened = failed.join(
        still_open.select("order_key", "rule", "first_seen"), on=["order_key", "rule"], how="left"
    ).with_columns(
        pl.col("first_seen").fill_null(ts),
        ts.alias("last_seen"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("resolved_at"),
    )
    resolved = still_open.join(passed, on=["order_key", "rule"], how="semi").with_columns(ts.alias("resolved_at"))
    return pl.concat([opened.select(list(cols)), resolved.select(list(cols))])
