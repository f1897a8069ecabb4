"""The `fulfil` command: `fulfil demo` runs the emulators and the Dagster UI (or one headless pass)."""

import _thread
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

    from emulators.server import Emulators

REPO = Path(__file__).resolve().parent.parent


def serve_data_docs(root: Path, port: int) -> tuple[ThreadingHTTPServer, str]:
    """Serve the Great Expectations Data Docs folder on loopback (in a thread), so that the UI's links to them
    open over http; returns the server and its base URL (what `FULFIL_DATA_DOCS_URL` is set to)."""
    root.mkdir(parents=True, exist_ok=True)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _demo_env(data_dir: Path) -> dict[str, str]:
    """The environment a demo runs in: emulator logins (not secrets) unless set, the warehouse, DAGSTER_HOME."""
    from emulators.server import EmulatorConfig

    defaults = EmulatorConfig(data_dir=data_dir)
    env = {
        "LINNWORKS_APPLICATION_ID": "lw-app-id",
        "LINNWORKS_APPLICATION_SECRET": "lw-app-secret",
        "LINNWORKS_TOKEN": "lw-install-token",
        "WHISTL_SFTP_PASSWORD": defaults.sftp_password,
        "CIN7_ACCOUNT_ID": "cin7-account",
        "CIN7_APPLICATION_KEY": "cin7-key",
        "SHOPIFY_ACCESS_TOKEN": "shpat_emulator",
        "BIGCOMMERCE_ACCESS_TOKEN": "bc-token",
        "PEOPLEVOX_CLIENT_ID": "brand01",
        "PEOPLEVOX_USERNAME": "integration",
        "PEOPLEVOX_PASSWORD": "pvx-password",
        "FULFIL_WAREHOUSE_URL": f"duckdb:///{data_dir / 'warehouse.duckdb'}",
        "FULFIL_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    return {k: os.environ.get(k, v) for k, v in env.items()}


DEMO_WAREHOUSE = Path("data/demo/warehouse.duckdb")  # `fulfil demo`'s default --data-dir
DEMO_STATE = ("warehouse.duckdb", "warehouse.analysts.duckdb", "dagster_home", "dlt", "emulators", "gx_docs")
DEMO_STATE += ("peoplevox_events",)


def demo(args: argparse.Namespace) -> int:
    """Start the emulators with the seeded world, then `dagster dev` on them (or one headless pass). The
    emulators start a new world each time, so an earlier demo's warehouse is never mixed with it: `--reset`
    clears the demo folder first, and without it a folder holding an earlier demo is refused."""
    from emulators.server import EmulatorConfig, Emulators, PortBusy

    data_dir = Path(args.data_dir).resolve()
    earlier = [name for name in DEMO_STATE if (data_dir / name).exists()]
    if earlier and not args.reset:
        print(
            f"fulfil demo: {data_dir} holds an earlier demo ({', '.join(earlier)}); the emulators start a new world "
            "each time and the two would disagree: run with --reset to start both afresh, or give another --data-dir",
            file=sys.stderr,
        )
        return 2
    for name in earlier:
        target = data_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    env = _demo_env(data_dir)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    try:
        emulators = Emulators(
            EmulatorConfig(data_dir=data_dir / "emulators", tick_s=args.tick, n_orders=args.orders)
        ).start()
    except PortBusy as exc:
        for name in DEMO_STATE:  # what this attempt made: the next start must not take it for an earlier demo
            made = data_dir / name
            shutil.rmtree(made, ignore_errors=True) if made.is_dir() else made.unlink(missing_ok=True)
        print(f"fulfil demo: {exc}: stop it (an earlier demo still running?) and try again", file=sys.stderr)
        return 2
    os.environ.update(env)  # only once the demo starts: a refused start leaves the caller's environment as it was
    print(f"fulfil demo: the warehouse is {data_dir / 'warehouse.duckdb'} (analysts: warehouse.analysts.duckdb)",
          file=sys.stderr)  # fmt: skip
    emulators.linnworks.peoplevox_share = 0.3  # Linnworks fulfils these from Peoplevox (routes in fulfil.yaml)
    emulators.whistl.snapshot()
    print("emulators listening:", file=sys.stderr)
    for name, info in emulators.describe().items():
        print(f"  {name:12s} {info.get('url') or info.get('sftp')}", file=sys.stderr)
    try:
        if args.headless:
            return _headless_pass(emulators, args.json)
        _server, env["FULFIL_DATA_DOCS_URL"] = serve_data_docs(data_dir / "gx_docs", args.port + 1)
        print(f"Data Docs: {env['FULFIL_DATA_DOCS_URL']}", file=sys.stderr)
        print(f"Dagster UI: http://127.0.0.1:{args.port}  (Ctrl-C stops everything)", file=sys.stderr)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
                "--log-level",  # the daemon's tick and queue chatter stays out of the terminal (the UI has it)
                "warning",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=None if args.verbose else subprocess.PIPE,
            stderr=None if args.verbose else subprocess.STDOUT,
            text=True,
        )
        try:
            if proc.stdout is not None:
                for line in proc.stdout:
                    if worth_printing(line):
                        sys.stderr.write(line)
            return proc.wait()
        except KeyboardInterrupt:
            stopped_at = time.time()
            proc.terminate()
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:  # dagster dev still winding down its daemon and runs: end it
                proc.kill()
                code = proc.wait()
            # Read once everything has stopped: a run's own process records its end as the signal reaches it, and
            # the daemon may launch a queued run while it winds down, which then fails too.
            in_flight = runs_in_flight(home, since=stopped_at - 1.0)
            print(
                "fulfil demo: stopped"
                + (
                    f"; {len(in_flight)} run(s) were in flight or starting and show as failed in the UI "
                    f"({', '.join(in_flight)}): "
                    "nothing is lost, the next start settles what they were sending"
                    if in_flight
                    else "; no run was in flight"
                ),
                file=sys.stderr,
            )
            return code
    finally:
        emulators.stop()


