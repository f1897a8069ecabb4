"""The warehouse's writes where two runs write at once: on PostgreSQL (a multi-writer warehouse) two runs replacing
one table at once both succeed, one after the other, leaving exactly one run's rows."""

from __future__ import annotations

import threading

import polars as pl
import pytest
import sqlalchemy as sa

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
