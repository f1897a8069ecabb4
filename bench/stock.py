"""Benchmark: available to sell and stock pushes to each order system, through the effect module, against the
emulators, into a fresh DuckDB warehouse.

The catalogue is `--skus` SKUs at every location each emulator stocks (Linnworks 3, BigCommerce 2, Shopify 2,
Cin7 Core 1). The warehouse figure changes for `--changed` (default 2%) of the SKU x location pairs after a first
push, and the second push is measured:
- with limits off: the time to compute available to sell for the whole catalogue (`available_to_sell` +
  `deltas`), the time to intend and deliver the changed levels, and the calls made beside the lower bound
  ceil(changed / batch maximum) (target: equal);
- at the emulators' real limits: the delivery time beside the least time the limit allows for those calls
  (Linnworks 250 SetStockLevel a minute, Cin7 Core 60 calls a minute, BigCommerce 150 calls per 30 s, Shopify's
  GraphQL cost bucket: 2,000 points restored at 100/s, a call costing 10 + 1 per quantity). Target within 10%.

    python bench/stock.py [--skus 50000] [--changed 0.02] [--only linnworks,cin7,bigcommerce,shopify]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from emulators.linnworks import LOCATION_NAMES
from emulators.server import EmulatorConfig, Emulators
from emulators.shopify import GRAPHQL_BUCKET, GRAPHQL_RESTORE_PER_S
from fulfil_assets import effects
from fulfil_assets.ledger import now_utc
from fulfil_assets.stock.ats import available_to_sell, deltas
from fulfil_assets.stock.pushes import (
    TABLE,
    BigCommerceStock,
    Cin7Stock,
    LinnworksStock,
    ShopifyStock,
    last_confirmed,
    payloads,
    push_intents,
)
from fulfil_assets.warehouse_tables import ensure_tables
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.limits import STOCK_BATCH_MAXIMUM
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient
from resources.warehouse import SCHEMA, WarehouseDb

UNBOUND = 1e6  # a client budget share so large it never binds (limits-off runs)
SYSTEMS = ("linnworks", "cin7", "bigcommerce", "shopify")
NO_BUNDLES = pl.DataFrame(schema={"bundle_sku": pl.String, "component_sku": pl.String, "quantity": pl.Int64})


def listed(emu: Emulators, oms: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Every (location, SKU) the emulated order system stocks, and the item identities its pushes need."""
    if oms == "linnworks":
        pairs = [(loc, sku) for sku, loc in emu.linnworks.stock]
        return pl.DataFrame(pairs, schema=["location", "sku"], orient="row"), None
    if oms == "cin7":
        return pl.DataFrame({"location": "Main Warehouse", "sku": list(emu.cin7.available)}), None
    if oms == "bigcommerce":
        store = emu.bigcommerce
        pairs = [(str(loc), sku) for sku, loc in store.inventory]
        # Set every SKU by SKU: only variant-tracked products (the product-tracked ones are a catalogue detail).
        by_sku = pl.DataFrame(pairs, schema=["location", "sku"], orient="row").filter(
            ~pl.col("sku").map_elements(store.tracked_by_product, return_dtype=pl.Boolean)
        )
        items = (
            by_sku.select("sku")
            .unique()
            .with_columns(
                pl.lit(None, pl.Int64).alias("product_id"),
                pl.lit("variant").alias("inventory_tracking"),
                pl.lit(None, pl.String).alias("product_sku"),
            )
        )
        return by_sku, items
    shop = emu.shopify
    pairs = [(str(loc), shop.inventory_items[item]) for item, loc in shop.levels]
    items = pl.DataFrame(
        {"sku": list(shop.inventory_items.values()), "inventory_item_id": list(shop.inventory_items.keys())}
    )
    return pl.DataFrame(pairs, schema=["location", "sku"], orient="row"), items


def sender(emu: Emulators, oms: str, share: float) -> Any:
    """The product's own sender for `oms`, on a client with budget share `share`."""
    if oms == "linnworks":
        return LinnworksStock(LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=share))
    if oms == "cin7":
        return Cin7Stock(Cin7Client(emu.url("cin7"), *emu.cin7.credentials, budget_share=share), now_utc())
    if oms == "bigcommerce":
        client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=share)
        return BigCommerceStock(client)
    return ShopifyStock(ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=min(share, 1.0)))


def least_time(oms: str, calls: int, quantities: int) -> float:
    """The least time the emulator's limit lets these calls through (sliding windows; Shopify's cost bucket)."""
    if oms == "shopify":
        cost = 10 * calls + quantities
        return max(0.0, (cost - GRAPHQL_BUCKET) / GRAPHQL_RESTORE_PER_S)
    per, window = {"linnworks": (250, 60.0), "cin7": (60, 60.0), "bigcommerce": (150, 30.0)}[oms]
    return window * math.floor((calls - 1) / per) if calls else 0.0


