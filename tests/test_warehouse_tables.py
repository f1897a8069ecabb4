"""fulfil's tables are made and brought up to date at a process's first use of the warehouse, and only then:
once all is there, making sure of them sends no statement, so a step starting never waits on (or deadlocks with)
another run's open transaction on PostgreSQL, as every step process did when an `ALTER TABLE ... ADD COLUMN IF NOT
EXISTS` took each ledger's exclusive lock (bench/live on PostgreSQL: two cancellation runs failed on a deadlock)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from fulfil_assets.warehouse_tables import ALL_TABLES, held_columns, missing_ddl
from fulfil_assets.warehouse_tables import ensure_tables as ensure
from resources.warehouse import SCHEMA, WarehouseDb


def test_a_column_a_later_version_added_is_added_and_then_nothing_is_sent(warehouse_url: str) -> None:
    db = WarehouseDb(warehouse_url)
    ensure(db)
    assert set(held_columns(db)) == set(ALL_TABLES) and missing_ddl(held_columns(db)) == []
    db.execute([f"ALTER TABLE {SCHEMA}.validated_orders DROP COLUMN target_location"])  # as an earlier version made it
    assert missing_ddl(held_columns(db)) == [
        "ALTER TABLE fulfil.validated_orders ADD COLUMN IF NOT EXISTS target_location TEXT"
    ]
    ensure(db)
    assert "target_location" in held_columns(db)["validated_orders"] and missing_ddl(held_columns(db)) == []
    db.dispose()


def test_a_step_starting_does_not_wait_on_another_runs_open_transaction(postgres_url: str) -> None:
    reader = WarehouseDb(postgres_url)
    ensure(reader)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SELECT COUNT(*) FROM {SCHEMA}.wms_submissions"))  # a run mid-transaction on a ledger
        starting = WarehouseDb(postgres_url)
        done = threading.Event()
        threading.Thread(target=lambda: (ensure(starting), done.set()), daemon=True).start()
        assert done.wait(15), "a starting step waited on another run's open transaction"
        starting.dispose()
    engine.dispose()
    reader.dispose()


def test_a_column_null_in_every_row_reads_as_text_and_joins(warehouse_url: str) -> None:
    """A Whistl cancellation answer arriving while every cancellation in flight has no file name yet: the ledger's
    `file_name` is null in every row, and the join with the answers must find nothing, not fail the despatch run
    (seen live: `file_name: str` on the left did not match `file_name: null` on the right)."""
    from datetime import UTC, datetime

    import polars as pl

    from fulfil_assets import effects
    from fulfil_assets.despatch.intake import take_cancel_acks
    from fulfil_assets.warehouse_tables import ensure_tables

    db = WarehouseDb(warehouse_url)
    ensure_tables(db)
    intent = {"idempotency_key": "whistl:cancel:c:1", "order_key": "c:1", "order_ref": "SO-1", "wms": "whistl"}
    effects.intend(db, "cancellations", pl.DataFrame([{**intent, "payload": "[]"}]))
    with db.begin() as conn:  # a send going, its file not yet named
        conn.execute(sa.text(f"UPDATE {SCHEMA}.cancellations SET status = '{effects.SENDING}'"))
    in_flight = db.read(f"SELECT file_name FROM {SCHEMA}.cancellations")
    assert in_flight.schema["file_name"] == pl.String and in_flight["file_name"].to_list() == [None]
    acks = pl.DataFrame(
        {"file_name": ["can_2.csv"], "order_ref": ["SO-2"], "status": ["CANCELLED"], "detail": [""], "ack_file": ["a"]}
    )
    take_cancel_acks(db, acks, datetime.now(UTC))
    status = db.read(f"SELECT status FROM {SCHEMA}.cancellations")["status"].to_list()
    assert status == [effects.SENDING]
