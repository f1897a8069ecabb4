"""The rules as Great Expectations suites (`expectations/<wms>.json`), executed two ways on the same frame:
by polars at dataframe speed (the verdicts that route orders) and by GX itself (recorded, and must agree).

A suite holds only column expectations polars can execute exactly: `not_be_null`, `match_regex`, `be_in_set`
(value sets may be `{"$PARAMETER": name}`, e.g. the WMS catalogue) and `be_between`. Each expectation's meta
names its `rule`, `reason_code` and a `detail` template over the frame's columns.

    python -m fulfil_assets.validate.suites   # regenerate expectations/<wms>.json (phone patterns from phonenumbers)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
from phonenumbers import PhoneMetadata

# The suites and mapping tables that ship with fulfil (found from any working folder).
EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
PHONE_REGIONS = (
    "GB",
    "JE",
    "GG",
    "IM",
    "IE",
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "BE",
    "PT",
    "AT",
    "CH",
    "DK",
    "SE",
    "NO",
    "PL",
    "US",
    "CA",
    "AU",
)
PHONE_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
UK_POSTCODE = (
    r"(?:GIR 0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r" [0-9][ABD-HJLNP-UW-Z]{2})"
)
POSTCODE_PATTERNS = {
    "GB": UK_POSTCODE,
    "JE": UK_POSTCODE,
    "GG": UK_POSTCODE,
    "IM": UK_POSTCODE,
    "IE": r"[AC-FHKNPRTV-Y][0-9]{2}W? [0-9AC-FHKNPRTV-Y]{4}",
    "FR": r"[0-9]{5}",
    "DE": r"[0-9]{5}",
    "ES": r"[0-9]{5}",
    "IT": r"[0-9]{5}",
    "NL": r"[0-9]{4} [A-Z]{2}",
    "BE": r"[0-9]{4}",
    "PT": r"[0-9]{4}-[0-9]{3}",
    "AT": r"[0-9]{4}",
    "CH": r"[0-9]{4}",
    "DK": r"[0-9]{4}",
    "SE": r"[0-9]{3} [0-9]{2}",
    "NO": r"[0-9]{4}",
    "PL": r"[0-9]{2}-[0-9]{3}",
    "US": r"[0-9]{5}(?:-[0-9]{4})?",
    "CA": r"[A-Z][0-9][A-Z] [0-9][A-Z][0-9]",
    "AU": r"[0-9]{4}",
}
# The SKUs each target takes: Whistl letters and digits only, at most 30 (what its WMS refuses otherwise; the
# emulator holds the same rule, and tests/test_rules_and_files.py checks the two agree); Peoplevox printable
# ASCII, at most 30; Linnworks (Shopify orders sent there) printable, no leading or trailing space, at most 100.
SKU_PATTERNS = {
    "whistl": r"^[A-Za-z0-9]{1,30}$",
    "peoplevox": r"^[\x21-\x7E]{1,30}$",
    "linnworks": r"^[\x21-\x7E](?:[\x20-\x7E]{0,98}[\x21-\x7E])?$",
}
SUPPORTED = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_between",
)


class SuiteError(ValueError):
    """A suite file uses something fulfil cannot execute exactly."""


def phone_regex() -> str:
    """E.164 numbers valid for any supported region, built from phonenumbers' own metadata."""
    by_code: dict[int, list[str]] = {}
    for region in PHONE_REGIONS:
        meta = PhoneMetadata.metadata_for_region(region)
        for kind in PHONE_TYPES:
            desc = getattr(meta, kind)
            if desc is not None and desc.national_number_pattern:
                by_code.setdefault(meta.country_code, []).append(f"(?:{desc.national_number_pattern})")
    parts = [f"{code}(?:{'|'.join(dict.fromkeys(pats))})" for code, pats in sorted(by_code.items())]
    return rf"^\+(?:{'|'.join(parts)})$"


def postcode_regex() -> str:
    """`<country> <postcode>` for countries with a known format; `ANY <postcode>` passes for the rest."""
    parts = [f"{cc} {pat}" for cc, pat in POSTCODE_PATTERNS.items()]
    return rf"^(?:{'|'.join(parts)}|ANY .*)$"