def push(db: WarehouseDb, frame: pl.DataFrame, oms: str, items: pl.DataFrame | None, target: Any) -> dict[str, Any]:
    """Intend and deliver the due rows of `frame` (as the stock asset does); timings and calls."""
    ledger = db.read(
        f"SELECT idempotency_key, status, location, sku, level FROM {SCHEMA}.{TABLE}", schema={"level": pl.Int64}
    )
    due = frame.filter(pl.col("to_push"))
    start = time.perf_counter()
    intents, older = push_intents(payloads(due, oms, items), ledger, "bench", oms)
    effects.record(db, TABLE, older, effects.Outcome(effects.HELD, error="superseded"))
    effects.intend(db, TABLE, intents)
    intend_s = time.perf_counter() - start
    start = time.perf_counter()
    report = effects.deliver(db, TABLE, target, batches=target.batches, chunk=max(effects.CLAIM_CHUNK, target.batch))
    return {
        "changed": intents.height,
        "sent": report.sent,
        "intend_s": intend_s,
        "deliver_s": time.perf_counter() - start,
        "calls": target.calls,
        "lower_bound": math.ceil(intents.height / target.batch),
    }


def run(oms: str, n_skus: int, changed: float, rate_scale: float, workdir: Path) -> dict[str, Any]:
    """A first push of the whole catalogue (unmeasured), then the measured push after `changed` moved."""
    names = ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp")
    config = EmulatorConfig(
        data_dir=workdir / f"emu_{oms}_{rate_scale}",
        n_skus=n_skus,
        n_orders=0,
        rate_scale=rate_scale,
        ports=dict.fromkeys(names, 0),
    )
    db = WarehouseDb(f"duckdb:///{workdir / f'{oms}_{rate_scale}.duckdb'}")
    ensure_tables(db)
    rng = random.Random(7)
    with Emulators(config) as emu, db.session():
        pairs, items = listed(emu, oms)
        locations = pairs.select("location").unique().with_columns(pl.col("location").alias("source_location"))
        source = pairs.select(pl.col("location").alias("source_location"), "sku").with_columns(
            pl.Series("available", [rng.choice((0, 3, 12, 40, 150, 600)) for _ in range(pairs.height)])
        )
        unsent = pl.DataFrame(schema={"sku": pl.String, "open_unsent": pl.Int64})
        buffers = pl.DataFrame(schema={"sku": pl.String, "buffer": pl.Int64})
        oms_levels = pairs.with_columns(pl.lit(0, pl.Int64).alias("level"))

        def compute() -> tuple[pl.DataFrame, float]:
            start = time.perf_counter()
            ledger = db.read(f"SELECT location, sku, level, status, idempotency_key FROM {SCHEMA}.{TABLE}")
            ats = available_to_sell(source, locations, oms_levels, unsent, buffers, NO_BUNDLES, 0)
            return deltas(ats, last_confirmed(ledger), "bench", oms), time.perf_counter() - start

        frame, _ = compute()
        # The catalogue as already pushed and confirmed (recorded, not sent: the limits start fresh for the
        # measured push).
        first, _ = push_intents(
            payloads(frame.filter(pl.col("to_push")), oms, items),
            db.read(
                f"SELECT idempotency_key, status, location, sku, level FROM {SCHEMA}.{TABLE}",
                schema={"level": pl.Int64},
            ),
            "bench",
            oms,
        )
        effects.intend(db, TABLE, first)
        db.execute(f"UPDATE {SCHEMA}.{TABLE} SET status = '{effects.SENT}'")
        moved = rng.sample(range(source.height), k=int(source.height * changed))
        source = source.with_columns(
            pl.when(pl.int_range(pl.len()).is_in(moved)).then(pl.col("available") + 1).otherwise("available")
        )
        frame, compute_s = compute()
        share = UNBOUND if rate_scale == 0 else 1.0
        measured = push(db, frame, oms, items, sender(emu, oms, share))
    return {"pairs": pairs.height, "locations": locations.height, "compute_s": compute_s, **measured}


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--changed", type=float, default=0.02)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    systems = [s for s in SYSTEMS if not wanted or s in wanted]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    print(f"Linnworks locations in the emulator: {len(LOCATION_NAMES)}; batch maximum per call: {STOCK_BATCH_MAXIMUM}")
    with tempfile.TemporaryDirectory(prefix="fulfil_bench_stock_") as tmp:
        print(f"\n== limits off: {args.skus:,} SKUs, {args.changed:.0%} of SKU x location changed ==")
        print("| system | SKU x location | ATS s | changed | sent | intend+deliver s | calls | lower bound | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for oms in systems:
            r = run(oms, args.skus, args.changed, 0.0, Path(tmp))
            print(
                f"| {oms} | {r['pairs']:,} ({r['locations']} loc) | {r['compute_s']:.2f} | {r['changed']:,} | "
                f"{r['sent']:,} | {r['intend_s'] + r['deliver_s']:.2f} | {r['calls']} | {r['lower_bound']} | "
                f"{r['lower_bound'] / max(r['calls'], 1):.2f} |"
            )
        print(f"peak RSS of this process (emulators included): {peak_mb():,.0f} MB")
        print("\n== at the emulators' real limits ==")
        print("| system | changed | calls | deliver s | least the limit allows s | ratio |")
        print("|---|---|---|---|---|---|")
        for oms in systems:
            r = run(oms, args.skus, args.changed, 1.0, Path(tmp))
            best = least_time(oms, r["calls"], r["changed"])
            ratio = f"{best / r['deliver_s']:.2f}" if best else "- (inside one window)"
            print(f"| {oms} | {r['changed']:,} | {r['calls']} | {r['deliver_s']:.1f} | {best:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
