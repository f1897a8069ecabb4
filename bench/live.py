"""Benchmark: fulfil as it is really run. The emulators (`--orders` per order system at start; new orders, edits,
cancellations and both warehouses' shifts keep arriving every `--tick` seconds) and `dagster-daemon` with the
shipped `fulfil.yaml` (its URLs pointed at the emulators), every schedule and sensor on, for `--minutes`, on the
embedded DuckDB default or on PostgreSQL (`--warehouse`).

Printed per flow, read from the emulators' own record (`Emulators.timeline()`), never from fulfil's tables:
- order placed -> held by its warehouse: p50 / p95 / max, for orders placed while the run went ("live") and for
  the backlog the world started with, beside the floor the schedule allows (an order waits for the next sync);
  orders never held are counted (unpaid, cancelled, or spoiled by the world on purpose and waiting as exceptions),
  and, with `--drain`, any the world made fit to send (paid, not cancelled, nothing planted) that never reached its
  target is a missed target;
- despatch made (a Whistl file written, a Peoplevox despatch) -> tracking held by the order system: p50 / p95 /
  max, beside the floor (the despatch sensor's poll and settle time);
- per system: the calls fulfil made beside what its rate limit and `budget_share` allowed in the same minutes, and
  the calls it made most;
- per job: runs, failures, the longest queue wait and the longest run, and the slowest steps, from the Dagster
  instance.
Targets on a 2-core machine: despatch -> tracking p95 under 60 s plus the order system's own limit bound; order ->
warehouse p95 under 5 minutes, or the source's limit bound where that is higher (the least its rate limit times
`budget_share` allows, reading each order once in the order placed, plus one sync interval: Cin7 Core reads each
sale's detail, BigCommerce each order's products and addresses; where reads and tracking posts draw on one
account-wide limit, as at Cin7 Core, Shopify and BigCommerce, the posts queue with the reads); no despatch or
tracking run queued over 30 s; no failed run.

    python bench/live.py [--minutes 30] [--warehouse duckdb|postgres] [--celery-workers N] [--orders 300]
                         [--tick 10] [--drain SECONDS] [--json FILE]
    python bench/live.py --attach [--minutes 30] [--data-dir data/demo]   # watch a running `make demo` instead
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emulators.server import DEFAULT_PORTS, HOST, EmulatorConfig, Emulators  # noqa: E402
from fulfil_assets.cli import _demo_env  # noqa: E402
from fulfil_assets.config import FLOW_SYSTEMS, flow_of  # noqa: E402
from fulfil_assets.processes import start_celery_worker, start_daemon, stop_process_tree  # noqa: E402
from resources.limits import LIMITS  # noqa: E402

# Each system's published limit, as calls per second of the whole account, and the calls an order system needs per
# order read (beyond paged lists: Cin7 Core a sale's detail, BigCommerce its products and shipping addresses,
# Shopify its fulfillment orders) and per tracking post: what its rate limit bounds (resources/limits.py).
LIMITS_PER_S = {name: limits.calls_per_minute / 60 for name, limits in LIMITS.items()}
ORDER_SYSTEMS = ("linnworks", "cin7", "shopify", "bigcommerce")
LATENCY_JOBS = ("despatch_job", "peoplevox_despatch_job", "tracking_job", *(f"{s}_tracking_job" for s in ORDER_SYSTEMS))
NOT_FLOWS = ("not_held", "ready_not_held")  # the keys of `order_latencies` that are not flows
ID_IN_PATH = re.compile(r"/\d+(?=/|$)")
QUEUE_TARGET_S, TRACKING_TARGET_S, ORDER_TARGET_S = 30.0, 60.0, 300.0


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float | int]:
    """Count, p50, p95 and max of latencies in seconds."""
    return {
        "n": len(values),
        "p50_s": round(quantile(values, 0.5), 1),
        "p95_s": round(quantile(values, 0.95), 1),
        "max_s": round(max(values), 1) if values else math.nan,
    }


def live_config(emu: Emulators, shipped: Path) -> dict[str, Any]:
    """The shipped fulfil.yaml with every system pointed at these emulators (nothing else changed)."""
    config = yaml.safe_load(shipped.read_text())
    for name, system in config["systems"].items():
        if name == "whistl":
            system["drop_url"] = f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/"
            system["host_key"] = emu.sftp_host_key
        else:
            system["base_url"] = emu.url(name)
    return config


def limit_bound(arrivals: list[tuple[float, float]]) -> list[float]:
    """The least each item of a stream must wait when the system serves them one after another in arrival order,
    item `(at, seconds)` taking `seconds` of its rate limit times the configured share: a FIFO queue with no other
    work. Aligned with `arrivals`."""
    waits, free = [0.0] * len(arrivals), -math.inf
    for i in sorted(range(len(arrivals)), key=lambda i: arrivals[i][0]):
        at, seconds = arrivals[i]
        free = max(at, free) + seconds
        waits[i] = free - at
    return waits


def share_per_s(config: dict[str, Any], oms: str) -> float:
    """Calls a second the order system's limit and `budget_share` allow fulfil."""
    return LIMITS_PER_S[oms] * float(config["systems"].get(oms, {}).get("budget_share", 0.5))


