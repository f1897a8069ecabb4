"""What the flow tests share: fulfil.yaml for the emulators, running jobs and sensor ticks, what Linnworks got."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from emulators.linnworks import PEOPLEVOX_LOCATION
from emulators.server import Emulators
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

REPO = Path(__file__).resolve().parent.parent


def emulator_config(emu: Emulators, tmp_path: Path, **extra: Any) -> FulfilConfig:
    """fulfil.yaml as it would read for these emulators (`extra` top-level keys merged in)."""
    systems = extra.pop("systems", {})
    return FulfilConfig.model_validate(
        {
            "flows": ["linnworks_whistl"],
            "schedules": {"despatch_settle_seconds": 0},  # the emulator writes whole files (temporary name + rename)
            **extra,
            "systems": {
                **systems,
                "linnworks": {"base_url": emu.url("linnworks"), **systems.get("linnworks", {})},
                "whistl": {
                    "drop_url": f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/",
                    "host_key": emu.sftp_host_key,
                    "ack_grace_minutes": 0,
                    **systems.get("whistl", {}),
                },
            },
        }
    )


def whistl_world(
    emu: Emulators, tmp_path: Path, fulfil_env: dict[str, str]
) -> tuple[dg.Definitions, dg.DagsterInstance, WarehouseDb]:
    """Whistl publishes its stock (so its catalogue); fulfil's definitions for the emulators, a fresh instance and
    the warehouse: what a flow test on the Whistl flows starts from."""
    emu.whistl.snapshot()
    defs = build_definitions(emulator_config(emu, tmp_path))
    return defs, dg.DagsterInstance.ephemeral(), WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])


def world_expectations(emu: Emulators, tmp_path: Path, ops: tuple[str, ...] = ("validation",)) -> dict[str, Any]:
    """Run config pointing `ops` (validation; a flow's stock op, `<flow>_stock`) at a copy of `expectations/`
    whose `bundles.csv` is this world's own bundles (the office's table for the brand under test; the shipped one
    is the demo world's), so that a test on a smaller world has bundles as that world made them."""
    folder = tmp_path / "world_expectations"
    shutil.copytree(REPO / "expectations", folder, dirs_exist_ok=True)
    rows = [(p.sku, sku, n) for p in emu.world.products for sku, n in p.components]
    with (folder / "bundles.csv").open("w", newline="") as out:
        csv.writer(out).writerows([("bundle_sku", "component_sku", "quantity"), *rows])
    return {"ops": {op: {"config": {"expectations_dir": str(folder)}} for op in ops}}


def planted_reasons(truth: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per order the world spoiled and did not cancel (rows of `Emulators.timeline()["orders"]`), the reason codes
    it planted: what fulfil must hold it for."""
    return {o["order_ref"]: set(o["faults"]) for o in truth if o["faults"] and not o["cancelled"]}


def open_reasons(db: WarehouseDb) -> dict[str, set[str]]:
    """Per order reference, the reason codes of fulfil's open exceptions on it."""
    rows = db.read(
        f"SELECT o.order_ref, e.reason_code FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE e.resolved_at IS NULL"
    )
    held: dict[str, set[str]] = {}
    for ref, code in rows.iter_rows():
        held.setdefault(ref, set()).add(code)
    return held


ALL_FLOWS = ["linnworks_whistl", "cin7_whistl", "bigcommerce_whistl", "linnworks_peoplevox", "shopify_linnworks"]


def all_flows_config(emu: Emulators, tmp_path: Path, **extra: Any) -> FulfilConfig:
    """fulfil.yaml with every flow (or `flows`) against these emulators: with both Linnworks flows, Linnworks
    orders at the Peoplevox location go to Peoplevox and the rest to Whistl (`extra` top-level keys merged in)."""
    flows = extra.pop("flows", ALL_FLOWS)
    both = {"linnworks_whistl", "linnworks_peoplevox"} <= set(flows)
    return emulator_config(
        emu,
        tmp_path,
        flows=flows,
        routes={"linnworks_peoplevox": {"locations": [PEOPLEVOX_LOCATION]}} if both else {},
        systems={
            "cin7": {"base_url": emu.url("cin7"), "budget_share": 1.0},
            "shopify": {"base_url": emu.url("shopify"), "budget_share": 1.0},
            "bigcommerce": {"base_url": emu.url("bigcommerce"), "budget_share": 1.0},
            "peoplevox": {"base_url": emu.url("peoplevox")},
            **extra.pop("systems", {}),
        },
        **extra,
    )


def run_job(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(name).execute_in_process(instance=instance, run_config=run_config or {})
    assert result.success
    return result


def queue_run(instance: dg.DagsterInstance, job_name: str, minutes_ago: float) -> dg.DagsterRun:
    """A run of `job_name` from the code location, put in the run queue `minutes_ago`: what the queued run
    coordinator does on submit (a queued run must name its code origin), with the enqueue event's time set back."""
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin("fulfil_assets.definitions"),
            repository_name="__repository__",
        ),
        job_name=job_name,
    )
    run = instance.add_run(
        dg.DagsterRun(
            job_name=job_name,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.NOT_STARTED,
            remote_job_origin=origin,
        )
    )
    instance.report_dagster_event(
        dg.DagsterEvent.job_enqueue(run), run.run_id, timestamp=time.time() - minutes_ago * 60
    )
    queued = instance.get_run_by_id(run.run_id)
    assert queued is not None and queued.status == dg.DagsterRunStatus.QUEUED
    return queued


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("despatch_file_sensor")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"whistl_drop": defs.resources["whistl_drop"], "warehouse": defs.resources["warehouse"]},
    )
    return sensor(context)


