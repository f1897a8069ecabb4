"""Benchmark: the emulators' world generator on a peak day (100,000 orders over 50,000 SKUs).

Baseline, run side by side in this process: the same number of customers made with Faker's en_GB provider
(name, street address, postcode, phone), the tool such generators are usually built on.
Also printed: how far above the fastest ingestion any system's published rate limit allows the generator is,
so it can never be the bottleneck of an ingestion benchmark.

    python bench/generate.py [--orders 100000] [--skus 50000] [--baseline-sample 20000]
"""

import argparse
import resource
import time
from datetime import timedelta

from faker import Faker

from emulators.linnworks import Linnworks
from emulators.world import World

# Fastest order listing each system's published limit allows: page size x pages per second.
RATE_LIMITS = {
    "Linnworks GetOpenOrders (200 x 250/min)": 200 * 250 / 60,
    "Cin7 saleList (1000 x 60/min)": 1000 * 60 / 60,
    "Shopify orders.json (250 x 2/s)": 250 * 2,
    "BigCommerce v2 orders (250 x 150/30s)": 250 * 150 / 30,
}


def faker_customers(n: int) -> float:
    """Seconds to make `n` en_GB customers with Faker."""
    fake = Faker("en_GB")
    Faker.seed(7)
    start = time.perf_counter()
    for _ in range(n):
        fake.name(), fake.street_address(), fake.city(), fake.postcode(), fake.phone_number(), fake.email()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--baseline-sample", type=int, default=20_000)
    args = parser.parse_args()

    start = time.perf_counter()
    world = World(7, args.skus)
    catalogue_s = time.perf_counter() - start
    start = time.perf_counter()
    orders = world.make_orders("linnworks", args.orders, world.start, world.start + timedelta(days=1))
    orders_s = time.perf_counter() - start
    lines = sum(len(o.lines) for o in orders)
    # Rendering in a system's own shape is part of serving: time it on the same orders.
    lw = Linnworks(world, n_orders=0)
    start = time.perf_counter()
    for order in orders:
        lw.render_open(order)
    render_s = time.perf_counter() - start
    ours_per_s = args.orders / orders_s
    sample = min(args.baseline_sample, args.orders)
    faker_s = faker_customers(sample)
    faker_per_s = sample / faker_s
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"catalogue: {len(world.products):,} items ({args.skus:,} SKUs + bundles) in {catalogue_s:.2f} s")
    print(f"orders:    {args.orders:,} orders, {lines:,} lines in {orders_s:.2f} s = {ours_per_s:,.0f} orders/s")
    print(f"render:    Linnworks OpenOrder JSON for all of them in {render_s:.2f} s = {args.orders / render_s:,.0f}/s")
    print(f"baseline:  Faker en_GB customers: {sample:,} in {faker_s:.2f} s = {faker_per_s:,.0f}/s")
    print(f"ratio:     world generator (whole orders) is {ours_per_s / faker_per_s:.1f}x Faker (customers only)")
    served = min(ours_per_s, args.orders / render_s)
    for name, limit in RATE_LIMITS.items():
        print(f"headroom:  {served / limit:,.0f}x the fastest order read {name} allows ({limit:,.0f} orders/s)")
    print(f"peak RSS:  {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
