"""Ledger housekeeping outside a send: what the target later reports about an effect (Whistl rejected an order,
despatched it in full) and the exceptions that go with it. Sending itself goes through `fulfil_assets.effects`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import polars as pl
import sqlalchemy as sa

from fulfil_assets import effects
from fulfil_assets.effects import now_utc
from fulfil_assets.reasons import OWNERS
from fulfil_assets.whistl_formats import ORDER_FILE_COLUMNS
from resources.warehouse import SCHEMA, WarehouseDb

EXCEPTION_UPDATE = ["reason_code", "detail", "owner", "last_seen", "resolved_at"]


def resolve_exceptions(db: WarehouseDb, rule: str, order_keys: Sequence[str], when: datetime) -> None:
    """Close the open `rule` exceptions of these orders (the cause went away at its source)."""
    if not order_keys:
        return
    statement = sa.text(
        f"UPDATE {SCHEMA}.order_exceptions SET resolved_at = :when "
        "WHERE rule = :rule AND resolved_at IS NULL AND order_key = :key"
    )
    with db.begin() as conn:
        conn.execute(statement, [{"when": when, "rule": rule, "key": k} for k in order_keys])


def resolve_wms_rejections(db: WarehouseDb, order_keys: Sequence[str], when: datetime) -> None:
    """Close the `wms_acceptance` exceptions of orders that go to the warehouse again after a fix."""
    resolve_exceptions(db, "wms_acceptance", order_keys, when)


def open_exceptions(db: WarehouseDb, problems: pl.DataFrame, rule: str, now: datetime) -> None:
    """Open (or refresh) exceptions for `order_key, reason_code, detail` rows under `rule`."""
    if problems.is_empty():
        return
    rows = problems.select(
        "order_key",
        pl.lit(rule).alias("rule"),
        "reason_code",
        "detail",
        pl.col("reason_code").replace_strict(OWNERS, default="office").alias("owner"),
        pl.lit(now).alias("first_seen"),
        pl.lit(now).alias("last_seen"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("resolved_at"),
    )
    db.write("order_exceptions", rows, mode="upsert", key=["order_key", "rule"], update=EXCEPTION_UPDATE)


def mark_cancelled(db: WarehouseDb, wms: str, order_keys: Sequence[str]) -> None:
    """The warehouse confirmed the cancellation: the order's submission is `cancelled` (never sent again)."""
    effects.report(db, "wms_submissions", [f"{wms}:order:{k}" for k in order_keys], effects.CANCELLED, confirmed=True)


def adopt_amendments(db: WarehouseDb, wms: str, keys: Sequence[str]) -> None:
    """The warehouse confirmed these amendments: each becomes what its order's submission holds (payload and hash),
    so later changes are compared with it, and the amendment is `acknowledged`."""
    if not keys:
        return
    select = sa.text(
        f"SELECT order_key, payload, payload_hash FROM {SCHEMA}.amendments WHERE idempotency_key IN :keys"
    ).bindparams(sa.bindparam("keys", expanding=True))
    with db.connect() as conn:
        rows = conn.execute(select, {"keys": list(keys)}).mappings().fetchall()
    adopt = sa.text(
        f"UPDATE {SCHEMA}.wms_submissions SET payload = :payload, payload_hash = :hash, updated_at = :now "
        "WHERE idempotency_key = :key"
    )
    now = now_utc()
    with db.begin() as conn:
        conn.execute(
            adopt,
            [
                {"payload": r["payload"], "hash": r["payload_hash"], "now": now, "key": f"{wms}:order:{r['order_key']}"}
                for r in rows
            ],
        )
    lines = pl.DataFrame(
        [
            {"order_key": r["order_key"], "wms": wms, "wms_line_no": n, "sku": sku, "quantity": q}
            for r in rows
            for n, sku, q in payload_lines(wms, r["payload"]) or []
        ],
        schema={
            "order_key": pl.String,
            "wms": pl.String,
            "wms_line_no": pl.Int32,
            "sku": pl.String,
            "quantity": pl.Int64,
        },
    )
    if lines.height:  # the target now holds the amended lines: despatches are matched with them
        source = db.read(
            f"SELECT order_key, wms_line_no, source_line_no FROM {SCHEMA}.target_order_lines "
            f"WHERE wms = '{wms}' AND {db.any_of('order_key', 'keys')}",
            {"keys": lines["order_key"].unique().to_list()},
            schema={"order_key": pl.String, "wms_line_no": pl.Int32, "source_line_no": pl.Int32},
        )
        held = lines.join(source, on=["order_key", "wms_line_no"], how="left")
        quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in held["order_key"].unique().to_list())
        db.write("wms_order_lines", held, mode="replace", replace_where=f"wms = '{wms}' AND order_key IN ({quoted})")
    effects.report(db, "amendments", list(keys), effects.ACKNOWLEDGED, confirmed=True)


def payload_lines(wms: str, payload: str) -> list[tuple[int, str, int]] | None:
    """The lines (line number, SKU, quantity) an order's payload gives it at the target: a Whistl order file's
    rows, or Peoplevox's `Sales order items`. None where the payload carries no lines (a Linnworks amendment
    changes the customer's details only)."""
    data = json.loads(payload)
    if wms == "whistl":
        at = {c: i for i, c in enumerate(ORDER_FILE_COLUMNS)}
        return [(int(r[at["line_number"]]), str(r[at["sku"]]), int(r[at["quantity"]])) for r in data]
    if wms == "peoplevox":
        return [(int(i["Line"]), str(i["ItemCode"]), int(i["QuantityOrdered"])) for i in data["items"]]
    return None
