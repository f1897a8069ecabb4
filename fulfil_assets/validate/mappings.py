"""Mapping tables ops edit (CSV in `expectations/`), loaded with checks that name the file, line and problem."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fulfil_assets.config import FLOWS
from fulfil_assets.csv_text import CsvError, CsvRow, read_csv

# Where orders go: the warehouses, and Linnworks for Shopify orders (whose codes are the account's postal services,
# checked against what Linnworks itself reports when validation runs).
TARGETS = ("whistl", "peoplevox", "linnworks")
ACCOUNT_CODES = "wms_service_codes.csv"  # the account's own service codes, beside the mapping
SYSTEMS = {"linnworks", "cin7", "shopify", "bigcommerce"}
WHOLE = re.compile(r"[0-9]+")  # ASCII digits only: int() would take '٣' and str.isdigit() '²'


class MappingError(ValueError):
    """A mapping table has a problem a person must fix."""


@dataclass(frozen=True)
class MappingTable:
    """One mapping CSV in `expectations/`: what it is for, its columns (each with what it holds, in order) and the
    columns that identify a row (a second row with the same key is refused). `docs/config.md` is made from these."""

    what: str
    columns: dict[str, str]
    key: tuple[str, ...]
    example: str

    @property
    def names(self) -> list[str]:
        """The header, in order."""
        return list(self.columns)


_SYSTEMS = "order system: linnworks, cin7, shopify or bigcommerce"
_TARGETS = "where orders go: whistl, peoplevox or linnworks (Shopify orders)"
MAPPING_TABLES = {
    "service_codes.csv": MappingTable(
        "the exact shipping method -> service code map per target; a method not listed holds its orders back "
        "(`SERVICE_UNMAPPED`), never sent with a guess",
        {
            "system": _SYSTEMS,
            "shipping_method": "the method as the order system names it (cells are trimmed, case kept)",
            "wms": _TARGETS,
            "service_code": "a code the target account has (`wms_service_codes.csv`; Linnworks: its postal services)",
        },
        ("system", "shipping_method", "wms"),
        "linnworks,Next Day,whistl,WHISTL-T24",
    ),
    "wms_service_codes.csv": MappingTable(
        "each warehouse account's own service codes, from the 3PL: every mapped code is checked against it",
        {"wms": _TARGETS, "service_code": "one service code the account offers"},
        ("wms", "service_code"),
        "whistl,WHISTL-T24",
    ),
    "variant_skus.csv": MappingTable(
        "storefront variants whose own SKU is missing or differs: the SKU the warehouse knows",
        {"system": _SYSTEMS, "variant_id": "the storefront's variant id", "sku": "the SKU sent to the warehouse"},
        ("system", "variant_id"),
        "shopify,44012345678901,TEE-BLK-M",
    ),
    "locations.csv": MappingTable(
        "where an order system's fulfilment location sends orders at the target (a Shopify location -> a "
        "Linnworks location); an unmapped one holds the order (`LOCATION_UNMAPPED`; an unpaid storefront order, "
        "whose location is read once it is paid, waits for payment instead)",
        {
            "system": _SYSTEMS,
            "location": "the order system's location id",
            "target": _TARGETS,
            "target_location": "the target's location id",
        },
        ("system", "location", "target"),
        "shopify,71000001,linnworks,6f1c2a9e-3b7d-4e15-9a0c-2d8f5b4e7a31",
    ),
    "bundles.csv": MappingTable(
        "what each bundle is made of: a bundle line goes to the warehouse as its components, and its stock is the "
        "fewest whole bundles its components make",
        {
            "bundle_sku": "the bundle's SKU in the order system",
            "component_sku": "one component's SKU at the warehouse (no bundle inside a bundle)",
            "quantity": "units of the component in one bundle: a whole number, at least 1",
        },
        ("bundle_sku", "component_sku"),
        "GIFTSET1,MUG1,2",
    ),
    "stock_locations.csv": MappingTable(
        "which warehouse stock location feeds each order-system location's stock in a flow; a location not listed "
        "receives no stock",
        {
            "flow": "one of the configured flows",
            "location": "the order system's location id",
            "source_location": "the warehouse's location (Linnworks' for Shopify)",
        },
        ("flow", "location"),
        "linnworks_whistl,6f1c2a9e-3b7d-4e15-9a0c-2d8f5b4e7a31,main",
    ),
    "stock_buffers.csv": MappingTable(
        "units held back from sale for one SKU, in place of the flow's `stock.buffer` (optional file)",
        {"sku": "the SKU", "buffer": "units held back: a whole number, 0 or more"},
        ("sku",),
        "TEE-BLK-M,5",
    ),
}


def _table(name: str) -> tuple[list[str], list[str]]:
    """The header and key columns of the mapping CSV `name`."""
    table = MAPPING_TABLES[name]
    return table.names, list(table.key)


RowCheck = Callable[[dict[str, str]], str | None]


def _load(path: Path, columns: list[str], key: list[str], check: RowCheck | None = None) -> pl.DataFrame:
    """Read a CSV with exactly `columns`; refuse blanks, duplicate `key`s and rows `check` objects to. Cells are
    trimmed first, so `standard delivery ` is `standard delivery` (and a second row for it is a duplicate)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MappingError(f"{path}: not found") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        _, read = read_csv(text, exact=columns)
    except CsvError as exc:
        raise MappingError(f"{path}, {exc}") from None
    rows: list[dict[str, str]] = []
    seen: dict[tuple[str, ...], int] = {}
    for row in read:
        problem = _row_problem(row, columns, key, seen, check)
        if problem:
            raise MappingError(f"{path}, line {row.line}: {problem}")
        values = {k: v.strip() for k, v in row.cells.items()}
        seen[tuple(values[c] for c in key)] = row.line
        rows.append(values)
    return pl.DataFrame(rows, schema={c: pl.String for c in columns})