def drain_despatches(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None,
    *,
    files_only: bool = False,
    require_success: bool = True,
) -> tuple[int, str | None]:
    """One sensor tick and the despatch runs it asks for, which post the tracking of what they took in
    (`files_only`: take the files in, post nothing)."""
    result = tick_sensor(defs, instance, cursor)
    job = defs.resolve_job_def("despatch_job")
    only_files = [dg.AssetKey("despatches")] if files_only else None
    for request in result.run_requests or []:
        run = job.execute_in_process(
            instance=instance, run_config=request.run_config, raise_on_error=False, asset_selection=only_files
        )
        assert run.success or not require_success
    return len(result.run_requests or []), result.cursor


def tracking_calls(emu: Emulators) -> list[dict]:
    return [
        c.body
        for c in emu.linnworks.recorder.calls
        if c.path.endswith("Orders/SetOrderShippingInfo") and c.status == 200
    ]


def set_faults(emu: Emulators, system: str, **values: object) -> None:
    httpx.post(f"http://127.0.0.1:{emu.ports[system]}/_emulator/faults", json=values).raise_for_status()


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL a CLI run and every process it started (a step may run in a process of its own)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Drill:
    """Launches real `dagster` CLI runs of the code location against one warehouse and the emulators."""

    def __init__(self, tmp_path: Path, config_file: Path) -> None:
        self.tmp_path, self.config_file, self.n = tmp_path, config_file, 0

    def env(self) -> dict[str, str]:
        """The environment of one more CLI run: this deployment's fulfil.yaml and a Dagster instance of its own."""
        self.n += 1
        home = self.tmp_path / f"dagster_home_{self.n}"
        home.mkdir()
        return {**os.environ, "FULFIL_CONFIG": str(self.config_file), "DAGSTER_HOME": str(home)}

    def command(self, job: str, run_config: dict | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "fulfil_assets.definitions", "-j", job]
        if run_config:
            path = self.tmp_path / f"run_config_{self.n}.yaml"
            path.write_text(yaml.safe_dump(run_config))
            cmd += ["-c", str(path)]
        return cmd

    def kill_at(self, job: str, step: str, run_config: dict | None = None, attempts: int = 1) -> bool:
        """Start runs until one is SIGKILLed the moment `step` starts (under faults a run can fail before it gets
        there); whether a kill landed within `attempts` runs."""
        for _ in range(attempts):
            proc = subprocess.Popen(
                self.command(job, run_config),
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                if f'Started execution of step "{step}"' in line:
                    kill_run(proc)
                    return True
            proc.wait()
        return False

    def kill_when(self, select: str, applied: Callable[[], bool], timeout_s: float = 120.0) -> bool:
        """Materialise `select` from the CLI and SIGKILL the run the moment `applied()` turns true (a target has
        taken part of what the run sends); whether the kill happened before the run ended."""
        cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "fulfil_assets.definitions"]
        proc = subprocess.Popen([*cmd, "--select", select], env=self.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if applied():
                kill_run(proc)
                return True
            time.sleep(0.005)
        proc.wait()
        return False

    def twice_at_once(self, asset: str) -> None:
        """The same sending asset materialised twice at the same moment from the CLI, each run with its own Dagster
        instance (no queue between them, as with a raised run limit). Both must succeed."""
        start = threading.Barrier(2)
        done: list[subprocess.CompletedProcess[str]] = []
        cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "fulfil_assets.definitions"]

        def launch() -> None:
            env = self.env()
            start.wait()
            done.append(subprocess.run([*cmd, "--select", asset], env=env, capture_output=True, text=True))

        threads = [threading.Thread(target=launch) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert [r.returncode for r in done] == [0, 0], [r.stderr[-3000:] for r in done]


def declared_layout(system: str) -> dict[str, dict[str, str]]:
    """`{table: {column: dlt type}}` the system's dlt source declares, dlt's own columns included."""
    from fulfil_assets.ingest.assets import SOURCES

    schema = SOURCES[system]().schema
    return {t["name"]: {c: col["data_type"] for c, col in t["columns"].items()} for t in schema.data_tables()}


# information_schema's type names on DuckDB and PostgreSQL, as dlt data types
_DLT_TYPES = {
    "varchar": "text",
    "character varying": "text",
    "bigint": "bigint",
    "double": "double",
    "double precision": "double",
    "boolean": "bool",
    "timestamp with time zone": "timestamp",
    "json": "json",
    "jsonb": "json",
}


def raw_layout(db: Any, system: str) -> dict[str, dict[str, str]]:
    """`{table: {column: dlt type}}` of the warehouse's `raw_<system>` tables (dlt's bookkeeping tables left out)."""
    rows = db.read(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = 'raw_{system}' AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\'"
    )
    layout: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows.iter_rows():
        layout.setdefault(table, {})[column] = _DLT_TYPES.get(data_type.lower(), data_type)
    return layout


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def dlt_warnings_during(run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """`run()`'s result and the warnings dlt logged meanwhile (dlt's logger does not propagate)."""
    records = _Records()
    logger = logging.getLogger("dlt")
    logger.addHandler(records)
    try:
        return run(), records.messages
    finally:
        logger.removeHandler(records)
