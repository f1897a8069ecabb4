"""Frame helpers every stage shares (below all of them in the import order)."""

from __future__ import annotations

import polars as pl


def ensure_columns(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add any missing column as typed nulls (dlt does not create columns that only ever held nulls); in an empty
    frame, give the present ones their types too (a query with no rows reads every column as text)."""
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in columns.items() if c not in frame.columns]
    if frame.is_empty():
        frame = frame.cast({c: t for c, t in columns.items() if c in frame.columns})
    return frame.with_columns(missing) if missing else frame
