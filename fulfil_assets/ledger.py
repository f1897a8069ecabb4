"""Ledger housekeeping outside a send: what the target later reports about an effect (Whistl rejected an order,
despatched it in full) and the exceptions that go with it. Sending itself goes through `fulfil_assets.effects`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from resources.warehouse import SCHEMA, WarehouseDb


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def mark(
    db: WarehouseDb, table: str, keys: Sequence[str], status: str, *, error: str | None = None, confirmed: bool = False
) -> None:
    """Set the status of ledger rows from what the target reported (and the error, or the confirmation time)."""
    if not keys:
        return
    sets = "status = :status, updated_at = :now, last_error = :error" + (", confirmed_at = :now" if confirmed else "")
    statement = sa.text(f"UPDATE {SCHEMA}.{table} SET {sets} WHERE idempotency_key = :key")
    params = {"status": status, "now": now_utc(), "error": error}
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
