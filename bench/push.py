"""Benchmark: sending orders to each target through the effect module (intend -> claim -> attempt -> confirm),
against the emulators, into a fresh DuckDB warehouse.

For each target (Whistl order files over SFTP, Peoplevox `SaveData`, Linnworks `CreateOrders`):
- with limits off: orders/s for intend and for delivery, the target calls made beside the lower bound the batch
  sizes allow (ceil(orders / batch) per kind of call; Peoplevox saves orders and their items in two calls per
  batch), and the peak RSS of the process;
- at the emulators' real limits (`--limited-orders`): the delivery time beside the least time the limit allows
  for the calls made (sliding window of L calls per W s: L at once, then L more every W s). Target within 10%.

    python bench/push.py [--orders 100000] [--limited-orders 20000] [--only whistl,peoplevox,linnworks]

Peak memory is this process's VmHWM, emulators included (they run in-process), so it is an upper bound.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from emulators.server import EmulatorConfig, Emulators
from emulators.workloads import ready_orders
from fulfil_assets import effects
from fulfil_assets.push.assets import keyed_intents, submission_intents
from fulfil_assets.push.linnworks_orders import ORDERS_PER_CALL as LINNWORKS_BATCH
from fulfil_assets.push.linnworks_orders import LinnworksOrders, linnworks_payloads
from fulfil_assets.push.peoplevox_orders import ORDERS_PER_CALL as PEOPLEVOX_BATCH
from fulfil_assets.push.peoplevox_orders import PeoplevoxOrders, peoplevox_payloads
from fulfil_assets.push.whistl_inbox import ORDERS_PER_FILE, WhistlInbox
from fulfil_assets.warehouse_tables import ensure_tables
from resources.file_drop import FileDrop
from resources.linnworks import LinnworksClient
from resources.peoplevox import PeoplevoxClient
from resources.warehouse import WarehouseDb

UNBOUND = 1e6  # a client budget share so large it never binds (limits-off runs)


@dataclass(frozen=True)
class Target:
    """One target: its batch size, its calls per batch, its limit (calls per window), how to build its intents and
    its sender."""

    name: str
    batch: int
    calls_per_batch: int
    limit: tuple[int, float] | None
    intents: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]
    sender: Callable[[Emulators, WarehouseDb, float, ExitStack], tuple[Any, Callable[[], int]]]


def _whistl(emu: Emulators, db: WarehouseDb, share: float, stack: ExitStack) -> tuple[Any, Callable[[], int]]:
    drop = FileDrop(
        url=f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/",
        password=emu.config.sftp_password,
        host_key=emu.sftp_host_key,
    )
    inbox = WhistlInbox(db, stack.enter_context(drop.session()), "wms_submissions")
    return inbox, lambda: inbox.files


def _peoplevox(emu: Emulators, db: WarehouseDb, share: float, stack: ExitStack) -> tuple[Any, Callable[[], int]]:
    client = PeoplevoxClient(emu.url("peoplevox"), *emu.peoplevox.credentials, budget_share=share)
    sender = PeoplevoxOrders(client)
    return sender, lambda: sender.calls


def _linnworks(emu: Emulators, db: WarehouseDb, share: float, stack: ExitStack) -> tuple[Any, Callable[[], int]]:
    client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=share)
    sender = LinnworksOrders(client)
    return sender, lambda: sender.calls


TARGETS = [
    Target("whistl", ORDERS_PER_FILE, 1, None, lambda o, ln: submission_intents(o, ln.drop("unit_price")), _whistl),
    Target(
        "peoplevox",
        PEOPLEVOX_BATCH,
        2,
        (300, 60.0),
        lambda o, ln: keyed_intents(peoplevox_payloads(o, ln), "peoplevox"),
        _peoplevox,
    ),
    Target(
        "linnworks",
        LINNWORKS_BATCH,
        1,
        (150, 60.0),
        lambda o, ln: keyed_intents(linnworks_payloads(o, ln), "linnworks"),
        _linnworks,
    ),
]
FLOWS = {"whistl": "linnworks_whistl", "peoplevox": "linnworks_peoplevox", "linnworks": "shopify_linnworks"}


def best_time(calls: int, limit: tuple[int, float]) -> float:
    """The least time a sliding window of L calls per W s lets `calls` calls through."""
    per, window = limit
    return window * math.floor((calls - 1) / per)


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def run(target: Target, n: int, rate_scale: float, workdir: Path) -> dict[str, Any]:
    """Send `n` orders to one target; what it took and what the emulator received."""
    names = ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp")
    config = EmulatorConfig(
        data_dir=workdir / f"emu_{target.name}_{rate_scale}",
        n_skus=2000,
        n_orders=0,
        rate_scale=rate_scale,
        ports=dict.fromkeys(names, 0),
    )
    db = WarehouseDb(f"duckdb:///{workdir / f'{target.name}_{rate_scale}.duckdb'}")
    ensure_tables(db)
    with Emulators(config) as emu:
        orders, lines = ready_orders(emu, n, FLOWS[target.name])
        intents = target.intents(orders, lines)
        start = time.perf_counter()
        effects.intend(db, "wms_submissions", intents)
        intend_s = time.perf_counter() - start
        with ExitStack() as stack:
            sender, calls = target.sender(emu, db, UNBOUND if rate_scale == 0 else 1.0, stack)
            start = time.perf_counter()
            report = effects.deliver(db, "wms_submissions", sender, batches=sender.batches, chunk=target.batch)
            deliver_s = time.perf_counter() - start
        if target.name == "whistl":
            emu.whistl.step()
            received = sum(emu.whistl.inspect()["receipts"].values())
        elif target.name == "peoplevox":
            received = sum(emu.peoplevox.inspect()["saves"].values())
        else:
            received = sum(len(c) for c in emu.linnworks.create_calls)
    return {
        "orders": n,
        "sent": report.sent,
        "received": received,
        "intend_s": intend_s,
        "deliver_s": deliver_s,
        "calls": calls(),
        "lower_bound": math.ceil(n / target.batch) * target.calls_per_batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000, help="orders per target with limits off")
    parser.add_argument("--limited-orders", type=int, default=20_000, help="orders per target at real limits; 0 skips")
    parser.add_argument("--only", default="", help="comma-separated targets")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    targets = [t for t in TARGETS if not wanted or t.name in wanted]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="fulfil_bench_push_") as tmp:
        print(f"\n== limits off: {args.orders:,} orders per target (2 lines each) ==")
        print("| target | sent | received | intend orders/s | deliver orders/s | calls | lower bound | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for t in targets:
            r = run(t, args.orders, 0.0, Path(tmp))
            print(
                f"| {t.name} | {r['sent']:,} | {r['received']:,} | {r['orders'] / r['intend_s']:,.0f} | "
                f"{r['orders'] / r['deliver_s']:,.0f} | {r['calls']:,} | {r['lower_bound']:,} | "
                f"{r['lower_bound'] / r['calls']:.2f} |"
            )
        print(f"peak RSS of this process (emulators included): {peak_mb():,.0f} MB")
        limited = [t for t in targets if t.limit is not None]
        if args.limited_orders and limited:
            print(f"\n== at the emulators' real limits: {args.limited_orders:,} orders per target ==")
            print("| target | limit | calls | deliver s | least the limit allows s | ratio |")
            print("|---|---|---|---|---|---|")
            for t in limited:
                assert t.limit is not None
                r = run(t, args.limited_orders, 1.0, Path(tmp))
                best = best_time(r["calls"], t.limit)
                ratio = f"{best / r['deliver_s']:.2f}" if best else "-"
                print(
                    f"| {t.name} | {t.limit[0]}/{t.limit[1]:.0f}s | {r['calls']:,} | {r['deliver_s']:.1f} | "
                    f"{best:.1f} | {ratio} |"
                )


if __name__ == "__main__":
    main()
