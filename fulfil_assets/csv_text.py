"""The one CSV reader: Whistl's files (despatches, rejections, acknowledgements, stock snapshots), the mapping tables
ops edit and the order CSVs `fulfil check-orders` reads all go through `read_csv`, so a file is judged the same way
everywhere: UTF-8 (a BOM allowed), only `\\r` and `\\n` end a line, a quoted line break stays in its cell, header
cells trimmed, and every refusal names the line and what to do about it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass


class CsvError(ValueError):
    """A file that cannot be read as a whole; the message starts with where (`line N: ...`) when it is known."""


@dataclass(frozen=True)
class CsvRow:
    """One row: the line it starts on, its cells by (trimmed) header name (a missing cell reads as ""), the cells
    past the header, and how many cells it had."""

    line: int
    cells: dict[str, str]
    extra: tuple[str, ...]
    width: int


def read_csv(
    data: bytes | str,
    required: tuple[str, ...] | list[str] = (),
    *,
    exact: list[str] | None = None,
    complete: bool = False,
    rows_required: bool = False,
    strict: bool = False,
) -> tuple[list[str], list[CsvRow]]:
    """The header and rows of a CSV file. Refused as a whole (CsvError) when it is not UTF-8, empty, lacks a
    `required` column or is not headed exactly `exact`, or (when asked) has no rows or no line break after its last
    line (`complete`: cut short, or still being written). Blank lines are skipped; `strict` refuses bad quoting."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CsvError(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        raise CsvError("empty file")
    if complete and not text.endswith(("\n", "\r")):
        raise CsvError("no line break after the last line: the file is incomplete (cut short, or still being written)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=strict)
    try:
        header = [cell.strip() for cell in next(reader)]
    except csv.Error as exc:
        raise CsvError(f"line 1: {exc}") from None
    if exact is not None and header != exact:
        raise CsvError(f"line 1: header must be {','.join(exact)}, found {','.join(header)[:200]}")
    missing = [c for c in required if c not in header]
    if missing:
        raise CsvError(f"line 1: missing columns {', '.join(missing)} (header: {','.join(header)[:200]})")
    rows: list[CsvRow] = []
    start = reader.line_num + 1
    try:
        for cells in reader:
            if cells and (len(cells) > 1 or cells[0].strip()):  # a blank line is skipped; a row of empty cells is
                # kept (the caller says what is wrong with it)
                padded = cells + [""] * (len(header) - len(cells))
                named = {name: padded[i] for i, name in enumerate(header) if name}
                rows.append(CsvRow(start, named, tuple(cells[len(header) :]), len(cells)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvError(f"line {start}: {exc}") from None
    if rows_required and not rows:
        raise CsvError("line 2: a header and no rows")
    return header, rows
