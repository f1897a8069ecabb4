"""The warehouse's writes where two runs write at once: on PostgreSQL (a multi-writer warehouse) two runs replacing
one table at once both succeed, one after the other, leaving exactly one run's rows; a run that replaces an order's
lines while another sends that order keeps the lines the order's target holds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import polars as pl
import pytest
import sqlalchemy as sa

from fulfil_assets import effects
from fulfil_assets.validate.assets import _write_target_lines
from fulfil_assets.warehouse_tables import ensure_tables
from resources.warehouse import SCHEMA, WarehouseDb


@pytest.mark.postgres
def test_two_runs_replacing_one_table_at_once_both_succeed(postgres_url: str) -> None:
    db = WarehouseDb(postgres_url)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        conn.execute(sa.text(f"CREATE TABLE {SCHEMA}.order_totals (order_key TEXT PRIMARY KEY, run INT)"))
    errors: list[BaseException] = []

    def replace_again_and_again(run: int) -> None:
        frame = pl.DataFrame({"order_key": [f"O{i}" for i in range(200)], "run": [run] * 200})
        try:
            for _ in range(25):
                db.write("order_totals", frame, mode="replace")
        except BaseException as exc:  # reported below, with what it was
            errors.append(exc)

    threads = [threading.Thread(target=replace_again_and_again, args=(run,)) for run in (1, 2)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer is still waiting after two minutes"
        assert not errors, errors[0]
        rows = db.read(f"SELECT run, COUNT(*) AS n FROM {SCHEMA}.order_totals GROUP BY run")
        assert rows.height == 1 and rows["n"][0] == 200  # one run's rows, each once
    finally:
        db.dispose()


@pytest.mark.postgres
def test_an_order_sent_while_another_sync_writes_its_lines_keeps_the_lines_its_target_holds(postgres_url: str) -> None:
    """What `bench/live.py` met on PostgreSQL: a BigCommerce sync's validation checks a changed Shopify order and
    reads it unsent; before it writes the order's lines, Shopify's own sync sends it. The validation's write then
    succeeds (it failed on `wms_order_lines`' key) and leaves the lines the target was sent as they were."""
    db = WarehouseDb(postgres_url)
    ensure_tables(db)
    key, now = "shopify:1", datetime.now(UTC)
    db.execute(
        f"INSERT INTO {SCHEMA}.wms_submissions (idempotency_key, order_key, status, created_at, updated_at, wms, "
        f"order_ref) VALUES ('s1', '{key}', '{effects.PENDING}', '{now}', '{now}', 'linnworks', '#1001')"
    )
    held = pl.DataFrame(
        {
            "order_key": [key],
            "wms": ["linnworks"],
            "wms_line_no": [1],
            "source_line_no": [1],
            "sku": ["A"],
            "quantity": [1],
        }
    )
    db.write("wms_order_lines", held)
    now_lines = pl.DataFrame(  # changed since: one more unit, and a line added
        {"order_key": [key] * 2, "wms_line_no": [1, 2], "line_no": [1, 2], "wms_sku": ["A", "B"], "quantity": [2, 1]}
    )
    errors: list[BaseException] = []

    def validate() -> None:
        try:
            _write_target_lines(db, "linnworks", now_lines, [key])
        except BaseException as exc:  # reported below
            errors.append(exc)

    sender = db.engine.connect()
    try:
        with sender.begin():  # the other sync: holds the lines' write lock while it sends the order
            sender.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext('fulfil.write'), hashtext(:t))"),
                {"t": f"{SCHEMA}.wms_order_lines"},
            )
            sender.execute(sa.text(f"UPDATE {SCHEMA}.wms_submissions SET status = '{effects.SENT}'"))
            writer = threading.Thread(target=validate)
            writer.start()
            deadline = time.monotonic() + 60  # until the validation waits for the lock, having read the order unsent
            while not _waiting_for_an_advisory_lock(db) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert writer.is_alive() and not errors, errors
        writer.join(timeout=60)
        assert not errors, errors[0]
        at_target = db.read(
            f"SELECT order_key, wms, wms_line_no, source_line_no, sku, quantity FROM {SCHEMA}.wms_order_lines"
        )
        assert at_target.to_dicts() == held.to_dicts()  # what the target was sent, whole: not the later lines
        lines_now = db.read(f"SELECT quantity FROM {SCHEMA}.target_order_lines ORDER BY wms_line_no")
        assert lines_now["quantity"].to_list() == [2, 1]
    finally:
        sender.close()
        db.dispose()


def _waiting_for_an_advisory_lock(db: WarehouseDb) -> bool:
    """Whether some session waits for an advisory lock (the validation's write, for the sender's)."""
    return not db.read("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").is_empty()