def limit_bounds(timeline: dict[str, Any], config: dict[str, Any], started: float) -> dict[str, dict[str, float]]:
    """Per order system, p95 of the least latency its rate limit allows for the work it had: order -> warehouse
    (each order it held read once, in order placed, unpaid ones not where `paid_only`, plus one order sync
    interval) and despatch -> tracking (each
    despatch of its orders, or of the Linnworks orders made of them, posted once, in despatch order). Where reads
    and posts draw on one account-wide limit (Cin7 Core, Shopify, BigCommerce) they queue together; Linnworks
    limits each method apart."""
    oms_of = {o["order_ref"]: o["oms"] for o in timeline["orders"]}
    storefront_of = {o["order_ref"]: oms_of.get(o["source_ref"]) for o in timeline["orders"] if o["source_ref"]}
    out: dict[str, dict[str, float]] = {"order_to_warehouse": {}, "despatch_to_tracking": {}}
    for oms in ORDER_SYSTEMS:
        if oms not in config["systems"]:
            continue
        each = 1 / share_per_s(config, oms)
        placed = [
            o["placed_at"] or started
            for o in timeline["orders"]
            if o["oms"] == oms and not o["source_ref"] and (o["paid"] or not LIMITS[oms].paid_only)
        ]
        made = [
            d["at"]
            for d in timeline["despatches"]
            if oms in (oms_of.get(d["order_ref"]), storefront_of.get(d["order_ref"]))
        ]
        reads = [(at, LIMITS[oms].calls_per_order * each) for at in placed]
        posts = [(at, LIMITS[oms].calls_per_post * each) for at in made]
        if LIMITS[oms].one_limit:
            waits = limit_bound(reads + posts)
            read_waits, post_waits = waits[: len(reads)], waits[len(reads) :]
        else:
            read_waits, post_waits = limit_bound(reads), limit_bound(posts)
        if placed:
            sync_s = 60 * config["schedules"]["order_sync_minutes"]
            out["order_to_warehouse"][oms] = round(quantile(read_waits, 0.95) + sync_s, 1)
        if made:
            out["despatch_to_tracking"][oms] = round(quantile(post_waits, 0.95), 1)
    return out


