"""DDL of the canonical tables and ledgers in schema `fulfil` (portable between DuckDB and PostgreSQL)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl
import sqlalchemy as sa

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
    "validated_orders": {"flow": "TEXT", "target_location": "TEXT", "inputs_hash": "TEXT"},
    "order_lines": {"source_line_id": "TEXT", "ship_to_id": "TEXT"},
    "despatches": {"reason": "TEXT"},
}

# The reconciled tables analysts query (built by `reconcile/reconciled.py`): each table's columns, in order:
# name -> (polars type, description). The DDL, the Dagster column schema and docs/tables.md are made from this.
MONEY = pl.Decimal(18, 2)  # as `orders.total`: sums of money stay exact (no 29909.120000000003)
COLUMNS: dict[str, dict[str, tuple[pl.DataType, str]]] = {
    "exception_summary": {
        "reason_code": (pl.String(), "why the orders are held (see docs/operations.md)"),
        "owner": (pl.String(), "who acts: office, cx (customer service) or warehouse"),
        "age_band": (pl.String(), "how long they have been open: under 1h, 1-24h, 1-7d, over 7d"),
        "open_exceptions": (pl.Int64(), "open exceptions in the band"),
        "oldest_first_seen": (pl.Datetime("us", "UTC"), "when the oldest of them was first seen"),
        "example_order_refs": (pl.String(), "up to five order references, comma separated"),
    },
    "orders_stuck": {
        "order_key": (pl.String(), "the order (source system and its id)"),
        "order_ref": (pl.String(), "the order's reference as the warehouse knows it"),
        "flow": (
            pl.String(),
            "the flow the order belongs to (before validation, from routes in fulfil.yaml; empty only at no_flow)",
        ),
        "stage": (
            pl.String(),
            "where it is stuck: not_validated (read from the order system, not yet validated: the order sync has "
            "not run since), no_flow (read, but no configured flow takes it: its location is in no route), not_sent "
            "(validated and paid, not at the WMS), not_despatched (at the WMS past the service's SLA), open_in_oms "
            "(despatched, the order system not yet updated), exception_open (held too long)",
        ),
        "since": (pl.Datetime("us", "UTC"), "when the order entered that stage"),
        "waiting_minutes": (pl.Int64(), "minutes in that stage when the table was built"),
        "owner": (pl.String(), "who acts"),
        "reason": (pl.String(), "what it waits for, in words"),
    },
    "despatch_latency": {
        "order_key": (pl.String(), "the order"),
        "flow": (pl.String(), "its flow"),
        "oms": (pl.String(), "the order system told"),
        "despatch_ref": (pl.String(), "the warehouse's despatch"),
        "despatched_at": (pl.Datetime("us", "UTC"), "when the warehouse despatched it"),
        "oms_updated_at": (pl.Datetime("us", "UTC"), "when the order system confirmed its tracking (empty: not yet)"),
        "latency_seconds": (pl.Float64(), "oms_updated_at - despatched_at"),
    },
    "despatch_latency_daily": {
        "day": (pl.Date(), "despatch day (UTC)"),
        "flow": (pl.String(), "the flow"),
        "despatches": (pl.Int64(), "despatches that day"),
        "updated": (pl.Int64(), "of which the order system has confirmed"),
        "p50_seconds": (pl.Float64(), "median latency of the confirmed ones"),
        "p95_seconds": (pl.Float64(), "95th percentile latency of the confirmed ones"),
    },
    "fulfilment_reconciliation": {
        "day": (pl.Date(), "the day the order was placed (UTC)"),
        "flow": (pl.String(), "the flow"),
        "oms_orders": (pl.Int64(), "paid orders the order system holds for the flow"),
        "oms_value": (MONEY, "their value (in the orders' currency, to the penny)"),
        "sent_orders": (pl.Int64(), "of which the WMS confirmed it holds"),
        "sent_value": (MONEY, "their value (in the orders' currency, to the penny)"),
        "despatched_orders": (pl.Int64(), "of which the WMS despatched at least one line"),
        "despatched_value": (MONEY, "their value (in the orders' currency, to the penny)"),
        "tracked_orders": (pl.Int64(), "of which the order system confirmed tracking"),
        "cancelled_orders": (pl.Int64(), "orders of the day cancelled in the order system"),
        "unsent_orders": (
            pl.Int64(),
            "oms_orders - sent_orders: paid orders of the day not at the warehouse, held ones included. "
            "`orders_stuck` counts otherwise: each paid order once, wherever it waits past a threshold, "
            "not-yet-validated ones too, and not at all before `reconcile.unsent_minutes`",
        ),
    },
    "daily_activity": {
        "day": (pl.Date(), "the day it happened (UTC)"),
        "flow": (pl.String(), "the flow"),
        "placed_orders": (pl.Int64(), "orders placed in the order system that day"),
        "sent_orders": (pl.Int64(), "orders the warehouse first confirmed holding that day"),
        "despatched_orders": (
            pl.Int64(),
            "orders with a line despatched that day (an order shipped over two days counts on both)",
        ),
        "tracked_orders": (pl.Int64(), "orders whose order system first confirmed tracking that day"),
        "cancelled_orders": (pl.Int64(), "orders cancelled in the order system that day (by their last change)"),
    },
    "stock_drift": {
        "flow": (pl.String(), "the flow"),
        "oms": (pl.String(), "the order system"),
        "location": (pl.String(), "the order system's location"),
        "sku": (pl.String(), "the SKU"),
        "wms_available": (pl.Int64(), "what the warehouse says is available"),
        "available_to_sell": (pl.Int64(), "what the order system should show (available less unsent and buffer)"),
        "oms_level": (pl.Int64(), "what the order system shows"),
        "last_pushed": (pl.Int64(), "the level fulfil last pushed and the order system confirmed"),
        "difference": (pl.Int64(), "oms_level - available_to_sell (above 0: oversell risk)"),
        "drifting_since": (pl.Datetime("us", "UTC"), "since when the levels have differed (empty: in step)"),
    },
    "order_timeline": {
        "order_key": (pl.String(), "the order"),
        "order_ref": (pl.String(), "its reference"),
        "seq": (pl.Int64(), "the event's place in the order's life, from 1 (order by it: files stamp whole seconds)"),
        "happened_at": (pl.Datetime("us", "UTC"), "when it happened"),
        "system": (pl.String(), "where it happened"),
        "event": (pl.String(), "what happened"),
        "detail": (pl.String(), "the words that go with it"),
    },
}
BUILT_AT = "built_at"
for _columns in COLUMNS.values():  # every reconciled table says when it was built
    _columns[BUILT_AT] = (pl.Datetime("us", "UTC"), "when fulfil built this table (the same on every row of a build)")

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
    inputs_hash TEXT, validated_at {TS} NOT NULL""",
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


