"""DDL of the canonical tables and ledgers in schema `fulfil` (portable between DuckDB and PostgreSQL)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl

from fulfil_assets.reconcile.tables import COLUMNS
from resources.warehouse import Warehouse

if TYPE_CHECKING:
    from resources.warehouse import WarehouseDb

TS = "TIMESTAMP WITH TIME ZONE"
# Every ledger (see fulfil_assets/effects.py): the effect, its payload, who is sending it, what came back.
LEDGER_COLUMNS = {
    "flow": "TEXT",
    "target": "TEXT",
    "payload": "TEXT",
    "payload_hash": "TEXT",
    "claimed_by": "TEXT",
    "claimed_until": TS,
    "attempted_at": TS,
    "target_ref": "TEXT",  # the target's own id for the effect, where it gives one (a Linnworks order id)
}
LEDGER = f"""
    idempotency_key TEXT PRIMARY KEY,
    order_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result TEXT,
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL,
    confirmed_at {TS}, """ + ", ".join(f"{c} {t}" for c, t in LEDGER_COLUMNS.items())
LEDGERS = (
    "wms_submissions",
    "cancellations",
    "amendments",
    "tracking_posts",
    "stock_pushes",
    "peoplevox_subscriptions",
    "alerts",
)

# Columns added to tables after their first release: warehouses made before gain them (additive only).
ADDED_COLUMNS = {
    "orders": {"fulfilment_location": "TEXT"},
    "validated_orders": {"flow": "TEXT", "target_location": "TEXT"},
    "order_lines": {"source_line_id": "TEXT", "ship_to_id": "TEXT"},
    "despatches": {"reason": "TEXT"},
}

TABLES = {
    "orders": f"""
    order_key TEXT PRIMARY KEY, source_system TEXT NOT NULL, source_order_id TEXT NOT NULL, order_ref TEXT NOT NULL,
    channel TEXT, created_at {TS}, updated_at {TS}, paid BOOLEAN, status TEXT NOT NULL, ship_name TEXT,
    company TEXT, address1 TEXT, address2 TEXT, address3 TEXT, city TEXT, region TEXT, postcode TEXT,
    country_code TEXT, phone TEXT, email TEXT, shipping_method TEXT, currency TEXT, total NUMERIC(14, 2),
    fulfilment_location TEXT, content_hash TEXT, staged_at {TS}""",
    "order_lines": """
    order_key TEXT NOT NULL, line_no INTEGER NOT NULL, sku TEXT, source_variant_id TEXT, quantity BIGINT,
    unit_price NUMERIC(14, 4), PRIMARY KEY (order_key, line_no)""",
    "wms_stock": f"""
    wms TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, on_hand BIGINT, allocated BIGINT,
    available BIGINT, snapshot_at {TS}, source_file TEXT, PRIMARY KEY (wms, sku, location)""",
    "oms_stock": f"""
    oms TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, level BIGINT, fetched_at {TS},
    PRIMARY KEY (oms, sku, location)""",
    "despatches": f"""
    wms TEXT NOT NULL, order_ref TEXT NOT NULL, order_key TEXT, despatch_ref TEXT NOT NULL, line_no INTEGER NOT NULL,
    parcel_no INTEGER NOT NULL, sku TEXT, quantity BIGINT, carrier TEXT, service_code TEXT, tracking_number TEXT,
    tracking_url TEXT, despatched_at {TS}, partial BOOLEAN, source_file TEXT NOT NULL,
    PRIMARY KEY (wms, despatch_ref, line_no, parcel_no)""",
    "order_verdicts": f"""
    order_key TEXT NOT NULL, rule TEXT NOT NULL, passed BOOLEAN NOT NULL, reason_code TEXT, detail TEXT,
    owner TEXT, checked_at {TS} NOT NULL, PRIMARY KEY (order_key, rule)""",
    "validated_orders": f"""
    order_key TEXT PRIMARY KEY, wms TEXT NOT NULL, flow TEXT, service_code TEXT, target_location TEXT,
    phone_normalised TEXT, postcode_normalised TEXT, passed BOOLEAN NOT NULL, ready BOOLEAN NOT NULL, content_hash TEXT,
    validated_at {TS} NOT NULL""",
    # The lines the target holds: frozen when the order is sent, replaced when the target confirms an amendment.
    "wms_order_lines": """
    order_key TEXT NOT NULL, wms TEXT NOT NULL, wms_line_no INTEGER NOT NULL, source_line_no INTEGER, sku TEXT,
    quantity BIGINT, PRIMARY KEY (order_key, wms, wms_line_no)""",
    # The lines each order has for its target now (every validation run): a sent order whose lines differ from
    # what the target holds is an amendment.
    "target_order_lines": """
    order_key TEXT NOT NULL, wms TEXT NOT NULL, wms_line_no INTEGER NOT NULL, source_line_no INTEGER, sku TEXT,
    quantity BIGINT, PRIMARY KEY (order_key, wms, wms_line_no)""",
    "order_exceptions": f"""
    order_key TEXT NOT NULL, rule TEXT NOT NULL, reason_code TEXT NOT NULL, detail TEXT, owner TEXT NOT NULL,
    first_seen {TS} NOT NULL, last_seen {TS} NOT NULL, resolved_at {TS}, PRIMARY KEY (order_key, rule)""",
    "processed_files": f"""
    wms TEXT NOT NULL, file_name TEXT NOT NULL, size BIGINT NOT NULL, content_hash TEXT NOT NULL, kind TEXT,
    outcome TEXT NOT NULL, detail TEXT, rows_read BIGINT, rows_kept BIGINT, processed_at {TS} NOT NULL,
    PRIMARY KEY (wms, file_name, content_hash)""",
    "quarantined_rows": f"""
    source TEXT NOT NULL, source_file TEXT NOT NULL, line BIGINT, reason TEXT NOT NULL, raw TEXT,
    quarantined_at {TS} NOT NULL""",
    "wms_submissions": LEDGER + ", wms TEXT NOT NULL, order_ref TEXT NOT NULL, file_name TEXT",
    "wms_acknowledgements": f"""
    wms TEXT NOT NULL, file_name TEXT NOT NULL, order_ref TEXT NOT NULL, status TEXT NOT NULL, detail TEXT,
    ack_file TEXT NOT NULL, received_at {TS}, PRIMARY KEY (wms, file_name, order_ref)""",
    "cancellations": LEDGER + ", wms TEXT NOT NULL, order_ref TEXT NOT NULL, file_name TEXT",
    "amendments": LEDGER + ", wms TEXT NOT NULL, order_ref TEXT NOT NULL, file_name TEXT",
    "tracking_posts": LEDGER + ", oms TEXT NOT NULL, despatch_ref TEXT NOT NULL, tracking_number TEXT, kind TEXT",
    "stock_deltas": f"""
    flow TEXT NOT NULL, oms TEXT NOT NULL, location TEXT NOT NULL, sku TEXT NOT NULL, source_location TEXT,
    is_bundle BOOLEAN, wms_available BIGINT, open_unsent BIGINT, buffer BIGINT, ats BIGINT, oms_level BIGINT,
    last_confirmed BIGINT, to_push BOOLEAN, computed_at {TS}, PRIMARY KEY (flow, location, sku)""",
    "stock_pushes": LEDGER + ", oms TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, level BIGINT",
    "peoplevox_subscriptions": LEDGER + ", event TEXT NOT NULL, post_url TEXT NOT NULL",
    "alerts": LEDGER + ", kind TEXT NOT NULL, subject TEXT NOT NULL",
}


SQL_TYPES = {"String": "TEXT", "Int64": "BIGINT", "Float64": "DOUBLE PRECISION", "Date": "DATE", "Datetime": TS}


def reconciled_ddl() -> dict[str, str]:
    """The reconciled tables analysts query, made from their column descriptions (`reconcile/tables.py`)."""
    return {
        name: ", ".join(f"{c} {SQL_TYPES[type(t).__name__]}" for c, (t, _) in columns.items())
        for name, columns in COLUMNS.items()
    }


ALL_TABLES = {**TABLES, **reconciled_ddl()}
POLARS_TYPES = {
    "TEXT": pl.String(),
    "BIGINT": pl.Int64(),
    "INTEGER": pl.Int64(),
    "NUMERIC": pl.Float64(),
    "DOUBLE PRECISION": pl.Float64(),
    "BOOLEAN": pl.Boolean(),
    "DATE": pl.Date(),
    TS: pl.Datetime("us", "UTC"),
}
_COLUMN = re.compile(r"(?:^|,)\s*(\w+)\s+(" + "|".join(sorted(POLARS_TYPES, key=len, reverse=True)) + r")\b")


def table_schema(name: str) -> dict[str, pl.DataType]:
    """A `fulfil` table's polars schema, from its DDL: frames read from an empty table keep their types."""
    ddl = ALL_TABLES[name]
    columns = {c: POLARS_TYPES[t] for c, t in _COLUMN.findall(" ".join(ddl.split()))}
    columns.update({c: POLARS_TYPES[t] for c, t in ADDED_COLUMNS.get(name, {}).items()})
    return columns