def order_latencies(timeline: dict[str, Any], started: float, cutoff: float = math.inf) -> dict[str, dict[str, Any]]:
    """Per flow: order placed -> held by its warehouse, orders placed during the run ("live") and the starting
    backlog apart; per order system, the orders no warehouse holds (`not_held`), and of those the ones the world
    made fit to send (paid, not cancelled, nothing planted) and placed before `cutoff` (`ready_not_held`)."""
    # Linnworks is the warehouse of shopify_linnworks: it holds a Shopify order once created under its reference.
    created = [o for o in timeline["orders"] if o["source_ref"]]
    held = {**timeline["wms_received"], "linnworks": {o["source_ref"]: o["placed_at"] for o in created}}
    live: dict[str, list[float]] = {}
    backlog: dict[str, list[float]] = {}
    not_held: dict[str, int] = {}
    ready_not_held: dict[str, list[str]] = {}
    for order in timeline["orders"]:
        if order["source_ref"]:
            continue
        oms, ref = order["oms"], order["order_ref"]
        wms = order["target"] if ref in held.get(order["target"], {}) else None  # at its own target, or not held
        if wms is None:
            not_held[oms] = not_held.get(oms, 0) + 1
            if order["ready"] and (order["placed_at"] or 0.0) < cutoff:
                ready_not_held.setdefault(oms, []).append(ref)
            continue
        into = live if order["placed_at"] > started + 1 else backlog
        into.setdefault(flow_of(oms, wms), []).append(max(0.0, held[wms][ref] - order["placed_at"]))
    flows = sorted(set(live) | set(backlog))
    return {
        **{f: {"live": spread(live.get(f, [])), "backlog": spread(backlog.get(f, []))} for f in flows},
        "not_held": not_held,
        "ready_not_held": ready_not_held,
    }


def warehouses_despatched(timeline: dict[str, Any]) -> set[str]:
    """The warehouses that have despatched an order."""
    return {d["wms"] for d in timeline["despatches"]}


def both_despatched(timeline: dict[str, Any]) -> bool:
    """Whether Whistl and Peoplevox have each despatched an order."""
    return warehouses_despatched(timeline) >= {"whistl", "peoplevox"}


def drained(timeline: dict[str, Any], started: float, cutoff: float) -> bool:
    """Whether every order the world made fit to send before `cutoff` is held by its target and every despatch
    made before it has its tracking at its order system."""
    tracked = tracking_latencies(timeline, cutoff).values()
    return not order_latencies(timeline, started, cutoff)["ready_not_held"] and not any(r["missing"] for r in tracked)


def tracking_latencies(timeline: dict[str, Any], cutoff: float) -> dict[str, dict[str, Any]]:
    """Per flow: each order's first despatch -> its order system holding tracking (a storefront order's too, through
    the Linnworks order made of it); despatches made before `cutoff` and still without tracking count as missing."""
    by_ref = {}
    for order in timeline["orders"]:
        by_ref.setdefault(order["order_ref"], order)
    first: dict[tuple[str, str], float] = {}
    for d in timeline["despatches"]:
        key = (d["wms"], d["order_ref"])
        first[key] = min(first.get(key, math.inf), d["at"])
    out: dict[str, dict[str, Any]] = {}
    for (wms, ref), at in first.items():
        order = by_ref.get(ref)
        if order is None:
            continue
        # A Linnworks order made of a storefront's (`source_ref`) owes tracking to both; the storefront's is its
        # flow's (`shopify_linnworks`), counted from the same despatch.
        storefront = by_ref.get(order["source_ref"]) if order["source_ref"] else None
        owed = [(order, wms)] + ([(storefront, order["oms"])] if storefront else [])
        for owner, target in owed:
            flow = next((f for f, (o, w) in FLOW_SYSTEMS.items() if o == owner["oms"] and w == target), f"?_{target}")
            row = out.setdefault(flow, {"latencies": [], "missing": 0, "cancelled": 0})
            tracked = timeline["tracking_held"].get(owner["oms"], {}).get(owner["order_id"])
            if tracked is not None:
                row["latencies"].append(max(0.0, tracked - at))
            elif owner["cancelled"]:  # cancelled too late to stop the parcel: no tracking is due, a person acts
                row["cancelled"] += 1
            elif at < cutoff:
                row["missing"] += 1
    return {
        flow: {**spread(v["latencies"]), "missing": v["missing"], "cancelled": v["cancelled"]}
        for flow, v in sorted(out.items())
    }