def _expectation(kind: str, column: str, rule: str, reason: str, detail: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "kwargs": {"column": column, **kwargs},
        "meta": {"rule": rule, "reason_code": reason, "detail": detail},
    }


def build_suite(wms: str) -> dict[str, Any]:
    """The suite for `wms`, over the frame `prepare_lines` makes (one row per WMS order line)."""
    expectations = [
        _expectation(
            "expect_column_values_to_not_be_null",
            "sku_mapped",
            "sku_mapping",
            "SKU_UNMAPPED_VARIANT",
            "variant {source_variant_id} has no SKU (none on the line, none in variant_skus.csv)",
        ),
        _expectation(
            "expect_column_values_to_not_be_null",
            "wms_sku",
            "sku_format",
            "SKU_INVALID_CHARS",
            "line {line_no}: no SKU",
        ),
        _expectation(
            "expect_column_values_to_match_regex",
            "wms_sku",
            "sku_format",
            "SKU_INVALID_CHARS",
            f"line {{line_no}}: SKU '{{wms_sku}}' has characters {wms.title()} refuses",
            regex=SKU_PATTERNS[wms],
        ),
        _expectation(
            "expect_column_values_to_be_in_set",
            "wms_sku",
            "sku_known",
            "SKU_UNKNOWN_AT_WMS",
            f"line {{line_no}}: SKU '{{wms_sku}}' is not set up at {wms.title()}",
            value_set={"$PARAMETER": "wms_catalogue"},
        ),
        _expectation(
            "expect_column_values_to_not_be_null",
            "quantity",
            "quantity",
            "QUANTITY_INVALID",
            "line {line_no}: quantity is missing or not a whole number",
        ),
        _expectation(
            "expect_column_values_to_be_between",
            "quantity",
            "quantity",
            "QUANTITY_INVALID",
            "line {line_no}: quantity {quantity} must be at least 1",
            min_value=1,
        ),
        _expectation(
            "expect_column_values_to_not_be_null",
            "phone_e164",
            "phone",
            "PHONE_MISSING",
            "no phone number; the carrier needs one",
        ),
        _expectation(
            "expect_column_values_to_match_regex",
            "phone_e164",
            "phone",
            "PHONE_INVALID",
            "phone '{phone}' is not a valid number for {country_code}",
            regex=phone_regex(),
        ),
        _expectation(
            "expect_column_values_to_match_regex",
            "postcode_key",
            "postcode",
            "POSTCODE_INVALID",
            "postcode '{postcode}' is not a valid {country_code} postcode",
            regex=postcode_regex(),
        ),
    ]
    for column, label in (
        ("ship_name", "name"),
        ("address1", "address line 1"),
        ("city", "town"),
        ("country_code", "country"),
    ):
        expectations.append(
            _expectation(
                "expect_column_values_to_not_be_null", column, "address", "ADDRESS_INCOMPLETE", f"missing {label}"
            )
        )
    expectations.append(
        _expectation(
            "expect_column_values_to_not_be_null",
            "service_code",
            "service",
            "SERVICE_UNMAPPED",
            f"shipping method '{{shipping_method}}' from {{source_system}} has no {wms} service code in "
            "service_codes.csv",
        )
    )
    if wms == "linnworks":  # orders created in Linnworks need the location they are fulfilled from
        expectations.append(
            _expectation(
                "expect_column_values_to_not_be_null",
                "location_checked",
                "location",
                "LOCATION_UNMAPPED",
                "{source_system} location {location_shown} has no Linnworks location in locations.csv",
            )
        )
    return {
        "name": f"{wms}_orders",
        "expectations": expectations,
        "meta": {"wms": wms, "grain": "one row per order line as the WMS receives it (bundles expanded)"},
    }


