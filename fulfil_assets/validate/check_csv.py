"""`fulfil check-orders`: the same suites on a CSV of order lines, for teams still on CSV uploads."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fulfil_assets.csv_text import CsvError, read_csv
from fulfil_assets.stage.common import ORDER_COLUMNS, conform
from fulfil_assets.validate.mappings import MappingError, load_bundles, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, prepare_lines
from fulfil_assets.validate.suites import EXPECTATIONS_DIR, SuiteError, load_suite

CSV_COLUMNS = (
    "order_ref",
    "ship_name",
    "address1",
    "address2",
    "city",
    "postcode",
    "country_code",
    "phone",
    "email",
    "shipping_method",
    "sku",
    "quantity",
)
FORMULA_STARTS = ("=", "+", "-", "@")


class UnreadableFile(ValueError):
    """The input cannot be read at all (exit code 2)."""


@dataclass
class CheckResult:
    """Verdicts of a CSV check: the failing rules (one row each) and totals."""

    failures: pl.DataFrame
    orders: int
    lines: int


def read_order_csv(path: Path, system: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Orders and lines from a CSV of order lines; raises UnreadableFile with the line and reason."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: not found") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        header, rows = read_csv(text, CSV_COLUMNS, strict=True)
    except CsvError as exc:
        raise UnreadableFile(f"{path}, {exc}") from None
    orders: dict[str, dict[str, object]] = {}
    lines = []
    counts: dict[str, int] = {}
    for row in rows:
        if not any(cell.strip() for cell in (*row.cells.values(), *row.extra)):
            continue
        if row.width != len(header):
            raise UnreadableFile(f"{path}, line {row.line}: {row.width} cells where the header has {len(header)}")
        rec = row.cells
        ref = rec["order_ref"].strip()
        key = f"{system}:{ref}"
        orders.setdefault(
            key,
            {
                "order_key": key,
                "source_system": system,
                "source_order_id": ref,
                "order_ref": ref,
                "paid": True,
                "status": "open",
                **{c: rec[c] for c in CSV_COLUMNS if c not in ("order_ref", "sku", "quantity")},
            },
        )
        qty = rec["quantity"].strip()
        counts[key] = counts.get(key, 0) + 1
        lines.append(
            {
                "order_key": key,
                "line_no": counts[key],
                "sku": rec["sku"],
                "quantity": int(qty) if qty.lstrip("-").isdigit() else None,
                "source_variant_id": None,
                "file_line": row.line,
            }
        )
    order_frame = conform(pl.DataFrame(list(orders.values()), infer_schema_length=None), ORDER_COLUMNS)
    line_frame = pl.DataFrame(
        lines,
        schema={
            "order_key": pl.String,
            "line_no": pl.Int32,
            "sku": pl.String,
            "quantity": pl.Int64,
            "source_variant_id": pl.String,
            "file_line": pl.Int64,
        },
    )
    return order_frame, line_frame


def check_csv(
    path: Path,
    wms: str,
    service_map: Path,
    catalogue: Path | None,
    system: str = "linnworks",
    expectations: Path = EXPECTATIONS_DIR,
) -> CheckResult:
    """Run the WMS's suite over the CSV; catalogue None skips the SKU_UNKNOWN_AT_WMS rule. The suites and
    bundle/variant tables are fulfil's own (found from any folder); messages name the service map given."""
    try:
        suite = load_suite(wms, expectations)
        services = load_service_codes(service_map, system)
        bundles = load_bundles(expectations / "bundles.csv")
        variants = load_variant_skus(expectations / "variant_skus.csv")
        params = {}
        if catalogue is not None:
            cat = read_catalogue(catalogue)
            params["wms_catalogue"] = cat
    except (MappingError, SuiteError) as exc:
        raise UnreadableFile(str(exc)) from None
    orders, lines = read_order_csv(path, system)
    frame = prepare_lines(orders, lines.drop("file_line"), wms, services, variants, bundles)
    _, verdicts = check_orders(frame, suite, params)
    failures = (
        verdicts.filter(~pl.col("passed"))
        .join(orders.select("order_key", "order_ref"), on="order_key")
        .select(
            "order_ref",
            "reason_code",
            pl.col("detail").str.replace_all("service_codes.csv", str(service_map), literal=True),
        )
        .sort("order_ref", "reason_code")
    )
    return CheckResult(failures, orders.height, lines.height)


def read_catalogue(path: Path) -> list[str]:
    """SKUs from a CSV with a `sku` column."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (FileNotFoundError, pl.exceptions.ComputeError) as exc:
        raise UnreadableFile(f"{path}: {exc}") from None
    if "sku" not in frame.columns:
        raise UnreadableFile(f"{path}, line 1: no 'sku' column")
    return frame["sku"].drop_nulls().str.strip_chars().to_list()


def neutralise(cell: str | None) -> str:
    """A cell a spreadsheet will show as text, never run as a formula."""
    text = cell or ""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def write_report(failures: pl.DataFrame, out: Path) -> None:
    """`order_ref, reason_code, detail`, one row per failing rule, formula-safe."""
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["order_ref", "reason_code", "detail"])
        for row in failures.iter_rows():
            writer.writerow([neutralise(v) for v in row])


def summary(result: CheckResult) -> str:
    """A readable summary for the terminal."""
    held = result.failures["order_ref"].n_unique()
    lines = [f"{result.orders} orders ({result.lines} lines): {result.orders - held} pass, {held} held"]
    for reason, n in result.failures.group_by("reason_code").len().sort("len", descending=True).iter_rows():
        lines.append(f"  {reason:22s} {n}")
    for row in result.failures.head(10).iter_rows(named=True):
        lines.append(f"  {row['order_ref']}: {row['reason_code']}: {row['detail']}")
    if result.failures.height > 10:
        lines.append(f"  ... and {result.failures.height - 10} more (see --report)")
    return "\n".join(lines)