def job_stats(records: Iterable[Any], now: float) -> dict[str, dict[str, Any]]:
    """Per job: runs, failures, still queued, the longest queue wait and the longest run (seconds)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        run = r.dagster_run
        row = out.setdefault(
            run.job_name, {"runs": 0, "failed": 0, "queued_now": 0, "max_queue_s": 0.0, "max_run_s": 0.0}
        )
        row["runs"] += 1
        status = run.status.value
        row["failed"] += status == "FAILURE"
        created = r.create_timestamp.timestamp()
        started = r.start_time
        if started is None:
            row["queued_now"] += status in ("QUEUED", "NOT_STARTED", "STARTING")
            wait = now - created if status in ("QUEUED", "NOT_STARTED", "STARTING") else 0.0
        else:
            wait = started - created
        row["max_queue_s"] = round(max(row["max_queue_s"], wait), 1)
        if started is not None:
            row["max_run_s"] = round(max(row["max_run_s"], (r.end_time or now) - started), 1)
    return dict(sorted(out.items()))


def step_stats(instance: Any, records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per step (asset) over every run: how often it ran, its p95 and longest duration (seconds), the slowest
    first, to show where a long run spent its time."""
    durations: dict[str, list[float]] = {}
    for r in records:
        for step in instance.get_run_step_stats(r.dagster_run.run_id):
            if step.start_time and step.end_time:
                durations.setdefault(step.step_key, []).append(step.end_time - step.start_time)
    rows = {
        key: {"n": len(v), "p95_s": round(quantile(v, 0.95), 1), "max_s": round(max(v), 1)}
        for key, v in durations.items()
    }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["max_s"]))


def call_budget(emu: Emulators, config: dict[str, Any], seconds: float) -> dict[str, dict[str, Any]]:
    """Per API system: calls fulfil made beside what its limit times its `budget_share` allowed in `seconds`."""
    out = {}
    for name, per_s in LIMITS_PER_S.items():
        system = getattr(emu, name)
        share = float(config["systems"].get(name, {}).get("budget_share", 0.5))
        calls = sum(n for status, n in system.recorder.status_counts.items())
        allowed = per_s * share * seconds
        # One entry per kind of call: an id in the path (an order's, a sale's) is not a kind of its own.
        paths = Counter(call.method + " " + ID_IN_PATH.sub("/{id}", call.path) for call in list(system.recorder.calls))
        out[name] = {
            "calls": calls,
            "allowed": int(allowed),
            "used": round(calls / allowed, 2) if allowed else None,
            "by_call": dict(paths.most_common(5)),
        }
    return out