def _row_problem(
    row: CsvRow, columns: list[str], key: list[str], seen: dict[tuple[str, ...], int], check: RowCheck | None
) -> str | None:
    """What is wrong with one row, in words a person can act on (None when it is fine)."""
    if row.extra:
        return "more cells than the header"
    values = {k: v.strip() for k, v in row.cells.items()}
    for column, value in values.items():
        odd = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
        if odd is not None:
            name = unicodedata.name(odd, "control character")
            return f"{column} contains an invisible character U+{ord(odd):04X} ({name}); retype the cell"
    blank = [c for c in columns if not values.get(c)]
    if blank:
        return f"blank {', '.join(blank)}"
    problem = check(values) if check else None
    if problem:
        return problem
    k = tuple(values[c] for c in key)
    if k in seen:
        return f"duplicate of line {seen[k]} for {'/'.join(k)}"
    return None


def load_account_codes(path: Path) -> dict[str, set[str]]:
    """`wms, service_code`: the service codes each warehouse account accepts (its own list, from the 3PL). A
    target without rows (Linnworks) is checked against what the system reports instead; a file with no rows at all
    is refused (every mapped code would then go unchecked)."""
    frame = _load(
        path,
        *_table(ACCOUNT_CODES),
        lambda r: None if r["wms"] in TARGETS else f"unknown wms {r['wms']!r} (one of {list(TARGETS)})",
    )
    if frame.is_empty():
        raise MappingError(
            f"{path}: no service codes; list each warehouse account's codes, one `wms,service_code` a line"
        )
    return {wms: set(codes) for wms, codes in frame.group_by("wms").agg("service_code").iter_rows()}


def _service_row(row: dict[str, str], codes: dict[str, set[str]], source: Path) -> str | None:
    if row["system"] not in SYSTEMS:
        return f"unknown system {row['system']!r} (one of {sorted(SYSTEMS)})"
    if row["wms"] not in TARGETS:
        return f"unknown wms {row['wms']!r} (one of {list(TARGETS)})"
    known = codes.get(row["wms"])
    if known is not None and row["service_code"] not in known:
        return f"{row['service_code']!r} is not a {row['wms']} service code in {source} (one of {sorted(known)})"
    return None