def load_suite(wms: str, directory: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    """Read `expectations/<wms>.json`; refuse expectation types or kwargs polars cannot execute exactly."""
    path = directory / f"{wms}.json"
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    for i, exp in enumerate(suite.get("expectations", [])):
        where = f"{path}: expectation {i} ({exp.get('type')})"
        if exp.get("type") not in SUPPORTED:
            raise SuiteError(f"{where}: type not supported (one of {', '.join(SUPPORTED)})")
        extra = set(exp.get("kwargs", {})) - {"column", "regex", "value_set", "min_value", "max_value"}
        if extra:
            raise SuiteError(f"{where}: unsupported kwargs {sorted(extra)}")
        if not {"rule", "reason_code", "detail"} <= set(exp.get("meta", {})):
            raise SuiteError(f"{where}: meta needs rule, reason_code and detail")
        if "regex" in exp["kwargs"]:
            re.compile(exp["kwargs"]["regex"])
    return suite


def _value_set(kwargs: dict[str, Any], parameters: dict[str, Any]) -> list[Any] | None:
    value = kwargs.get("value_set")
    if isinstance(value, dict) and "$PARAMETER" in value:
        return parameters.get(value["$PARAMETER"])
    return value


def failure_expr(exp: dict[str, Any], parameters: dict[str, Any]) -> pl.Expr | None:
    """A polars expression, True where the row fails `exp` exactly as GX counts it (GX skips nulls for every
    type but not_be_null). None when a parameter is absent (that expectation is skipped)."""
    kw = exp["kwargs"]
    col = pl.col(kw["column"])
    kind = exp["type"]
    if kind == "expect_column_values_to_not_be_null":
        return col.is_null()
    if kind == "expect_column_values_to_match_regex":
        return col.is_not_null() & ~col.cast(pl.String).str.contains(kw["regex"])
    if kind == "expect_column_values_to_be_in_set":
        values = _value_set(kw, parameters)
        return None if values is None else col.is_not_null() & ~col.is_in(pl.Series(values).implode())
    lo, hi = kw.get("min_value"), kw.get("max_value")
    out = pl.lit(False)
    if lo is not None:
        out = out | (col < lo)
    if hi is not None:
        out = out | (col > hi)
    return col.is_not_null() & out


def row_failures(frame: pl.DataFrame, suite: dict[str, Any], parameters: dict[str, Any]) -> pl.DataFrame:
    """One row per (frame row, failed expectation): `row_id, expectation, rule, reason_code, detail`."""
    parts = []
    for i, exp in enumerate(suite["expectations"]):
        failed = failure_expr(exp, parameters)
        if failed is None:
            continue
        if exp["type"] == "expect_column_values_to_match_regex":
            # Order fields repeat on every line: match each distinct value once (same verdicts, less work).
            column = exp["kwargs"]["column"]
            distinct = frame.select(pl.col(column).unique()).filter(failure_expr(exp, parameters).fill_null(False))
            failed = pl.col(column).is_in(distinct[column].implode())
        meta = exp["meta"]
        fields = re.findall(r"{(\w+)}", meta["detail"])
        template = re.sub(r"{\w+}", "{}", meta["detail"])
        detail = (
            pl.format(template, *[pl.col(f).cast(pl.String).fill_null("") for f in fields])
            if fields
            else pl.lit(meta["detail"])
        )
        parts.append(
            frame.lazy()
            .filter(failed.fill_null(False))
            .select(
                "row_id",
                pl.lit(i).alias("expectation"),
                pl.lit(meta["rule"]).alias("rule"),
                pl.lit(meta["reason_code"]).alias("reason_code"),
                detail.alias("detail"),
            )
        )
    schema = {
        "row_id": pl.UInt32,
        "expectation": pl.Int32,
        "rule": pl.String,
        "reason_code": pl.String,
        "detail": pl.String,
    }
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(pl.collect_all(parts)).cast(schema)  # type: ignore[arg-type]


def write_suites(directory: Path = EXPECTATIONS_DIR) -> list[Path]:
    """Regenerate the suite files."""
    paths = []
    for wms in SKU_PATTERNS:
        path = directory / f"{wms}.json"
        path.write_text(json.dumps(build_suite(wms), indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_suites():
        print(f"wrote {written}")
