"""Analysts never break a run: they query a copy of the embedded warehouse, published after the runs that change
it, and a run that meets a lock someone left on the warehouse file itself waits, then fails naming the cause."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from flow_helpers import emulator_config, run_job, set_faults

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

pytestmark = pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # PostgreSQL readers never block


@pytest.mark.world(n_orders=12)
def test_analysts_query_a_published_copy_while_runs_write(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    defs = build_definitions(emulator_config(emulators, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    sensor = defs.resolve_sensor_def("analyst_copy_sensor")
    assert not sensor(dg.build_sensor_context(instance=instance)).run_requests  # nothing has run yet
    run_job(defs, "order_sync_job", instance)
    tick = sensor(dg.build_sensor_context(instance=instance))
    assert len(tick.run_requests) == 1  # a run changed the warehouse: a copy is due
    assert not sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor)).run_requests
    run_job(defs, "analyst_copy_job", instance)
    copy = db.analyst_copy_path()
    assert copy is not None and copy.exists()
    orders = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.orders")["n"][0]
    analyst = duckdb.connect(str(copy), read_only=True)  # an analyst's session, left open
    assert analyst.execute(f"SELECT COUNT(*) FROM {SCHEMA}.orders").fetchone()[0] == orders > 0
    assert analyst.execute("SELECT COUNT(*) FROM raw_linnworks.open_orders").fetchone()[0] > 0  # every schema
    emulators.linnworks.control("spawn", {"n": 5})
    run_job(defs, "order_sync_job", instance)  # runs go on while the analyst holds the copy
    run_job(defs, "analyst_copy_job", instance)  # and the copy is replaced under the open session
    assert analyst.execute(f"SELECT COUNT(*) FROM {SCHEMA}.orders").fetchone()[0] == orders  # its own version
    analyst.close()
    fresh = duckdb.connect(str(copy), read_only=True)
    assert fresh.execute(f"SELECT COUNT(*) FROM {SCHEMA}.orders").fetchone()[0] == orders + 5
    fresh.close()
    # On PostgreSQL analysts query the warehouse itself: the sensor never asks for a copy run (each would start a
    # process to publish nothing), though runs that change the warehouse have succeeded since `tick`.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FULFIL_WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/fulfil")
        assert not sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor)).run_requests

    # Every snippet the docs give analysts runs as written, in this project's own environment, on a real copy.
    run_job(defs, "reconcile_job", instance)
    run_job(defs, "analyst_copy_job", instance)
    snippets = analyst_snippets()
    assert snippets, "the docs show analysts no query"
    for where, code in snippets:
        scope: dict[str, object] = {}
        exec(compile(code.replace(DOCUMENTED_COPY, str(copy)), where, "exec"), scope)
        if "money" in scope:  # the finance figures arrive as exact decimals, not floats
            assert scope["money"] and all(isinstance(row[2], Decimal) for row in scope["money"]), where


DOCUMENTED_COPY = "data/warehouse.analysts.duckdb"


def analyst_snippets() -> list[tuple[str, str]]:
    """Every Python block in the README and docs/ that opens the analysts' copy, with where it is."""
    repo = Path(__file__).resolve().parents[1]
    found = []
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for n, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)):
            if DOCUMENTED_COPY in block:
                found.append((f"{doc.name} python block {n + 1}", block))
    return found


@pytest.mark.parametrize("job", ["analyst_copy_job", "order_sync_job"])  # a copy; the sync, dlt ingest first
def test_a_run_meeting_a_lock_on_the_warehouse_waits_then_names_the_cause(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job: str
) -> None:
    monkeypatch.setenv("FULFIL_LOCK_WAIT_S", "2")
    defs = build_definitions(emulator_config(emulators, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    path = fulfil_env["FULFIL_WAREHOUSE_URL"].removeprefix("duckdb:///")
    WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"]).execute("SELECT 1")  # the file exists
    # An analyst's read-only session on the file runs write, in another process.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({path!r}, read_only=True); print('ok', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        started = time.monotonic()
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert not result.success and waited >= 2
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "stayed locked for 2 s" in message and f"PID {holder.pid}" in message
    run_job(defs, job, instance)  # once the session is closed, the run goes through


@pytest.mark.world(n_orders=12)
def test_a_session_taking_the_file_as_dlt_loads_makes_the_load_wait_then_go_on(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """The race the wait before dlt cannot close: the file is free when the source run starts and is taken
    while dlt reads the order system (each Linnworks answer slowed here), so dlt's own load meets the lock."""
    defs = build_definitions(emulator_config(emulators, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    path = fulfil_env["FULFIL_WAREHOUSE_URL"].removeprefix("duckdb:///")
    set_faults(emulators, "linnworks", latency_ms=700)
    holder: list[subprocess.Popen] = []
    met_lock = threading.Event()

    def take_the_file_mid_read() -> None:
        calls = emulators.linnworks.recorder.calls
        until(lambda: any(c.path.endswith("Orders/GetOpenOrders") for c in calls))  # dlt is reading Linnworks
        holder.append(
            subprocess.Popen(
                [sys.executable, "-c", _HOLD.format(path=path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        assert holder[0].stdout is not None and holder[0].stdout.readline().strip() == "held"
        until(lambda: any("took the warehouse file" in (e.message or "") for e in _logs(instance)))
        met_lock.set()
        holder[0].communicate("")  # the analyst closes the session

    analyst = threading.Thread(target=take_the_file_mid_read, daemon=True)
    analyst.start()
    graph = defs.resolve_asset_graph()
    raw = [k for k in graph.get_all_asset_keys() if k.path[0] == "raw_linnworks"]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, asset_selection=raw)
    analyst.join(timeout=60)
    assert result.success and met_lock.is_set()
    warning = next(e.message for e in _logs(instance) if "took the warehouse file" in (e.message or ""))
    assert f"PID {holder[0].pid}" in warning and "dlt's load step" in warning
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    loaded = db.read("SELECT COUNT(*) AS n, COUNT(DISTINCT order_id) AS d FROM raw_linnworks.open_orders").row(0)
    assert loaded == (len(emulators.linnworks.orders), len(emulators.linnworks.orders))  # each order once


_HOLD = (
    "import duckdb, sys, time\n"
    "while True:\n"
    "    try:\n"
    "        c = duckdb.connect({path!r}, read_only=True)\n"
    "        break\n"
    "    except duckdb.IOException:\n"
    "        time.sleep(0.05)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def _logs(instance: dg.DagsterInstance) -> list:
    runs = instance.get_runs(limit=1)
    return list(instance.all_logs(runs[0].run_id)) if runs else []


def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