def runs_in_flight(home: Path, since: float) -> list[str]:
    """`job (run id)` of each run the Dagster instance at `home` has started and not finished, or that failed from
    `since` on: a Ctrl-C in the terminal reaches the runs' processes too, and they record their end."""
    import dagster as dg

    cut = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING, *cut])
            )
    except Exception as exc:  # stopping must not fail on a report
        return [f"(could not read the run list: {exc})"]
    return [
        f"{r.dagster_run.job_name} ({r.dagster_run.run_id[:8]})"
        for r in records
        if r.dagster_run.status not in cut or (r.end_time or 0.0) >= since
    ]


# Dagster events a person watching the demo wants (everything else DEBUG stays in the UI's run logs).
WORTH_PRINTING = ("RUN_START", "RUN_SUCCESS", "RUN_FAILURE", "STEP_FAILURE", "ASSET_CHECK_EVALUATION")


def worth_printing(line: str) -> bool:
    """Whether a line of `dagster dev`'s output is for the terminal: anything but DEBUG, and of the DEBUG event
    lines only runs starting and ending, failed steps and red checks (7,482 lines in 47 minutes otherwise)."""
    if "SupersessionWarning" in line or line.strip().startswith("warnings.warn("):
        return False  # `dagster dev` says it is superseded by `dg dev`: not for the person watching
    if " - DEBUG - " not in line:
        return True
    if "ASSET_CHECK_EVALUATION" in line:
        return "passed" not in line.rsplit("ASSET_CHECK_EVALUATION", 1)[1]
    return any(f" - {event} - " in line for event in WORTH_PRINTING)


