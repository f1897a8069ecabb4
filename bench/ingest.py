"""Benchmark: ingestion through the dlt sources against the emulators, at each system's real limits and with
limits off, and peak memory for 100,000 orders.

Baselines, computed in this script from each system's published limit:
- steady-state maximum: page size x allowed requests per second, divided by the calls one order needs (a list
  page holds `page` orders; Cin7 and BigCommerce need detail calls per order);
- the limit's best time for this workload: the fewest calls the orders need, sent as fast as the limit lets them
  through, burst included (a sliding window of L calls per W s passes L at once, then L more every W s; a leaky
  bucket of capacity C passes C at once, then r/s). Its ratio to the measured time is the stricter figure.
Target: at least 90%, with at most 2% of requests answered 429. Every client uses the whole allowance
(`budget_share=1.0`). When the workload fits in one burst the limit does not bind (best time 0): shown as "-".

    python bench/ingest.py [--only linnworks,cin7,...] [--skip-limited] [--skip-unlimited] [--memory-orders 100000]

At real limits each system needs a little more than one limit window (30-60 s), so the whole run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
from dlt.sources import DltSource

from emulators.server import EmulatorConfig, Emulators
from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.cin7_source import cin7_source
from fulfil_assets.ingest.linnworks_source import linnworks_source
from fulfil_assets.ingest.peoplevox_source import peoplevox_source
from fulfil_assets.ingest.shopify_source import shopify_source
from fulfil_assets.ingest.whistl_source import drop_location, whistl_source
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.linnworks import LinnworksClient
from resources.peoplevox import PeoplevoxClient
from resources.shopify import ShopifyClient

UNBOUND = 1e6  # a client budget share so large it never binds (limits-off runs)


@dataclass(frozen=True)
class Limit:
    """A published limit: a sliding window (`calls` per `window_s`) or a leaky bucket (`calls` deep, `leak_per_s`)."""

    calls: int
    window_s: float = 0.0
    leak_per_s: float = 0.0

    def best_time(self, calls: int) -> float:
        """The least time in which the limit lets `calls` calls through (burst first, then the refill)."""
        if self.leak_per_s:
            return max(0.0, (calls - self.calls) / self.leak_per_s)
        return self.window_s * math.floor((calls - 1) / self.calls)

    @property
    def per_s(self) -> float:
        """Steady-state calls per second."""
        return self.leak_per_s or self.calls / self.window_s


@dataclass(frozen=True)
class Case:
    """One system's order read: how many orders (rows), its page size, calls per order beyond the list, limit."""

    system: str
    unit: str
    n_limited: int
    n_unlimited: int
    page: int
    extra_calls_per_unit: float
    limit: Limit
    source: Callable[[Emulators, float], DltSource]
    table: str

    def calls_per_unit(self) -> float:
        """API calls one order costs: its share of a list page plus its detail calls."""
        return 1 / self.page + self.extra_calls_per_unit


def _linnworks(emu: Emulators, share: float) -> DltSource:
    client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=share)
    return linnworks_source(client, page_size=200).with_resources("open_orders")


def _cin7(emu: Emulators, share: float) -> DltSource:
    client = Cin7Client(emu.url("cin7"), *emu.cin7.credentials, budget_share=share)
    return cin7_source(client, page_size=1000).with_resources("sale_list", "sales")


def _shopify(emu: Emulators, share: float) -> DltSource:
    client = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=min(share, 1.0))
    return shopify_source(client, page_size=250).with_resources("orders")


def _bigcommerce(emu: Emulators, share: float) -> DltSource:
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=min(share, 1.0))
    return bigcommerce_source(client, page_size=250).with_resources(
        "orders", "order_products", "order_shipping_addresses"
    )


def _peoplevox(emu: Emulators, share: float) -> DltSource:
    client = PeoplevoxClient(emu.url("peoplevox"), *emu.peoplevox.credentials, budget_share=share)
    return peoplevox_source(client, page_size=1000).with_resources("despatches")


CASES = [
    Case("linnworks", "orders", 60_000, 20_000, 200, 0, Limit(250, 60), _linnworks, "open_orders"),
    Case("cin7", "orders", 90, 3_000, 1000, 1, Limit(60, 60), _cin7, "sales"),
    Case("shopify", "orders", 25_000, 20_000, 250, 0, Limit(40, leak_per_s=2), _shopify, "orders"),
    Case("bigcommerce", "orders", 100, 3_000, 250, 2, Limit(150, 30), _bigcommerce, "orders"),
    Case("peoplevox", "despatch rows", 20_000, 50_000, 1000, 0, Limit(300, 60), _peoplevox, "despatches"),
]


