"""`deploy/postgres/dagster.yaml` as a team that outgrew one machine runs it: Dagster's runs, events and schedules
in PostgreSQL, the warehouse in PostgreSQL, and `dagster-daemon` doing the work: the order sync schedule fires and
sends orders to Whistl, Whistl's despatch files are picked up by the despatch sensor, and tracking reaches
Linnworks, each run's steps in its own process (the default), or on two Celery workers (`FULFIL_EXECUTOR=celery`,
RabbitMQ on this machine); either way, counted at the emulators, no order reaches Whistl twice and no parcel's
tracking twice."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from conftest import REQUIRE_PG, _postgres_url, deployment_env
from flow_helpers import emulator_config

from emulators.server import Emulators
from fulfil_assets.processes import descendants, start_celery_worker, start_daemon, stop_process_tree
from fulfil_assets.warehouse_tables import ensure_tables
from resources.warehouse import WarehouseDb

ROOT = Path(__file__).resolve().parent.parent
BROKER = "amqp://guest:guest@127.0.0.1:5672//"  # this machine's RabbitMQ (.ci/run starts it)


def require_broker() -> None:
    """RabbitMQ must answer for the Celery deployment: skip saying so on a laptop without it; CI (which starts it)
    fails instead."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    except OSError as exc:
        if REQUIRE_PG:
            pytest.fail(f"RabbitMQ is required (FULFIL_REQUIRE_POSTGRES=1) but unreachable at 127.0.0.1:5672: {exc}")
        pytest.skip("RabbitMQ not reachable at 127.0.0.1:5672 (`rabbitmq-server -detached`); CI makes this fail")


def _wait(
    what: str, done: Callable[[], bool], log: Path, instance: dg.DagsterInstance, timeout_s: float = 240.0
) -> None:
    """Wait for `done`; on a timeout, fail naming every run the daemon made (job, status, times) and the log's end."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            runs = "\n".join(
                f"{r.dagster_run.job_name} {r.dagster_run.status.value} created {r.create_timestamp:%H:%M:%S}"
                f" started {r.start_time} ended {r.end_time}"
                for r in instance.get_run_records()
            )
            pytest.fail(
                f"{what} did not happen in {timeout_s:.0f} s; runs:\n{runs}\ndaemon log:\n{log.read_text()[-3000:]}"
            )
        time.sleep(1.0)


@pytest.mark.long
@pytest.mark.postgres
@pytest.mark.timeout(600)  # its own waits (a minute boundary, the sensor, tracking) say what did not happen
@pytest.mark.parametrize("executor", ["in_process", "celery"])
def test_the_daemon_on_postgresql_syncs_orders_and_takes_despatch_files(
    emulators: Emulators, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    deployment_env(monkeypatch, tmp_path, emu, postgres_url)
    storage = _postgres_url()
    dagster_url = sa.make_url(next(storage)).set(drivername="postgresql+psycopg2")
    config = emulator_config(
        emu, tmp_path, schedules={"order_sync_minutes": 1, "despatch_poll_seconds": 5, "despatch_settle_seconds": 0}
    )
    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_url.render_as_string(hide_password=False),
        "FULFIL_CONFIG": str(config_file),
        "FULFIL_EXECUTOR": executor,
    }
    log = tmp_path / "daemon.log"
    workers = []
    if executor == "celery":
        require_broker()
        env |= {"CELERY_BROKER_URL": BROKER, "FULFIL_CELERY_QUEUE": f"fulfil-test-{uuid.uuid4().hex[:8]}"}
        workers = [
            start_celery_worker(env, tmp_path / f"worker{i}.log", ROOT, f"w{i}", env["FULFIL_CELERY_QUEUE"])
            for i in (1, 2)
        ]
    daemon = start_daemon(env, log, ROOT)
    try:
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", env["DAGSTER_POSTGRES_URL"])
        instance = dg.DagsterInstance.get()
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"

        def succeeded(job: str) -> list[dg.DagsterRun]:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]))
            return list(runs)

        _wait("an order sync from the schedule", lambda: bool(succeeded("linnworks_order_sync_job")), log, instance)
        for _ in range(4):  # the warehouse takes the orders in and despatches them
            emu.whistl.step()
        shipped = {r["order_reference"] for r in emu.whistl.inspect()["despatch_rows"]}
        assert shipped
        _wait("a despatch run from the sensor", lambda: bool(succeeded("despatch_job")), log, instance)
        _wait(
            "tracking at Linnworks",
            lambda: len([v for v in emu.linnworks.inspect()["shipping_info"].values() if v]) >= len(shipped),
            log,
            instance,
        )
        sync = succeeded("linnworks_order_sync_job")[-1]
        assert sync.tags.get("dagster/schedule_name") == "linnworks_order_sync_schedule"
        despatch = succeeded("despatch_job")[-1]
        assert despatch.tags.get("dagster/sensor_name") == "despatch_file_sensor"
        syncs = sorted(
            (r.start_time, r.end_time or time.time())
            for r in instance.get_run_records(dg.RunsFilter(job_name="linnworks_order_sync_job"))
            if r.start_time is not None
        )
        overlaps = [(a, b) for a, b in itertools.pairwise(syncs) if b[0] < a[1]]
        assert not overlaps, f"a scheduled order sync started before the last one ended: {overlaps}"
        steps = [e for e in instance.all_logs(sync.run_id) if e.dagster_event_type == dg.DagsterEventType.STEP_START]
        step_pids = {e.dagster_event.pid for e in steps}
        if executor == "in_process":
            assert len(step_pids) == 1, f"the run's steps went in {len(step_pids)} processes, not the run's own"
        else:
            assert len(step_pids) > 1, "on Celery each step runs in a worker's process"
        if workers:
            on_workers = {pid for w in workers for pid in descendants(w.pid)}
            assert step_pids <= on_workers, f"steps ran outside the Celery workers: {step_pids - on_workers}"
        # Nothing went twice, counted at the emulators: each order received once, each parcel's tracking once.
        whistl = emu.whistl.inspect()
        assert whistl["receipts"] and set(whistl["receipts"].values()) == {1}, whistl["receipts"]
        posted = emu.linnworks.inspect()["shipping_info"]
        assert all(len(v) == len({i["TrackingNumber"] for i in v}) for v in posted.values()), posted
    finally:
        for proc in [daemon, *workers]:
            stop_process_tree(proc)
        next(storage, None)


@pytest.mark.postgres
def test_runs_starting_at_once_on_a_new_database_create_the_tables_once() -> None:
    """Runs started together by the daemon each create fulfil's schema on first contact: none may fail."""
    for _ in range(3):
        storage = _postgres_url()
        url = next(storage)
        dbs = [WarehouseDb(url) for _ in range(6)]
        start = threading.Barrier(len(dbs))

        def create(db: WarehouseDb, start: threading.Barrier = start) -> None:
            start.wait()
            ensure_tables(db)

        try:
            with ThreadPoolExecutor(len(dbs)) as pool:
                list(pool.map(create, dbs))  # re-raises the first failure
            assert dbs[0].table_exists("wms_submissions")
        finally:
            for db in dbs:
                db.dispose()
            next(storage, None)