# The headless pass's runs log WARNING and above to the terminal; everything is in each run's log in the UI.
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _headless_pass(emulators: "Emulators", as_json: bool) -> int:
    """Sync orders, let the warehouse work, take its files in and post tracking: one whole loop, printed (as
    JSON per flow with `--json`). The first SIGTERM or Ctrl-C ends the run in progress as interrupted and the pass
    with it: no later run starts."""
    import dagster as dg

    from fulfil_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    stop = StopSignal()

    def run(name: str) -> bool:
        """One run, its DEBUG event stream kept in the run's logs, one line here."""
        if stop.name:  # a signal Dagster or dlt took while the last run ended: no later run starts
            raise PassStopped(name, stop.name, started=False)
        started = time.monotonic()
        try:
            with stop.interrupting():
                result = defs.resolve_job_def(name).execute_in_process(
                    instance=instance, run_config=QUIET_RUN, raise_on_error=False
                )
        except KeyboardInterrupt:  # between steps, outside Dagster's own handling
            raise PassStopped(name, stop.wait_name()) from None
        if interrupted(result) or stop.name:
            raise PassStopped(name, stop.wait_name())
        outcome = "succeeded" if result.success else "FAILED (see its run log in the UI)"
        print(f"{name}: {outcome} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return result.success

    try:
        with stop:
            return _pass(emulators, as_json, run, jobs)
    except PassStopped as exc:
        during = "during" if exc.started else "before"
        print(
            f"fulfil demo: {exc.signal} stopped the pass {during} {exc.job} (no later run was started)", file=sys.stderr
        )
        return 128 + getattr(signal, exc.signal).value
    except KeyboardInterrupt:
        name = stop.wait_name()
        print(f"fulfil demo: {name} stopped the pass between runs", file=sys.stderr)
        return 128 + getattr(signal, name).value


class StopSignal:
    """The first SIGTERM or SIGINT of a headless pass, seen whoever handles it. Dagster (SIGTERM becomes its SIGINT
    handler during a run) and dlt (which defers the first signal inside its steps, then drops it) replace the
    handlers, so the signal is read from the interpreter's wakeup fd, which every Python-level handler writes to.
    A run in progress is then interrupted twice more, a second apart (dlt lets the second of a signal through), so
    it ends as interrupted; never once the run is over."""

    REPEATS = 2

    def __init__(self) -> None:
        self.name: str | None = None
        self._seen = threading.Event()
        self._running = threading.Event()
        self._lock = threading.Lock()  # a re-interrupt is decided and made while a run cannot end
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def __enter__(self) -> "StopSignal":
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C, not death
        self._watcher = threading.Thread(target=self._watch, name="fulfil-stop-signal", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.clear()
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGTERM, self._previous_term)
        os.close(self._write)
        self._watcher.join(timeout=5.0)

    def wait_name(self) -> str:
        """The signal's name once the watcher has read it (it runs beside the handler that raised)."""
        self._seen.wait(1.0)
        return self.name or "SIGINT"

    @contextmanager
    def interrupting(self) -> Iterator[None]:
        """A run in progress: interrupted again after a stop signal. Once it ends, no interrupt is made: one
        decided before then lands here, inside the run's own handling."""
        self._running.set()
        try:
            yield
        finally:
            self._running.clear()
            with self._lock:
                pass

    def _watch(self) -> None:
        while data := os.read(self._read, 64):
            if self.name is not None:
                continue
            if signals := [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]:
                self.name = signal.Signals(signals[0]).name
                self._seen.set()
                for _ in range(self.REPEATS):
                    time.sleep(1.0)
                    with self._lock:
                        if self._running.is_set():
                            _thread.interrupt_main()
        os.close(self._read)


def interrupted(result: Any) -> bool:
    """Whether a run ended because the process was interrupted (Ctrl-C or a forwarded SIGTERM)."""
    return any(
        e.is_step_failure
        and e.step_failure_data.error is not None
        and e.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        for e in result.all_events
    )


class PassStopped(Exception):
    """A stop signal (Ctrl-C, SIGTERM) ended a headless pass during `job` (or before it started)."""

    def __init__(self, job: str, signal_name: str, started: bool = True) -> None:
        super().__init__(f"{signal_name} {'during' if started else 'before'} {job}")
        self.job, self.signal, self.started = job, signal_name, started


def _pass(emulators: "Emulators", as_json: bool, run: Any, jobs: set[str]) -> int:
    """The headless pass's runs, one after another (see `_headless_pass`)."""
    from emulators.report import flow_report
    from fulfil_assets.config import load_config
    from resources.warehouse import SCHEMA, WarehouseDb, warehouse_url

    ok = run("order_sync_job")
    for _ in range(5):
        emulators.whistl.step()
        time.sleep(0.1)
    ok &= run("despatch_job")
    if "peoplevox_despatch_job" in jobs:
        for ref, order in list(emulators.peoplevox.sales_orders.items()):  # the Peoplevox warehouse ships
            if order.get("Status") != "Cancelled":
                emulators.peoplevox.control("despatch", {"order": ref})
        ok &= run("peoplevox_despatch_job")
    if "tracking_job" in jobs:
        ok &= run("tracking_job")
    for flow in load_config().flows:  # what shipped leaves the storefronts (the sensor does this under dagster dev)
        ok &= run(f"{flow}_stock_job")
    ok &= run("reconcile_job")
    db = WarehouseDb(warehouse_url())
    if as_json:
        print(json.dumps(flow_report(emulators, db, list(load_config().flows)), indent=2, sort_keys=True))
    else:
        for table in ("orders", "order_exceptions", "wms_submissions", "despatches", "tracking_posts", "orders_stuck"):
            n = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.{table}")["n"][0]
            print(f"{table:18s} {n} rows")
    return 0 if ok else 1


def check_orders_command(args: argparse.Namespace) -> int:
    """Check a CSV of order lines: exit 0 all pass, 1 some held, 2 the file cannot be read."""
    from fulfil_assets.validate.check_csv import UnreadableFile, check_csv, summary, write_report

    try:
        result = check_csv(
            Path(args.file),
            args.wms,
            Path(args.service_map),
            Path(args.catalogue) if args.catalogue else None,
            args.system,
        )
    except UnreadableFile as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.report:
        write_report(result.failures, Path(args.report))
        print(f"report: {args.report} ({result.failures.height} rows)")
    return 1 if result.failures.height else 0


def peoplevox_callbacks_command(args: argparse.Namespace) -> int:
    """Listen for Peoplevox's despatch callbacks (fulfil.yaml's `peoplevox.callback_url`) and file each one."""
    from fulfil_assets.config import ConfigError, load_config
    from fulfil_assets.despatch.peoplevox_callbacks import inbox_dir, serve

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"fulfil: {exc}", file=sys.stderr)
        return 2
    pvx = config.systems.peoplevox
    if pvx is None or pvx.callback_url is None:
        print("fulfil: fulfil.yaml sets no peoplevox.callback_url: there is nothing to listen for", file=sys.stderr)
        return 2
    token = os.environ.get(pvx.credentials.callback_token, "")
    if not token:
        print(f"fulfil: set {pvx.credentials.callback_token} to the callbacks' shared secret", file=sys.stderr)
        return 2
    print(f"fulfil: filing Peoplevox callbacks to {pvx.callback_url} in {inbox_dir()}")
    serve(str(pvx.callback_url), token, inbox_dir())
    return 0