def sql_type(dtype: pl.DataType) -> str:
    """The SQL type of a reconciled column (a decimal keeps its precision and scale)."""
    if isinstance(dtype, pl.Decimal):
        return f"NUMERIC({dtype.precision}, {dtype.scale})"
    return SQL_TYPES[type(dtype).__name__]


def reconciled_ddl() -> dict[str, str]:
    """The reconciled tables analysts query, made from their column descriptions (`reconcile/reconciled.py`)."""
    return {name: ", ".join(f"{c} {sql_type(t)}" for c, (t, _) in columns.items()) for name, columns in COLUMNS.items()}


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


def held_columns(db: WarehouseDb) -> dict[str, list[str]]:
    """The columns each table of schema `fulfil` has now, in order (none when the schema is not there yet)."""
    found = db.read(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'fulfil' "
        "ORDER BY table_name, ordinal_position",
        schema={"table_name": pl.String, "column_name": pl.String},
    )
    held = found.group_by("table_name", maintain_order=True).agg("column_name")
    return {t: list(cols) for t, cols in held.iter_rows()}


def outdated_reconciled_tables(held: dict[str, list[str]]) -> list[str]:
    """Reconciled tables an earlier fulfil made with other columns. Each is derived whole by every reconcile run,
    so it is made again (empty until the next run) rather than altered."""
    return [t for t, cols in held.items() if t in COLUMNS and cols != list(COLUMNS[t])]


