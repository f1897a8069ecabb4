"""The order rules as pure polars: one verdict per order and rule, with a reason code, detail and owner."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
import polars as pl

OWNERS = {
    "SKU_INVALID_CHARS": "office",
    "SKU_UNKNOWN_AT_WMS": "office",
    "SKU_UNMAPPED_VARIANT": "office",
    "PHONE_MISSING": "cx",
    "PHONE_INVALID": "cx",
    "POSTCODE_INVALID": "cx",
    "ADDRESS_INCOMPLETE": "cx",
    "SERVICE_UNMAPPED": "office",
    "QUANTITY_INVALID": "office",
    "CANCEL_TOO_LATE": "warehouse",
    "AMEND_TOO_LATE": "warehouse",
    "DESPATCH_UNKNOWN_ORDER": "warehouse",
    "DESPATCH_OVER_QUANTITY": "warehouse",
    "WMS_REJECTED": "office",
}
SKU_PATTERNS = {"whistl": r"^[A-Za-z0-9]+$", "peoplevox": r"^[\x21-\x7E]{1,30}$"}
GB_POSTCODE = (
    r"^(GIR 0AA|[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r" [0-9][ABD-HJLNP-UW-Z]{2})$"
)
POSTCODE_PATTERNS = {
    "GB": GB_POSTCODE,
    "JE": GB_POSTCODE,
    "GG": GB_POSTCODE,
    "IM": GB_POSTCODE,
    "IE": r"^[AC-FHKNPRTV-Y][0-9]{2}W? [0-9AC-FHKNPRTV-Y]{4}$",
    "FR": r"^[0-9]{5}$",
    "DE": r"^[0-9]{5}$",
    "ES": r"^[0-9]{5}$",
    "IT": r"^[0-9]{5}$",
    "US": r"^[0-9]{5}(-[0-9]{4})?$",
    "NL": r"^[0-9]{4} ?[A-Z]{2}$",
}
VERDICT_SCHEMA = {
    "order_key": pl.String,
    "rule": pl.String,
    "passed": pl.Boolean,
    "reason_code": pl.String,
    "detail": pl.String,
    "owner": pl.String,
}


def normalise_postcode(postcode: pl.Expr, country: pl.Expr) -> pl.Expr:
    """Upper case, trimmed; for UK-format countries one space before the inward code."""
    compact = postcode.str.to_uppercase().str.replace_all(r"\s+", "")
    uk = country.is_in(["GB", "JE", "GG", "IM"])
    spaced = pl.concat_str([compact.str.slice(0, compact.str.len_chars() - 3), pl.lit(" "), compact.str.slice(-3)])
    ie = country == "IE"
    return (
        pl.when(uk & (compact.str.len_chars() >= 5))
        .then(spaced)
        .when(ie & (compact.str.len_chars() == 7))
        .then(spaced.str.slice(0, 3) + " " + compact.str.slice(3))
        .otherwise(postcode.str.strip_chars().str.to_uppercase())
    )


def _phone_check(pair: dict[str, str | None]) -> dict[str, str | None]:
    raw, country = pair["phone"], pair["country_code"]
    try:
        number = phonenumbers.parse(raw or "", country or "GB")
    except phonenumbers.NumberParseException as exc:
        return {"phone_normalised": None, "phone_problem": str(exc).split("(", 1)[-1].rstrip(")") or "unparseable"}
    if not phonenumbers.is_valid_number(number):
        return {"phone_normalised": None, "phone_problem": "not a valid number for " + (country or "GB")}
    if phonenumbers.region_code_for_number(number) == "GB":
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        return {"phone_normalised": national.replace(" ", ""), "phone_problem": None}
    return {
        "phone_normalised": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        "phone_problem": None,
    }


def check_phones(orders: pl.DataFrame) -> pl.DataFrame:
    """`order_key, phone_normalised, phone_problem`, parsing each distinct (phone, country) once."""
    pairs = (
        orders.select("phone", "country_code").unique().filter(pl.col("phone").str.strip_chars().fill_null("") != "")
    )
    checked = pairs.with_columns(
        pl.struct("phone", "country_code")
        .map_elements(_phone_check, return_dtype=pl.Struct({"phone_normalised": pl.String, "phone_problem": pl.String}))
        .alias("r")
    ).unnest("r")
    return (
        orders.select("order_key", "phone", "country_code")
        .join(checked, on=["phone", "country_code"], how="left", nulls_equal=True)
        .select("order_key", "phone_normalised", "phone_problem")
    )


def _verdict(frame: pl.DataFrame, rule: str, failed: pl.Expr, reason: pl.Expr | str, detail: pl.Expr) -> pl.DataFrame:
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return frame.select(
        pl.col("order_key"),
        pl.lit(rule).alias("rule"),
        (~failed.fill_null(True)).alias("passed"),
        pl.when(failed.fill_null(True)).then(reason_expr).alias("reason_code"),
        pl.when(failed.fill_null(True)).then(detail).alias("detail"),
    ).with_columns(pl.col("reason_code").replace_strict(OWNERS, default=None, return_dtype=pl.String).alias("owner"))


def _blank(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.strip_chars().fill_null("") == ""


def prepare_orders(orders: pl.DataFrame, wms: str, service_map: pl.DataFrame) -> pl.DataFrame:
    """Orders plus what the rules and the WMS file need: parsed phone, normalised postcode, service code."""
    svc = service_map.filter(pl.col("wms") == wms).select(
        pl.col("system").alias("source_system"), "shipping_method", "service_code"
    )
    return (
        orders.join(check_phones(orders), on="order_key", how="left")
        .with_columns(
            normalise_postcode(pl.col("postcode").fill_null(""), pl.col("country_code")).alias("postcode_norm")
        )
        .join(svc, on=["source_system", "shipping_method"], how="left")
    )


def order_verdicts(
    prepared: pl.DataFrame, lines: pl.DataFrame, wms: str, catalogue: pl.DataFrame | None
) -> pl.DataFrame:
    """One row per order and rule over `prepare_orders` output. `catalogue` (a `sku` column) is the WMS's item
    list; None skips the SKU_UNKNOWN_AT_WMS rule."""
    o = prepared
    pattern = POSTCODE_PATTERNS
    postcode_ok = pl.coalesce(
        [
            pl.when(pl.col("country_code") == cc).then(pl.col("postcode_norm").str.contains(rx))
            for cc, rx in pattern.items()
        ]
        + [~_blank("postcode_norm") | ~pl.col("country_code").is_in(["GB", "IE", "US"])]
    )
    missing = pl.concat_str(
        [
            pl.when(_blank(c)).then(pl.lit(label))
            for c, label in (
                ("ship_name", "name"),
                ("address1", "address line 1"),
                ("city", "town"),
                ("country_code", "country"),
            )
        ],
        separator=", ",
        ignore_nulls=True,
    )
    verdicts = [
        _verdict(
            o,
            "phone",
            _blank("phone") | pl.col("phone_problem").is_not_null(),
            pl.when(_blank("phone")).then(pl.lit("PHONE_MISSING")).otherwise(pl.lit("PHONE_INVALID")),
            pl.when(_blank("phone"))
            .then(pl.lit("no phone number; the carrier needs one"))
            .otherwise(pl.format("phone '{}' rejected: {}", pl.col("phone"), pl.col("phone_problem"))),
        ),
        _verdict(
            o,
            "postcode",
            ~postcode_ok,
            "POSTCODE_INVALID",
            pl.format(
                "postcode '{}' is not a valid {} postcode",
                pl.col("postcode").fill_null(""),
                pl.col("country_code").fill_null("?"),
            ),
        ),
        _verdict(o, "address", missing != "", "ADDRESS_INCOMPLETE", pl.format("missing: {}", missing)),
        _verdict(
            o,
            "service",
            pl.col("service_code").is_null(),
            "SERVICE_UNMAPPED",
            pl.format(
                "shipping method '{}' from {} has no {} service code in service_codes.csv",
                pl.col("shipping_method").fill_null(""),
                pl.col("source_system"),
                pl.lit(wms),
            ),
        ),
    ]
    # Line rules, rolled up to the order: one bad line holds the whole order.
    lw = lines.with_columns(
        (~pl.col("sku").fill_null("").str.contains(SKU_PATTERNS[wms])).alias("bad_chars"),
        (pl.col("quantity").is_null() | (pl.col("quantity") < 1)).alias("bad_qty"),
    )
    if catalogue is not None:
        lw = lw.with_columns((~pl.col("sku").is_in(catalogue["sku"].implode())).alias("unknown"))
    else:
        lw = lw.with_columns(pl.lit(False).alias("unknown"))
    rolled = lw.group_by("order_key").agg(
        pl.col("bad_chars").any(),
        pl.col("bad_qty").any(),
        pl.col("unknown").any(),
        pl.format("line {}: '{}'", "line_no", "sku").filter("bad_chars").str.join("; ").alias("chars_detail"),
        pl.format("line {}: quantity {}", "line_no", "quantity").filter("bad_qty").str.join("; ").alias("qty_detail"),
        pl.format("line {}: '{}'", "line_no", "sku").filter("unknown").str.join("; ").alias("unknown_detail"),
    )
    per_order = (
        o.select("order_key")
        .join(rolled, on="order_key", how="left")
        .with_columns(pl.col("bad_chars", "bad_qty", "unknown").fill_null(False))
    )
    no_lines = per_order["order_key"].is_in(lines["order_key"].implode()).not_()
    per_order = per_order.with_columns(no_lines.alias("no_lines"))
    verdicts += [
        _verdict(
            per_order,
            "sku_format",
            pl.col("bad_chars"),
            "SKU_INVALID_CHARS",
            pl.format("{} SKU must be letters and digits only: {}", pl.lit(wms.title()), pl.col("chars_detail")),
        ),
        _verdict(
            per_order,
            "quantity",
            pl.col("bad_qty") | pl.col("no_lines"),
            "QUANTITY_INVALID",
            pl.when(pl.col("no_lines"))
            .then(pl.lit("order has no lines"))
            .otherwise(pl.format("quantity must be a positive whole number: {}", pl.col("qty_detail"))),
        ),
    ]
    if catalogue is not None:
        verdicts.append(
            _verdict(
                per_order,
                "sku_known",
                pl.col("unknown"),
                "SKU_UNKNOWN_AT_WMS",
                pl.format("not set up at {}: {}", pl.lit(wms.title()), pl.col("unknown_detail")),
            )
        )
    return pl.concat(verdicts).cast(VERDICT_SCHEMA)  # type: ignore[arg-type]


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