def start_warehouse(kind: str, data_dir: Path, env: dict[str, str], home: Path) -> list[str]:
    """Point the run at its warehouse; on PostgreSQL make fresh databases for the warehouse and for Dagster's
    own storage (returned, to drop afterwards)."""
    if kind == "duckdb":
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        return []
    import sqlalchemy as sa

    names = [f"fulfil_live_{uuid.uuid4().hex[:8]}", f"dagster_live_{uuid.uuid4().hex[:8]}"]
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    env["FULFIL_WAREHOUSE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{names[0]}"
    env["DAGSTER_POSTGRES_URL"] = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{names[1]}"
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    return names


def drop_databases(names: list[str]) -> None:
    """Drop the databases `start_warehouse` made."""
    if not names:
        return
    import sqlalchemy as sa

    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def run_live(
    minutes: float,
    warehouse: str,
    orders: int,
    tick: float,
    data_dir: Path,
    quiet: bool = False,
    celery_workers: int = 0,
    drain_s: float = 0.0,
    extend_minutes: float = 0.0,
) -> dict[str, Any]:
    """Run the emulators and the daemon for `minutes` (on PostgreSQL with `celery_workers` > 0: steps on that many
    Celery workers, through this machine's RabbitMQ); then, with `drain_s`, stop the world (no new orders, changes
    or despatches; the warehouses still take in files) and give fulfil up to `drain_s` to bring every order fit to
    send to its target and every despatch's tracking back, so that each counts as missing unless done. With
    `extend_minutes`, the world goes on up to that much longer while a warehouse has despatched nothing yet (on a
    loaded machine the first orders reach the warehouses later). Return the figures (see the module's docstring)."""
    if celery_workers and warehouse != "postgres":
        raise ValueError("Celery workers need the PostgreSQL warehouse (DuckDB runs every step in the run's process)")
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_demo_env(data_dir)}
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    databases = start_warehouse(warehouse, data_dir, env, home)
    emu = Emulators(EmulatorConfig(data_dir=data_dir / "emulators", n_orders=orders, tick_s=tick, ports={}))
    processes: list[subprocess.Popen] = []
    try:
        emu.start()
        emu.linnworks.peoplevox_share = 0.3  # as the demo: Linnworks fulfils these from Peoplevox
        emu.whistl.snapshot()
        config = live_config(emu, REPO / "fulfil.yaml")
        config_file = data_dir / "fulfil.yaml"
        config_file.write_text(yaml.safe_dump(config))
        env["FULFIL_CONFIG"] = str(config_file)
        started = time.time()
        log = data_dir / "daemon.log"
        if celery_workers:
            env |= {"FULFIL_EXECUTOR": "celery", "FULFIL_CELERY_QUEUE": f"fulfil-live-{uuid.uuid4().hex[:8]}"}
            env.setdefault("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
            for i in range(celery_workers):
                worker_log = data_dir / f"worker{i + 1}.log"
                processes.append(start_celery_worker(env, worker_log, REPO, f"w{i + 1}", env["FULFIL_CELERY_QUEUE"]))
        processes.append(start_daemon(env, log, REPO))
        deadline, latest = started + minutes * 60, started + (minutes + extend_minutes) * 60
        while (now := time.time()) < deadline or (now < latest and not both_despatched(emu.timeline())):
            time.sleep(min(60.0, deadline - now) if now < deadline else min(5.0, latest - now))
            if not quiet and time.time() < deadline + 1:
                print(progress(emu.timeline(), started), file=sys.stderr)
        cutoff = time.time() - 60  # a despatch made in the last minute may fairly still be on its way
        if drain_s:
            emu.world_paused = True
            cutoff = time.time()
            drain_until = cutoff + drain_s
            while time.time() < drain_until and not drained(emu.timeline(), started, cutoff):
                time.sleep(5.0)
        now = time.time()
        os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL") if k in env})
        return {
            "minutes": round((cutoff - started) / 60, 1) if drain_s else minutes,
            "warehouse": warehouse + (f" with {celery_workers} Celery workers" if celery_workers else ""),
            "orders_at_start": orders,
            **figures(emu.timeline(), config, started, cutoff, home),
            "drain_s": round(now - cutoff, 1) if drain_s else None,
            "calls": call_budget(emu, config, now - started),
            "daemon_log": str(log),
        }
    finally:
        for proc in processes:
            stop_process_tree(proc)
        emu.stop()
        drop_databases(databases)


def progress(timeline: dict[str, Any], started: float) -> str:
    """One line of how far the world's orders have got."""
    held = sum(len(v) for v in timeline["wms_received"].values())
    tracked = sum(len(v) for v in timeline["tracking_held"].values())
    return (
        f"  minute {(time.time() - started) / 60:4.1f}: {held} orders held by a warehouse, "
        f"{len(timeline['despatches'])} despatches, {tracked} orders with tracking"
    )


def figures(
    timeline: dict[str, Any], config: dict[str, Any], started: float, cutoff: float, home: Path
) -> dict[str, Any]:
    """The latencies from the world's record and the runs from the Dagster instance in `home` (see the module's
    docstring)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    records = instance.get_run_records()
    jobs, steps = job_stats(records, time.time()), step_stats(instance, records)
    instance.dispose()
    return {
        "order_to_warehouse": order_latencies(timeline, started, cutoff),
        "despatch_to_tracking": tracking_latencies(timeline, cutoff),
        "warehouses_despatched": sorted(warehouses_despatched(timeline)),
        "jobs": jobs,
        "steps": steps,
        "limit_bounds_s": limit_bounds(timeline, config, started),
        "floors_s": {
            "order_to_warehouse": 60 * config["schedules"]["order_sync_minutes"],
            "despatch_to_tracking": config["schedules"]["despatch_poll_seconds"]
            + config["schedules"].get("despatch_settle_seconds", 10),
        },
    }


def watch_demo(minutes: float, data_dir: Path) -> dict[str, Any]:
    """Watch a running `fulfil demo` (`make demo`: the emulators on their default ports, `dagster dev` with the
    shipped `fulfil.yaml`, schedules and sensors, its files in `data_dir`) for `minutes`, reading the world's
    record from the emulators over HTTP each minute; then the same figures as a live run (but the calls), from
    the demo's start."""
    url = f"http://{HOST}:{DEFAULT_PORTS['whistl']}/_emulator/timeline"
    until = time.time() + minutes * 60
    while True:
        timeline = httpx.get(url, timeout=30).json()
        print(progress(timeline, timeline["started_at"]), file=sys.stderr)
        if time.time() >= until:
            break
        time.sleep(min(60.0, until - time.time()))
    started = timeline["started_at"]
    return {
        "minutes": round((time.time() - started) / 60, 1),
        "warehouse": f"the demo in {data_dir} (dagster dev)",
        "orders_at_start": "the demo's",
        **figures(
            timeline,
            yaml.safe_load((REPO / "fulfil.yaml").read_text()),
            started,
            time.time() - 60,
            Path(_demo_env(data_dir)["DAGSTER_HOME"]),
        ),
        "daemon_log": "the demo's terminal",
    }


def verdicts(result: dict[str, Any]) -> list[str]:
    """Each target the run missed, in words (none: every target met)."""
    missed = []
    bounds = result.get("limit_bounds_s", {"order_to_warehouse": {}, "despatch_to_tracking": {}})
    for flow, row in result["despatch_to_tracking"].items():
        target = TRACKING_TARGET_S + bounds["despatch_to_tracking"].get(flow.split("_")[0], 0.0)
        if row["n"] and row["p95_s"] > target:
            missed.append(f"{flow}: despatch -> tracking p95 {row['p95_s']} s > {target:.0f} s")
        if row["missing"]:
            missed.append(f"{flow}: {row['missing']} despatches older than a minute without tracking")
    for oms, refs in result["order_to_warehouse"]["ready_not_held"].items() if result.get("drain_s") else []:
        missed.append(f"{oms}: {len(refs)} orders fit to send never reached their target, e.g. {refs[:3]}")
    for flow, row in result["order_to_warehouse"].items():
        live = row.get("live") if flow not in NOT_FLOWS else None
        target = max(ORDER_TARGET_S, bounds["order_to_warehouse"].get(flow.split("_")[0], 0.0))
        if live and live["n"] and live["p95_s"] > target:
            missed.append(f"{flow}: order -> warehouse p95 {live['p95_s']} s > {target:.0f} s")
    for job, row in result["jobs"].items():
        if row["failed"]:
            missed.append(f"{job}: {row['failed']} failed runs")
        if job in LATENCY_JOBS and row["max_queue_s"] > QUEUE_TARGET_S:
            missed.append(f"{job}: a run queued {row['max_queue_s']} s > {QUEUE_TARGET_S:.0f} s")
    return missed


def report(result: dict[str, Any]) -> None:
    """Print the figures as tables."""
    print(
        f"\nbench/live: {result['minutes']} min on {result['warehouse']}, {result['orders_at_start']} orders per "
        "order system at start; figures from the emulators' own record"
        + (f"; then the world stopped and fulfil drained for {result['drain_s']} s" if result.get("drain_s") else "")
    )
    floors = result["floors_s"]
    bounds = result["limit_bounds_s"]
    print(
        f"\norder placed -> held by the warehouse (floor: the next order sync, up to {floors['order_to_warehouse']} s;"
        f" target p95 < {ORDER_TARGET_S:.0f} s or the limit bound: the order system's rate limit x budget_share"
        " reading each order once in order placed, queued with the tracking posts where one limit serves both,"
        " plus one sync)"
    )
    print(
        f"  {'flow':24s} {'live n':>6s} {'p50':>7s} {'p95':>7s} {'max':>7s} | {'backlog n':>9s} {'p95':>7s} {'max':>7s}"
        f" | {'limit bound p95':>15s}"
    )
    for flow, row in result["order_to_warehouse"].items():
        if flow == "not_held":
            print(f"  held by no target yet (unpaid, cancelled, or a fault the world planted and an exception): {row}")
            continue
        if flow == "ready_not_held":
            counts = {oms: len(refs) for oms, refs in row.items()}
            print(f"  of those, fit to send (paid, not cancelled, nothing planted), placed before the stop: {counts}")
            continue
        lv, bl = row["live"], row["backlog"]
        bound = bounds["order_to_warehouse"].get(flow.split("_")[0], math.nan)
        print(
            f"  {flow:24s} {lv['n']:6d} {lv['p50_s']:7.1f} {lv['p95_s']:7.1f} {lv['max_s']:7.1f} | "
            f"{bl['n']:9d} {bl['p95_s']:7.1f} {bl['max_s']:7.1f} | {bound:15.1f}"
        )
    print(
        "\ndespatch made -> tracking held by the order system "
        f"(floor: poll + settle, {floors['despatch_to_tracking']} s; target p95 < {TRACKING_TARGET_S:.0f} s "
        "plus the limit bound: each despatch posted once, queued with the order reads where one limit serves both)"
    )
    print(
        f"  {'flow':24s} {'n':>6s} {'p50':>7s} {'p95':>7s} {'max':>7s} {'missing':>8s} {'limit bound':>11s}"
        f" {'p95 / target':>12s}"
    )
    for flow, row in result["despatch_to_tracking"].items():
        bound = bounds["despatch_to_tracking"].get(flow.split("_")[0], 0.0)
        ratio = row["p95_s"] / (TRACKING_TARGET_S + bound) if row["n"] else math.nan
        print(
            f"  {flow:24s} {row['n']:6d} {row['p50_s']:7.1f} {row['p95_s']:7.1f} {row['max_s']:7.1f} "
            f"{row['missing']:8d} {bound:11.1f} {ratio:12.2f}"
        )
    if result.get("calls"):
        print("\ncalls per system beside its limit x budget_share over the run")
    for name, row in result.get("calls", {}).items():
        top = ", ".join(f"{call} {n}" for call, n in row["by_call"].items())
        print(f"  {name:12s} {row['calls']:7d} of {row['allowed']:7d} allowed ({row['used']}); most: {top}")
    print(f"\nper job (target: no despatch or tracking run queued over {QUEUE_TARGET_S:.0f} s, no failed run)")
    print(f"  {'job':34s} {'runs':>5s} {'failed':>6s} {'queued':>6s} {'max queue s':>11s} {'max run s':>9s}")
    for job, row in result["jobs"].items():
        print(
            f"  {job:34s} {row['runs']:5d} {row['failed']:6d} {row['queued_now']:6d} {row['max_queue_s']:11.1f} "
            f"{row['max_run_s']:9.1f}"
        )
    print("\nslowest steps (every run)")
    print(f"  {'step':50s} {'n':>5s} {'p95 s':>7s} {'max s':>7s}")
    for step, row in list(result["steps"].items())[:15]:
        print(f"  {step:50s} {row['n']:5d} {row['p95_s']:7.1f} {row['max_s']:7.1f}")
    missed = verdicts(result)
    print("\ntargets: " + ("all met" if not missed else "MISSED\n  " + "\n  ".join(missed)))
    print(f"daemon log: {result['daemon_log']}")


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warehouse", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--orders", type=int, default=300, help="orders per order system at start")
    parser.add_argument("--celery-workers", type=int, default=0, help="PostgreSQL only: run steps on N Celery workers")
    parser.add_argument("--tick", type=float, default=10.0, help="seconds between the emulated world's ticks")
    parser.add_argument(
        "--drain", type=float, default=0.0, help="then stop the world; wait up to this long for orders and tracking"
    )
    parser.add_argument("--data-dir", type=Path, help="keep the run's files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--attach",
        action="store_true",
        help="start nothing: watch the `make demo` running here (its --data-dir: --data-dir, default data/demo)",
    )
    args = parser.parse_args()
    if args.attach:
        result = watch_demo(args.minutes, (args.data_dir or Path("data/demo")).resolve())
        report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
        return
    if args.celery_workers and args.warehouse != "postgres":
        parser.error("--celery-workers needs --warehouse postgres (DuckDB runs every step in the run's process)")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="fulfil-live-"))
    result = run_live(
        args.minutes,
        args.warehouse,
        args.orders,
        args.tick,
        data_dir,
        celery_workers=args.celery_workers,
        drain_s=args.drain,
    )
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