def seed(emu: Emulators, case: Case, n: int) -> None:
    """Put `n` orders (or despatch rows) into the system, as if they arrived in the last day."""
    now = datetime.now(UTC)
    if case.system == "peoplevox":
        emu.peoplevox.despatches.extend(
            {
                "DespatchNumber": f"DN{i:07d}",
                "SalesOrderNumber": f"LW{i:07d}",
                "ItemCode": emu.world.wms_catalogue[i % len(emu.world.wms_catalogue)],
                "Quantity": "1",
                "TrackingNumber": f"JD{i:016d}GB",
                "CarrierReference": "DPD",
                "ServiceType": "DPD Next Day",
                "DespatchDate": (now - timedelta(seconds=n - i)).isoformat(timespec="seconds"),
            }
            for i in range(n)
        )
    else:
        getattr(emu, case.system).spawn(n, now - timedelta(days=1), now)


def run_case(emu: Emulators, case: Case, n: int, share: float, workdir: Path) -> dict[str, Any]:
    """Extract (timed: this is where the limit binds), then normalize and load into DuckDB."""
    seed(emu, case, n)
    system = getattr(emu, case.system)
    system.recorder.clear()
    source = case.source(emu, share)
    name = f"bench_{case.system}_{int(share)}"
    p = dlt.pipeline(
        pipeline_name=name,
        dataset_name=f"raw_{case.system}",
        destination=dlt.destinations.duckdb(str(workdir / f"{name}.duckdb")),
        pipelines_dir=str(workdir / "dlt"),
    )
    start = time.perf_counter()
    p.extract(source, loader_file_format="jsonl")  # as fulfil loads into DuckDB (WarehouseDb.dlt_file_format)
    extract_s = time.perf_counter() - start
    p.normalize()
    p.load()
    total_s = time.perf_counter() - start
    rows = p.last_trace.last_normalize_info.row_counts if p.last_trace.last_normalize_info else {}
    with p.sql_client() as sql:
        units = sql.execute_sql(f"SELECT COUNT(*) FROM {case.table}")[0][0]
    calls = sum(system.recorder.status_counts.values())
    return {
        "units": units,
        "extract_s": extract_s,
        "total_s": total_s,
        "calls": calls,
        "429": system.recorder.status_counts.get(429, 0),
        "rows": sum(v for k, v in rows.items() if not k.startswith("_dlt")),
    }


def emulators(rate_scale: float, workdir: Path) -> Emulators:
    """All systems on free ports with no initial orders (each case seeds its own)."""
    names = ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp")
    config = EmulatorConfig(
        data_dir=workdir / f"emu_{rate_scale}",
        n_skus=2000,
        n_orders=0,
        rate_scale=rate_scale,
        ports=dict.fromkeys(names, 0),
    )
    return Emulators(config).start()


def limited(cases: list[Case], workdir: Path) -> None:
    """Each system at its real limit: units/s beside the steady-state maximum, and the measured time beside the
    least time the limit allows for the same calls."""
    print("\n== at real limits (budget_share 1.0) ==")
    print(
        f"{'system':<12}{'units':>8}{'extract s':>10}{'units/s':>9}{'steady/s':>9}{'ratio':>7}"
        f"{'best s':>8}{'ratio':>7}{'calls':>7}{'429s':>6}"
    )
    with emulators(1.0, workdir) as emu:
        for case in cases:
            r = run_case(emu, case, case.n_limited, 1.0, workdir)
            rate = r["units"] / r["extract_s"]
            steady = case.limit.per_s / case.calls_per_unit()
            needed = math.ceil(r["units"] / case.page) + round(case.extra_calls_per_unit * r["units"])
            best = case.limit.best_time(needed)
            best_ratio = f"{best / r['extract_s']:>7.0%}" if best else f"{'-':>7}"
            print(
                f"{case.system:<12}{r['units']:>8,}{r['extract_s']:>10.1f}{rate:>9,.1f}{steady:>9,.1f}"
                f"{rate / steady:>7.0%}{best:>8.1f}{best_ratio}{r['calls']:>7}{r['429']:>6}"
                f"   ({case.unit}; 429s {r['429'] / max(1, r['calls']):.1%} of calls; loaded at {r['total_s']:.1f} s)"
            )


