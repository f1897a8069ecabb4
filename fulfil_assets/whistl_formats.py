"""Whistl's CSV files both ways (pure): our order file's columns, and Whistl's answers parsed (acknowledgements,
despatch confirmations, rejections), each row judged on its own. Below the push and despatch stages, which both
read them."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import polars as pl

from fulfil_assets.csv_text import CsvError, CsvRow, read_csv

# Our order file (`in/ord_*.csv`), one row per order line: written by the push stage, read back by the ledger.
ORDER_FILE_COLUMNS = (
    "order_reference",
    "order_date",
    "service_code",
    "ship_name",
    "ship_address1",
    "ship_address2",
    "ship_address3",
    "ship_city",
    "ship_postcode",
    "ship_country",
    "ship_phone",
    "ship_email",
    "line_number",
    "sku",
    "quantity",
)

DESPATCH_FILE_COLUMNS = (
    "order_reference",
    "despatch_reference",
    "line_number",
    "sku",
    "quantity_ordered",
    "quantity_despatched",
    "carrier",
    "service_code",
    "tracking_number",
    "tracking_url",
    "parcel_number",
    "despatched_at",
    "partial_flag",
)
REJECTION_FILE_COLUMNS = ("order_reference", "reason_code", "detail")
ACK_FILE_COLUMNS = ("file_name", "order_reference", "status", "reason_code", "received_at")
DESPATCH_SCHEMA = {
    "wms": pl.String,
    "order_ref": pl.String,
    "despatch_ref": pl.String,
    "line_no": pl.Int32,
    "parcel_no": pl.Int32,
    "sku": pl.String,
    "quantity": pl.Int64,
    "carrier": pl.String,
    "service_code": pl.String,
    "tracking_number": pl.String,
    "tracking_url": pl.String,
    "despatched_at": pl.Datetime("us", "UTC"),
    "partial": pl.Boolean,
    "source_file": pl.String,
    "reason": pl.String,  # why a line shipped short (quantity 0), in the warehouse's words
}
QUARANTINE_SCHEMA = {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String}
# Whistl's rejection codes -> our reason codes (owner comes from the rules table).
WHISTL_REJECTIONS = {
    "SKU_UNKNOWN": "SKU_UNKNOWN_AT_WMS",
    "SKU_INVALID": "SKU_INVALID_CHARS",
    "PHONE_REQUIRED": "PHONE_MISSING",
    "SERVICE_CODE_INVALID": "SERVICE_UNMAPPED",
    "POSTCODE_REQUIRED": "POSTCODE_INVALID",
    "QUANTITY_INVALID": "QUANTITY_INVALID",
    "CANCEL_TOO_LATE": "CANCEL_TOO_LATE",
}


class FileFormatError(ValueError):
    """The whole file cannot be read (not CSV, wrong header, not UTF-8)."""


def _read_csv(data: bytes, required: tuple[str, ...]) -> list[CsvRow]:
    """The rows of a Whistl file; FileFormatError when the file as a whole cannot be trusted: not UTF-8, empty,
    columns missing, no rows, or no line break at the end (still being written, or cut short)."""
    try:
        return read_csv(data, required, complete=True, rows_required=True)[1]
    except CsvError as exc:
        raise FileFormatError(str(exc)) from None


WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII digits: int() would also take '٣', str.isdigit() also '²'
TRACKING = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{2,48}[A-Za-z0-9]")  # what carriers print on a label
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")


def _iso_time(value: str) -> datetime | None:
    """An ISO 8601 time as UTC (no zone means UTC), or None: each row on its own, never guessed from another."""
    if not ISO_TIME.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _printable(text: str) -> str:
    """The text with control characters written out (`\\x00`): kept for a person, storable in any database."""
    return "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _despatch_row_problems(row: CsvRow) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with one despatch row, and its parsed values."""
    problems: list[str] = []
    if row.extra:
        problems.append("more cells than the header")
    cells = row.cells
    odd = sorted({c for c, v in cells.items() if any(unicodedata.category(ch) == "Cc" for ch in v or "")})
    if odd:
        problems.append(f"control characters in {', '.join(odd)}")
    value = {k: (v or "").strip() for k, v in cells.items()}
    for name in ("order_reference", "despatch_reference"):
        if not value.get(name):
            problems.append(f"no {name}")
    ints: dict[str, int] = {}
    for name in ("line_number", "quantity_despatched", "parcel_number"):
        if WHOLE.fullmatch(value.get(name, "")):
            ints[name] = int(value[name])
        else:
            problems.append(f"{name} {value.get(name, '')!r} is not a whole number")
    tracking = value.get("tracking_number", "")
    if ints.get("quantity_despatched", 0) > 0 and not tracking:
        problems.append("despatched quantity without a tracking number")
    elif tracking and not TRACKING.fullmatch(tracking):
        problems.append(f"tracking number {tracking[:40]!r} is not one a carrier prints (letters, digits, - only)")
    url = value.get("tracking_url", "")
    if url and not url.lower().startswith(("https://", "http://")):
        problems.append(f"tracking_url {url[:40]!r} is not a web address")
    when = _iso_time(value.get("despatched_at", ""))
    if when is None:
        problems.append(f"despatched_at {value.get('despatched_at', '')!r} is not an ISO 8601 time")
    parsed = {**value, **ints, "despatched_at": when}
    return problems, parsed


