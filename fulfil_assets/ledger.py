"""Ledgers: one row per intended external effect, written before the effect, so nothing is sent twice or lost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa

from resources.warehouse import SCHEMA, WarehouseDb


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def read_ledger(db: WarehouseDb, table: str, where: str = "TRUE", params: dict[str, Any] | None = None) -> pl.DataFrame:
    """Rows of a ledger table."""
    return db.read(f"SELECT * FROM {SCHEMA}.{table} WHERE {where}", params)


def insert_new(db: WarehouseDb, table: str, rows: pl.DataFrame) -> int:
    """Insert rows whose idempotency key is not in the ledger yet (existing rows are left untouched)."""
    if rows.is_empty():
        return 0
    return db.write(table, rows, mode="upsert", key=["idempotency_key"], update=[])


def mark(
    db: WarehouseDb,
    table: str,
    keys: Sequence[str],
    status: str,
    *,
    error: str | None = None,
    result: str | None = None,
    confirmed: bool = False,
    attempt: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """Set the status of ledger rows (and error/result/confirmation), counting an attempt when asked."""
    if not keys:
        return
    now = now_utc()
    sets = ["status = :status", "updated_at = :now", "last_error = :error"]
    params: dict[str, Any] = {"status": status, "now": now, "error": error}
    if result is not None:
        sets.append("result = :result")
        params["result"] = result
    if confirmed:
        sets.append("confirmed_at = :now")
    if attempt:
        sets.append("attempts = attempts + 1")
    for i, (column, value) in enumerate((extra or {}).items()):
        sets.append(f"{column} = :x{i}")
        params[f"x{i}"] = value
    statement = sa.text(f"UPDATE {SCHEMA}.{table} SET {', '.join(sets)} WHERE idempotency_key = :key")
    with db.engine.begin() as conn:
        conn.execute(statement, [{**params, "key": k} for k in keys])


def resolve_wms_rejections(db: WarehouseDb, order_keys: Sequence[str], when: datetime) -> None:
    """Close the `wms_acceptance` exceptions of orders that go to the warehouse again after a fix."""
    if not order_keys:
        return
    statement = sa.text(
        f"UPDATE {SCHEMA}.order_exceptions SET resolved_at = :when "
        "WHERE rule = 'wms_acceptance' AND resolved_at IS NULL AND order_key = :key"
    )
    with db.engine.begin() as conn:
        conn.execute(statement, [{"when": when, "key": k} for k in order_keys])