def unlimited(cases: list[Case], workdir: Path) -> None:
    """Limits off (emulators and clients): what the sources themselves sustain, including normalize and load."""
    print("\n== limits off ==")
    print(f"{'system':<12}{'units':>9}{'rows':>10}{'total s':>9}{'units/s':>10}{'rows/s':>10}")
    with emulators(0.0, workdir) as emu:
        for case in cases:
            r = run_case(emu, case, case.n_unlimited, UNBOUND, workdir)
            print(
                f"{case.system:<12}{r['units']:>9,}{r['rows']:>10,}{r['total_s']:>9.1f}"
                f"{r['units'] / r['total_s']:>10,.0f}{r['rows'] / r['total_s']:>10,.0f}"
            )
        whistl_files(emu, workdir)


def whistl_files(emu: Emulators, workdir: Path, files: int = 50, rows_per_file: int = 400) -> None:
    """Whistl stock snapshot files over SFTP through dlt's filesystem source."""
    out = emu.whistl.root / "out"
    out.mkdir(parents=True, exist_ok=True)
    header = "sku,description,on_hand,allocated,available,quarantine,snapshot_at\n"
    for f in range(files):
        body = "".join(
            f"SKU{i},Item {i},{i % 50},1,{i % 50},0,2026-12-01T00:{f % 60:02d}:00Z\n" for i in range(rows_per_file)
        )
        (out / f"inv_bench_{f:04d}.csv").write_text(header + body)
    url = f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/"
    bucket, creds = drop_location(url, emu.config.sftp_password, host_key=emu.sftp_host_key)
    p = dlt.pipeline(
        pipeline_name="bench_whistl",
        dataset_name="raw_whistl",
        destination=dlt.destinations.duckdb(str(workdir / "bench_whistl.duckdb")),
        pipelines_dir=str(workdir / "dlt"),
    )
    start = time.perf_counter()
    p.run(whistl_source(bucket, creds).with_resources("stock_snapshots"), loader_file_format="jsonl")
    total = time.perf_counter() - start
    rows = files * rows_per_file
    print(
        f"{'whistl sftp':<12}{files:>9,}{rows:>10,}{total:>9.1f}{files / total:>10,.0f}{rows / total:>10,.0f}"
        "   (units = stock snapshot files)"
    )


MEMORY_CHILD = """
import json, sys, time
import dlt
from fulfil_assets.ingest.linnworks_source import linnworks_source
from resources.linnworks import LinnworksClient
a = json.loads(sys.argv[1])
client = LinnworksClient(a["url"], *a["creds"], budget_share=1e6)
p = dlt.pipeline(pipeline_name="bench_memory", dataset_name="raw_linnworks",
                 destination=dlt.destinations.duckdb(a["db"]), pipelines_dir=a["dlt"])
start = time.perf_counter()
p.run(linnworks_source(client, page_size=200).with_resources("open_orders"), loader_file_format="jsonl")
with p.sql_client() as sql:
    n = sql.execute_sql("SELECT COUNT(*) FROM open_orders")[0][0]
    items = sql.execute_sql("SELECT COUNT(*) FROM open_orders__items")[0][0]
# VmHWM, not ru_maxrss: ru_maxrss survives exec and so counts the forking parent's pages too.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"orders": n, "items": items, "seconds": time.perf_counter() - start, "peak_mb": hwm_kb / 1024}))
"""


def memory(n: int, workdir: Path) -> None:
    """Peak RSS of a process that ingests `n` Linnworks orders (the emulator runs in this process, not that one)."""
    print(f"\n== peak memory, {n:,} orders ==")
    with emulators(0.0, workdir) as emu:
        emu.linnworks.spawn(n, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
        args = {
            "url": emu.url("linnworks"),
            "creds": list(emu.linnworks.credentials),
            "db": str(workdir / "bench_memory.duckdb"),
            "dlt": str(workdir / "dlt"),
        }
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, json.dumps(args)], env=env, capture_output=True, text=True, check=True
        ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(
        f"linnworks: {r['orders']:,} orders ({r['items']:,} items) ingested in {r['seconds']:.1f} s, "
        f"peak RSS {r['peak_mb']:,.0f} MB (target < 1,024 MB: {r['peak_mb'] / 1024:.0%} of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated systems")
    parser.add_argument("--skip-limited", action="store_true")
    parser.add_argument("--skip-unlimited", action="store_true")
    parser.add_argument("--memory-orders", type=int, default=100_000, help="0 skips the memory run")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    cases = [c for c in CASES if not wanted or c.system in wanted]
    with tempfile.TemporaryDirectory(prefix="fulfil_bench_") as tmp:
        workdir = Path(tmp)
        if not args.skip_limited:
            limited(cases, workdir)
        if not args.skip_unlimited:
            unlimited(cases, workdir)
        if args.memory_orders:
            memory(args.memory_orders, workdir)
    print(f"\nbench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