def parse_despatch_file(data: bytes, source_file: str, wms: str = "whistl") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good despatch rows, and quarantined rows (file line, reason, raw text): each row judged on its own, a row
    repeating an earlier one's line and parcel quarantined as a duplicate. Raises FileFormatError when the file
    as a whole cannot be trusted."""
    good, bad = [], []
    seen: dict[tuple[str, int, int], int] = {}
    for row in _read_csv(data, DESPATCH_FILE_COLUMNS):
        line = row.line
        problems, v = _despatch_row_problems(row)
        key = (v.get("despatch_reference", ""), v.get("line_number", -1), v.get("parcel_number", -1))
        if not problems and key in seen:
            problems.append(f"repeats line {seen[key]} (same despatch, line and parcel)")
        if problems:
            raw = _printable(",".join([*list(row.cells.values())[: row.width], *row.extra]))  # as written
            bad.append({"source_file": source_file, "line": line, "reason": "; ".join(problems), "raw": raw[:500]})
            continue
        seen[key] = line
        good.append(
            {
                "wms": wms,
                "order_ref": v["order_reference"],
                "despatch_ref": v["despatch_reference"],
                "line_no": v["line_number"],
                "parcel_no": v["parcel_number"],
                "sku": v.get("sku", ""),
                "quantity": v["quantity_despatched"],
                "carrier": v.get("carrier", ""),
                "service_code": v.get("service_code", ""),
                "tracking_number": v.get("tracking_number", ""),
                "tracking_url": v.get("tracking_url", ""),
                "despatched_at": v["despatched_at"],
                "partial": v.get("partial_flag", "").upper() == "Y",
                "source_file": source_file,
                "reason": v.get("reason") or None,
            }
        )
    return pl.DataFrame(good, schema=DESPATCH_SCHEMA), pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)


def parse_rejection_file(data: bytes) -> pl.DataFrame:
    """`order_ref, wms_code, reason_code, detail` for each rejected order."""
    rows = [r.cells for r in _read_csv(data, REJECTION_FILE_COLUMNS)]
    frame = pl.DataFrame(
        [{"order_ref": r["order_reference"], "wms_code": r["reason_code"], "detail": r["detail"]} for r in rows],
        schema={"order_ref": pl.String, "wms_code": pl.String, "detail": pl.String},
    )
    return frame.with_columns(
        pl.col("wms_code").replace_strict(WHISTL_REJECTIONS, default="WMS_REJECTED").alias("reason_code")
    )


def parse_ack_file(data: bytes, ack_file: str) -> pl.DataFrame:
    """What Whistl acknowledged receiving: `file_name, order_ref, status (ACCEPTED|REJECTED), detail, ack_file,
    received_at` per order of one of our order files."""
    rows = [r.cells for r in _read_csv(data, ACK_FILE_COLUMNS)]
    frame = pl.DataFrame(
        [
            {
                "wms": "whistl",
                "file_name": r["file_name"].strip(),
                "order_ref": r["order_reference"].strip(),
                "status": r["status"].strip().upper(),
                "detail": r["reason_code"].strip() or None,
                "ack_file": ack_file,
                "received_at": r["received_at"].strip(),
            }
            for r in rows
        ],
        schema={c: pl.String for c in ("wms", "file_name", "order_ref", "status", "detail", "ack_file", "received_at")},
    )
    return frame.with_columns(pl.col("received_at").str.to_datetime(time_zone="UTC", strict=False))