def load_service_codes(path: Path, system: str | None = None, account_codes: Path | None = None) -> pl.DataFrame:
    """`system, shipping_method, wms, service_code`: the exact mapping from what the customer chose, each code
    checked against the account's own list (`account_codes`, default `wms_service_codes.csv` beside the map, else
    the shipped one). With `system` given, a map without the `system` column (one order system's own table) is
    read as that system's."""
    if account_codes is None:
        beside = path.parent / ACCOUNT_CODES
        account_codes = (
            beside if beside.exists() else Path(__file__).resolve().parents[2] / "expectations" / ACCOUNT_CODES
        )
    codes = load_account_codes(account_codes)
    columns, key = _table("service_codes.csv")
    if system is not None and _header(path) == columns[1:]:
        frame = _load(
            path,
            columns[1:],
            key[1:],
            lambda r: _service_row({**r, "system": system}, codes, account_codes),
        )
        return frame.select(pl.lit(system).alias("system"), *columns[1:])
    return _load(path, columns, key, lambda r: _service_row(r, codes, account_codes))


def _header(path: Path) -> list[str] | None:
    """The stripped header cells of a CSV (None when it cannot be read: `_load` says why)."""
    try:
        return read_csv(path.read_text(encoding="utf-8-sig"))[0]
    except (OSError, UnicodeDecodeError, CsvError):
        return None


def load_variant_skus(path: Path) -> pl.DataFrame:
    """`system, variant_id, sku`: storefront variants -> the OMS SKU."""
    return _load(
        path,
        *_table("variant_skus.csv"),
        lambda r: None if r["system"] in SYSTEMS else f"unknown system {r['system']!r}",
    )


def _location_row(row: dict[str, str]) -> str | None:
    if row["system"] not in SYSTEMS:
        return f"unknown system {row['system']!r} (one of {sorted(SYSTEMS)})"
    if row["target"] not in TARGETS:
        return f"unknown target {row['target']!r} (one of {list(TARGETS)})"
    return None


def load_locations(path: Path) -> pl.DataFrame:
    """`system, location, target, target_location`: where an order system's fulfilment location sends orders
    at the target (a Shopify location -> a Linnworks location)."""
    return _load(path, *_table("locations.csv"), _location_row)


def _bundle_row(row: dict[str, str]) -> str | None:
    if not WHOLE.fullmatch(row["quantity"]) or int(row["quantity"]) < 1:
        return f"quantity {row['quantity']!r} must be a whole number of at least 1"
    if row["bundle_sku"] == row["component_sku"]:
        return f"bundle {row['bundle_sku']!r} cannot contain itself"
    return None


def load_bundles(path: Path) -> pl.DataFrame:
    """`bundle_sku, component_sku, quantity`: what one bundle is made of."""
    frame = _load(path, *_table("bundles.csv"), _bundle_row)
    nested = frame.filter(pl.col("component_sku").is_in(frame["bundle_sku"].implode()))
    if nested.height:
        raise MappingError(f"{path}: bundles inside bundles are not supported: {nested['component_sku'][0]!r}")
    return frame.with_columns(pl.col("quantity").cast(pl.Int64))


def _stock_location_row(row: dict[str, str], flows: tuple[str, ...]) -> str | None:
    if row["flow"] not in flows:
        return f"unknown flow {row['flow']!r} (one of {list(flows)})"
    return None


def load_stock_locations(path: Path) -> pl.DataFrame:
    """`flow, location, source_location`: which stock location (the warehouse's; Linnworks' for Shopify) feeds
    each order-system location's stock in a flow. An order-system location not listed receives no stock."""
    return _load(path, *_table("stock_locations.csv"), lambda r: _stock_location_row(r, FLOWS))


def _buffer_row(row: dict[str, str]) -> str | None:
    if not WHOLE.fullmatch(row["buffer"]):
        return f"buffer {row['buffer']!r} must be a whole number of units (0 or more)"
    return None


def load_stock_buffers(path: Path) -> pl.DataFrame:
    """`sku, buffer`: units held back from sale for one SKU, in place of the flow's `stock.buffer` (a missing
    file means no SKU has its own)."""
    if not path.exists():
        return pl.DataFrame(schema={"sku": pl.String, "buffer": pl.Int64})
    return _load(path, *_table("stock_buffers.csv"), _buffer_row).with_columns(pl.col("buffer").cast(pl.Int64))
