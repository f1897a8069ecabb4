"""Mapping tables ops edit (CSV in `expectations/`), loaded with checks that name the file, line and problem."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

WMS_SERVICE_CODES = {
    "whistl": {"WHISTL-T24", "WHISTL-T48", "WHISTL-INTL", "WHISTL-RM48"},
    "peoplevox": {"Royal Mail Tracked 24", "Royal Mail Tracked 48", "DPD Next Day", "DPD Classic International"},
}
SYSTEMS = {"linnworks", "cin7", "shopify", "bigcommerce"}


class MappingError(ValueError):
    """A mapping table has a problem a person must fix."""


def load_service_codes(path: Path) -> pl.DataFrame:
    """`system, shipping_method, wms, service_code`; rejects blanks, unknown systems/WMSs/codes and duplicates."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MappingError(f"{path}: not found") from None
    reader = csv.DictReader(text.splitlines())
    expected = ["system", "shipping_method", "wms", "service_code"]
    if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != expected:
        raise MappingError(f"{path}, line 1: header must be {','.join(expected)}, found {reader.fieldnames}")
    rows, seen = [], {}
    for line, row in enumerate(reader, start=2):
        values = {k.strip(): (v or "") for k, v in row.items() if k is not None}
        if None in row:
            raise MappingError(f"{path}, line {line}: too many columns")
        blank = [k for k in expected if not values.get(k, "").strip()]
        if blank:
            raise MappingError(f"{path}, line {line}: blank {', '.join(blank)}")
        system, method, wms, code = (values[k] for k in expected)
        if system not in SYSTEMS:
            raise MappingError(f"{path}, line {line}: unknown system {system!r} (one of {sorted(SYSTEMS)})")
        if wms not in WMS_SERVICE_CODES:
            raise MappingError(f"{path}, line {line}: unknown wms {wms!r} (one of {sorted(WMS_SERVICE_CODES)})")
        if code not in WMS_SERVICE_CODES[wms]:
            raise MappingError(
                f"{path}, line {line}: {code!r} is not a {wms} service code (one of {sorted(WMS_SERVICE_CODES[wms])})"
            )
        key = (system, method, wms)
        if key in seen:
            raise MappingError(f"{path}, line {line}: duplicate of line {seen[key]} for {system}/{method!r}/{wms}")
        seen[key] = line
        rows.append({"system": system, "shipping_method": method, "wms": wms, "service_code": code})
    return pl.DataFrame(rows, schema={c: pl.String for c in expected})