def ensure_tables(db: WarehouseDb) -> None:
    """Create schema `fulfil` and every table that is missing; add missing ledger columns (never drops)."""
    # PostgreSQL's IF NOT EXISTS is not safe between sessions: two runs starting at once both try to create the
    # schema and one fails. The first to take the transaction lock creates, the other then finds it all there.
    statements = [] if db.is_duckdb else ["SELECT pg_advisory_xact_lock(hashtext('fulfil.ensure_tables'))"]
    statements += ["CREATE SCHEMA IF NOT EXISTS fulfil"]
    statements += [f"CREATE TABLE IF NOT EXISTS fulfil.{name} ({ddl})" for name, ddl in ALL_TABLES.items()]
    # Ledgers made before the effect module gain its columns (additive only).
    statements += [
        f"ALTER TABLE fulfil.{name} ADD COLUMN IF NOT EXISTS {column} {sql_type}"
        for name in LEDGERS
        for column, sql_type in LEDGER_COLUMNS.items()
    ]
    statements += [
        f"ALTER TABLE fulfil.{name} ADD COLUMN IF NOT EXISTS {column} {sql_type}"
        for name, columns in ADDED_COLUMNS.items()
        for column, sql_type in columns.items()
    ]
    # Linnworks orders fulfil created before `target_ref` existed: their id was only in the result's words.
    statements += [
        "UPDATE fulfil.wms_submissions SET target_ref = regexp_replace(result, '^.*order (\\S+)$', '\\1') "
        "WHERE wms = 'linnworks' AND target_ref IS NULL AND status <> 'shadow' AND result LIKE '%Linnworks%order %'"
    ]
    db.execute(statements)


class FulfilWarehouse(Warehouse):
    """The warehouse resource with fulfil's tables: each handle creates what is missing on first use."""

    def bootstrap(self, db: WarehouseDb) -> None:
        """Create schema `fulfil` and every missing table and column."""
        ensure_tables(db)