def missing_ddl(held: dict[str, list[str]]) -> list[str]:
    """The statements that bring the warehouse to fulfil's tables from `held` (`held_columns`): drop the
    outdated reconciled tables, create the missing tables, add the columns later versions gave ledgers and
    canonical tables. Nothing when all is there: an `ALTER TABLE`, even one that adds nothing, takes PostgreSQL's
    exclusive lock on its table, and every step process making sure of its tables would queue behind every
    reader (and deadlock with a join that already holds one of the tables)."""
    outdated = outdated_reconciled_tables(held)
    made = [name for name in ALL_TABLES if name not in held or name in outdated]
    statements = [f"DROP TABLE IF EXISTS fulfil.{name}" for name in outdated]
    statements += [f"CREATE TABLE IF NOT EXISTS fulfil.{name} ({ALL_TABLES[name]})" for name in made]
    # A ledger's own DDL has every ledger column; a table's first DDL lacks the columns added since.
    lacking: dict[str, dict[str, str]] = {}
    for name in LEDGERS:
        lacking[name] = {c: t for c, t in LEDGER_COLUMNS.items() if c not in held.get(name, LEDGER_COLUMNS)}
    for name, columns in ADDED_COLUMNS.items():
        lacking.setdefault(name, {}).update({c: t for c, t in columns.items() if c not in held.get(name, [])})
    statements += [
        f"ALTER TABLE fulfil.{name} ADD COLUMN IF NOT EXISTS {column} {sql_type}"
        for name, columns in lacking.items()
        for column, sql_type in columns.items()
    ]
    if "target_ref" not in held.get("wms_submissions", ["target_ref"]):
        # Linnworks orders fulfil created before `target_ref` existed: their id was only in the result's words.
        statements.append(
            "UPDATE fulfil.wms_submissions SET target_ref = regexp_replace(result, '^.*order (\\S+)$', '\\1') "
            "WHERE wms = 'linnworks' AND target_ref IS NULL AND status <> 'shadow' "
            "AND result LIKE '%Linnworks%order %'"
        )
    return statements


def ensure_tables(db: WarehouseDb) -> None:
    """Create schema `fulfil` and every table that is missing; add missing ledger columns. Nothing holding a
    record is ever dropped: only a reconciled table an earlier fulfil made with other columns is made again.
    When every table and column is there (every run but the first of a version), no statement is sent."""
    if not missing_ddl(held_columns(db)):
        return
    # PostgreSQL's IF NOT EXISTS is not safe between sessions: two runs starting at once both try to create the
    # schema and one fails. The first to take the transaction lock decides and makes; the other, once it has the
    # lock, reads again what is there (in the same transaction) and finds nothing left to do.
    with db.session(), db.begin() as conn:
        if not db.is_duckdb:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('fulfil.ensure_tables'))"))
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS fulfil"))
        for statement in missing_ddl(held_columns(db)):
            conn.execute(sa.text(statement))


class FulfilWarehouse(Warehouse):
    """The warehouse resource with fulfil's tables: each handle creates what is missing on first use."""

    def bootstrap(self, db: WarehouseDb) -> None:
        """Create schema `fulfil` and every missing table and column."""
        ensure_tables(db)