def trace_warehouse(url: str | None = None, fresh: bool = False) -> str | None:
    """The warehouse `fulfil trace` and `fulfil plan` read, read-only: PostgreSQL as `FULFIL_WAREHOUSE_URL` names
    it; a DuckDB warehouse through its analysts' copy where there is one (a run may hold the file itself), else the
    file (with `fresh`, the file first). With no `FULFIL_WAREHOUSE_URL`, whichever of the default warehouse and a
    demo's (`data/demo/`) changed last: a running demo's copy is refreshed every minute, so an old default file
    never hides it. None: no file exists (nothing is ever created)."""
    import sqlalchemy as sa

    if url and not url.startswith("duckdb"):
        return url
    found = []
    for path in [Path(str(sa.make_url(url).database))] if url else [Path("data/warehouse.duckdb"), DEMO_WAREHOUSE]:
        copy = path.with_name(f"{path.stem}.analysts.duckdb")
        existing = [c for c in ((path, copy) if fresh else (copy, path)) if c.is_file()]
        if existing:
            found.append(existing[0])
    if not found:
        return None
    newest = max(found, key=lambda f: f.stat().st_mtime)
    return f"duckdb:///{newest.resolve()}?access_mode=READ_ONLY"


def trace_command(args: argparse.Namespace) -> int:
    """Print one order's life across systems, oldest first, read from the warehouse (read-only)."""
    from fulfil_assets.reconcile.assets import order_events
    from resources.warehouse import WarehouseDb

    url = trace_warehouse(os.environ.get("FULFIL_WAREHOUSE_URL"))
    if url is None:
        print(
            "fulfil: no warehouse found (data/warehouse.duckdb, a demo's data/demo/warehouse.duckdb): set "
            "FULFIL_WAREHOUSE_URL to the one to read",
            file=sys.stderr,
        )
        return 2
    db = WarehouseDb(url)
    try:
        events = order_events(db, args.order_ref)
    finally:
        db.dispose()
    if events.is_empty():
        print(f"fulfil: no order {args.order_ref} in the warehouse (by reference or source order id)", file=sys.stderr)
        return 1
    for r in events.sort("order_key", "seq").iter_rows(named=True):
        at = r["happened_at"].strftime("%Y-%m-%d %H:%M:%S") if r["happened_at"] else "-"
        detail = f"  {r['detail']}" if r["detail"] else ""
        print(f"{at}  {r['order_ref']:<12} {r['system'] or '':<11} {r['event']}{detail}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    """Print what the next live run would send (read-only; nothing is sent)."""
    from fulfil_assets.plan import due_effects, holding, plan_text
    from resources.warehouse import WarehouseDb

    url = trace_warehouse(os.environ.get("FULFIL_WAREHOUSE_URL"), fresh=True)  # the ledgers as they are now
    if url is None:
        print("fulfil: no warehouse found: set FULFIL_WAREHOUSE_URL to the one to read", file=sys.stderr)
        return 2
    db = WarehouseDb(url)
    try:
        due, held = due_effects(db, args.flow), holding(db)
    except Exception as exc:  # a run holds the DuckDB file this moment: read the analysts' copy, saying how old
        copy = trace_warehouse(os.environ.get("FULFIL_WAREHOUSE_URL"))
        if copy is None or copy == url or "duckdb" not in url:
            raise
        path = Path(copy.removeprefix("duckdb:///").split("?")[0])
        age = time.time() - path.stat().st_mtime
        print(f"fulfil: the warehouse is busy ({type(exc).__name__}); planning from the analysts' copy, "
              f"{age:.0f} s old", file=sys.stderr)  # fmt: skip
        db.dispose()
        db = WarehouseDb(copy)
        due, held = due_effects(db, args.flow), holding(db)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps({"due": due.to_dicts(), "held": held.to_dicts()}, indent=2, default=str))
    else:
        print(plan_text(due, held), end="")
    return 0


def _run_job(command: str, job: "dg.JobDefinition", run_config: dict) -> "dg.ExecuteInProcessResult | None":
    """Run `job` in this process on the instance at DAGSTER_HOME (so it shows in the UI), or an ephemeral one;
    a failed run prints each failed step's own error and returns None."""
    import dagster as dg

    with dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    if result.success:
        return result
    for event in (e for e in result.all_events if e.is_step_failure):
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:  # Dagster's wrapper, then what went wrong
            error = error.cause
        message = error.message.strip() if error else "no error given"
        print(f"fulfil {command}: {event.step_key} failed: {message}", file=sys.stderr)
    return None


def replay_command(args: argparse.Namespace) -> int:
    """Stage the raw tables, validate with today's rules and record what the orders placed between --from and
    --to are due, calling no system; prints per flow what was released and what is still held."""
    from fulfil_assets.audit.replay import parse_moment
    from fulfil_assets.config import load_config
    from fulfil_assets.definitions import build_definitions

    try:
        start, end = parse_moment(args.start), parse_moment(args.end)
    except ValueError as exc:
        print(f"fulfil replay: --from and --to take ISO dates or date-times: {exc}", file=sys.stderr)
        return 2
    if start >= end:
        print(f"fulfil replay: --from ({start:%Y-%m-%d %H:%M}) must be before --to ({end:%Y-%m-%d %H:%M})",
              file=sys.stderr)  # fmt: skip
        return 2
    job = build_definitions(load_config()).resolve_job_def("replay_job")
    window = {"start": start.isoformat(), "end": end.isoformat(), "flow": args.flow or ""}
    replay = {**window, "expectations_dir": args.expectations}
    result = _run_job("replay", job, {**QUIET_RUN, "ops": {"replayed_orders": {"config": replay}}})
    if result is None:
        return 1
    per_flow = result.asset_materializations_for_node("replayed_orders")[0].metadata["per_flow"].value
    if args.json:
        print(json.dumps({"from": window["start"], "to": window["end"], "per_flow": per_flow}, indent=2))
        return 0
    print(f"replayed orders placed {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (released: due at the next "
          "push run, or recorded as shadow for a flow in shadow mode):")  # fmt: skip
    for row in per_flow:
        print(
            f"  {row['flow']}: {row['orders_in_window']} open orders, {row['released']} released, "
            f"{row['already_recorded']} already recorded, {row['still_held']} still held"
        )
    return 0


def audit_command(args: argparse.Namespace) -> int:
    """Read every system in fulfil.yaml, stage what was read and write the audit report, with every flow in shadow
    mode for the run: nothing is sent and no file is moved."""
    from fulfil_assets.audit.assets import audit_folder
    from fulfil_assets.config import load_config
    from fulfil_assets.definitions import build_definitions

    config = load_config()
    shadow = config.model_copy(update={"modes": dict.fromkeys(config.flows, "shadow")})
    job = build_definitions(shadow).resolve_job_def("audit_job")
    audit = {"days": args.days, "stale_days": args.stale_days, "expectations_dir": args.expectations}
    run_config = {**QUIET_RUN, "ops": {"audit_report": {"config": audit}}}
    if _run_job("audit", job, run_config) is None:
        return 1
    folder = audit_folder()
    if args.json:
        print((folder / "audit.json").read_text())
    else:
        print(f"fulfil audit: {folder / 'audit.html'} (and audit.json beside it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fulfil` command."""
    from fulfil_assets.validate.suites import EXPECTATIONS_DIR

    parser = argparse.ArgumentParser(prog="fulfil", description="Keep order systems and warehouses in step.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="emulators + Dagster UI on the seeded world")
    p.add_argument("--data-dir", default=str(DEMO_WAREHOUSE.parent))
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--tick", type=float, default=10.0, help="seconds between new orders / warehouse shifts")
    p.add_argument("--orders", type=int, default=300, help="open orders per OMS at start")
    p.add_argument("--headless", action="store_true", help="run one pass of the flow without the UI and exit")
    p.add_argument("--json", action="store_true", help="with --headless: print per flow what each target holds")
    p.add_argument("--reset", action="store_true", help="clear an earlier demo in --data-dir first")
    p.add_argument("--verbose", action="store_true", help="print every Dagster event, DEBUG included")
    p.set_defaults(func=demo)
    c = sub.add_parser("check-orders", help="check a CSV of order lines against a warehouse's rules")
    c.add_argument("file")
    c.add_argument("--wms", choices=["whistl", "peoplevox"], required=True)
    c.add_argument(
        "--service-map",
        default=str(EXPECTATIONS_DIR / "service_codes.csv"),
        help="CSV of system,shipping_method,wms,service_code (or shipping_method,wms,service_code for --system)",
    )
    c.add_argument("--catalogue", help="CSV with a `sku` column; without it the WMS catalogue check is skipped")
    c.add_argument("--report", help="write one row per failing rule here")
    c.add_argument("--system", default="linnworks", help="the OMS the service map rows are for")
    c.set_defaults(func=check_orders_command)
    cb = sub.add_parser("peoplevox-callbacks", help="receive Peoplevox's despatch callbacks at peoplevox.callback_url")
    cb.set_defaults(func=peoplevox_callbacks_command)
    pl_ = sub.add_parser("plan", help="what the next live run would send, per flow and target (sends nothing)")
    pl_.add_argument("--flow", help="only this flow")
    pl_.add_argument("--json", action="store_true", help="print JSON")
    pl_.set_defaults(func=plan_command)
    au = sub.add_parser(
        "audit", help="read every system and report what stands in the way of going live (sends nothing)"
    )
    au.add_argument("--days", type=float, default=30.0, help="orders placed in the last DAYS (default 30)")
    au.add_argument("--stale-days", type=float, default=7.0, help="an order open longer than this is stale")
    au.add_argument("--expectations", default=str(EXPECTATIONS_DIR), help="the rules and mapping tables to audit with")
    au.add_argument("--json", action="store_true", help="print the report as JSON")
    au.set_defaults(func=audit_command)
    rp = sub.add_parser("replay", help="send a window's orders through the ledgers again after a fix (calls no system)")
    rp.add_argument("--from", dest="start", required=True, help="orders placed from (ISO date or date-time, UTC)")
    rp.add_argument("--to", dest="end", required=True, help="orders placed before (ISO date or date-time, UTC)")
    rp.add_argument("--flow", help="only this flow")
    rp.add_argument("--expectations", default=str(EXPECTATIONS_DIR), help="the rules and mapping tables to use")
    rp.add_argument("--json", action="store_true", help="print JSON")
    rp.set_defaults(func=replay_command)
    t = sub.add_parser("trace", help="print an order's life across systems (the order_timeline of ORDER_REF)")
    t.add_argument("order_ref", help="the order's reference, or its id in its order system")
    t.set_defaults(func=trace_command)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