# What each column of the canonical tables and ledgers holds, for the Dagster UI's column schema (the reconciled
# tables carry their own, in `reconcile/reconciled.py`). A column is described once wherever it appears.
COLUMN_DESCRIPTIONS = {
    # every ledger (effects.py)
    "idempotency_key": "the effect's identity: the same effect always has the same key, so it is never sent twice",
    "status": "pending, sending (outcome unknown), sent, held, failed, shadow, then what the target reported "
    "(acknowledged, rejected, despatched, cancelled, too_late); for an order: its status in its order system",
    "attempts": "calls made for it",
    "last_error": "the target's own words on the last refusal or failure",
    "result": "what the target answered when it took it",
    "created_at": "when it was first intended (orders: placed in the order system)",
    "updated_at": "when it last changed",
    "confirmed_at": "when the target first confirmed holding it (a Whistl file: when it was uploaded); a later "
    "acknowledgement or despatch keeps it, a re-sent refusal starts again",
    "flow": "the flow it belongs to (`fulfil.yaml` flows)",
    "target": "the system it goes to",
    "payload": "exactly what is (or would be) sent, canonical JSON",
    "payload_hash": "SHA-256 of the payload: a changed payload is a new effect",
    "claimed_by": "the sender holding it now (host:pid:random), if any",
    "claimed_until": "when that claim lapses",
    "attempted_at": "when the last call was made",
    "target_ref": "the target's own id for it (the Linnworks order fulfil created for a Shopify order)",
    "file_name": "the Whistl file that carried it",
    # orders and lines
    "order_key": "the order across fulfil: `<order system>:<its id>`",
    "source_system": "the order system: linnworks, cin7, shopify or bigcommerce",
    "source_order_id": "the order's id in its order system",
    "order_ref": "the reference the warehouse knows the order by",
    "channel": "the sales channel the order came from",
    "paid": "whether the order is paid (only paid orders go to a warehouse)",
    "ship_name": "ship-to name",
    "company": "ship-to company",
    "address1": "ship-to first line",
    "address2": "ship-to second line",
    "address3": "ship-to third line",
    "city": "ship-to town",
    "region": "ship-to county or region",
    "postcode": "ship-to postcode as the customer typed it",
    "country_code": "ship-to country (ISO 3166 alpha-2)",
    "phone": "ship-to phone as the customer typed it",
    "email": "customer e-mail",
    "shipping_method": "the shipping method the customer chose, as the order system names it",
    "currency": "ISO 4217 currency",
    "total": "order total in its currency",
    "fulfilment_location": "the order system's location that fulfils it (routes orders to a flow)",
    "content_hash": "fingerprint of what the warehouse is sent: a change means an amendment",
    "staged_at": "when staging last wrote it",
    "line_no": "line number (the warehouse's, for despatch lines)",
    "sku": "stock keeping unit",
    "source_variant_id": "the storefront variant of the line",
    "quantity": "units",
    "unit_price": "price per unit",
    "source_line_id": "the line's id in its order system",
    "ship_to_id": "the ship-to address of the line (BigCommerce orders may ship to several)",
    # validation
    "wms": "the warehouse (or Linnworks, for Shopify orders)",
    "service_code": "the warehouse service code the shipping method maps to",
    "target_location": "the location at the target the order is sent to",
    "phone_normalised": "the phone in the form the carrier takes",
    "postcode_normalised": "the postcode in its country's standard form",
    "passed": "every rule passed",
    "ready": "passed, paid and still open: it goes at the next send",
    "inputs_hash": "a hash of what the verdict rested on besides the order (suite, mappings, catalogue, routes)",
    "validated_at": "when it was last validated",
    "rule": "the rule that holds the order",
    "reason_code": "why (see docs/operations.md)",
    "detail": "what exactly, in words",
    "owner": "who acts: office, cx (customer service) or warehouse",
    "first_seen": "when the problem was first seen",
    "last_seen": "when it was last seen",
    "resolved_at": "when it went away at its source (open while null)",
    # stock
    "location": "the order system's location",
    "on_hand": "units physically held",
    "allocated": "units held for orders",
    "available": "units free to sell at the warehouse",
    "snapshot_at": "the warehouse's time for the figures",
    "source_file": "the file (or API read) they came from",
    "oms": "the order system",
    "level": "the stock level the order system shows (or is to be set to)",
    "fetched_at": "when it was read",
    "source_location": "the warehouse location that feeds it",
    "is_bundle": "a bundle: its level is the fewest whole bundles its components make",
    "wms_available": "units free at the warehouse",
    "open_unsent": "units in paid orders not yet at the warehouse",
    "buffer": "units held back from sale",
    "ats": "available to sell: what the order system should show",
    "oms_level": "what it shows now",
    "last_confirmed": "the level it last confirmed",
    "to_push": "the level differs: a push is due",
    "computed_at": "when it was computed",
    # despatches and tracking
    "despatch_ref": "the warehouse's despatch reference",
    "parcel_no": "parcel number within the despatch",
    "carrier": "carrier",
    "tracking_number": "the parcel's tracking number",
    "tracking_url": "where the customer follows the parcel",
    "despatched_at": "when it left the warehouse",
    "partial": "part of the order only",
    "reason": "why a line shipped short, in the warehouse's words",
    "kind": "tracking (a parcel's numbers) or process (the order closed once shipped in full)",
}
