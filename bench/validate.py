"""Benchmark: validating 1,000,000 order lines.

Measured, each on the same generated lines (edge cases included, the emulators' seeded world):
  1. polars verdicts (prepare + every rule of expectations/whistl.json), in a fresh subprocess so its peak
     memory is its own;
  2. the GX summary run of the same suite on all the lines (what each Dagster run records);
  3. the baseline: GX in COMPLETE mode (per-row results, what routing orders with GX would need), on a sample,
     scaled up linearly to the full size.
Prints the times, rows/s, peak memory and the ratio of the baseline to polars.

    python bench/validate.py [--lines 1000000] [--complete-sample 0] [--skip-gx-summary]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulators.world import World
from fulfil_assets.stage.common import ORDER_COLUMNS, conform
from fulfil_assets.validate.gx_run import run_gx
from fulfil_assets.validate.mappings import load_bundles, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, prepare_lines
from fulfil_assets.validate.suites import load_suite

EXP = Path("expectations")
# What routing orders with GX would need: every failing row, identified by its order.
PER_ROW = {"result_format": "COMPLETE", "unexpected_index_column_names": ["order_key"]}


def generate(n_lines: int, out: Path) -> None:
    """Orders from the seeded world until `n_lines` lines, written as Parquet."""
    world = World(7, 50_000)
    orders, lines, made = [], [], 0
    start = world.start
    while made < n_lines:
        batch = world.make_orders("linnworks", 50_000, start, start + timedelta(hours=6))
        start += timedelta(hours=6)
        for o in batch:
            a = o.address
            orders.append(
                (
                    f"linnworks:{o.uid}",
                    o.number,
                    o.paid,
                    a.name,
                    a.address1,
                    a.address2,
                    a.town,
                    a.postcode,
                    a.country_code,
                    a.phone,
                    a.email,
                    o.shipping_method,
                )
            )
            for li in o.lines:
                lines.append((f"linnworks:{o.uid}", li.line_no, li.sku, li.quantity))
            made += len(o.lines)
            if made >= n_lines:
                break
    cols = [
        "order_key",
        "number",
        "paid",
        "ship_name",
        "address1",
        "address2",
        "city",
        "postcode",
        "country_code",
        "phone",
        "email",
        "shipping_method",
    ]
    frame = pl.DataFrame(orders, schema=cols, orient="row").with_columns(
        pl.lit("linnworks").alias("source_system"),
        pl.lit("open").alias("status"),
        pl.format("LW{}", "number").alias("order_ref"),
    )
    conform(frame, ORDER_COLUMNS).write_parquet(out / "orders.parquet")
    pl.DataFrame(lines, schema=["order_key", "line_no", "sku", "quantity"], orient="row").write_parquet(
        out / "lines.parquet"
    )
    pl.DataFrame({"sku": world.wms_catalogue}).write_parquet(out / "catalogue.parquet")


def polars_run(data: Path) -> dict:
    """Child process: time the polars verdicts on the Parquet data and report peak memory."""
    orders = pl.read_parquet(data / "orders.parquet")
    lines = pl.read_parquet(data / "lines.parquet")
    params = {"wms_catalogue": pl.read_parquet(data / "catalogue.parquet")["sku"].to_list()}
    suite = load_suite("whistl", EXP)
    maps = (
        load_service_codes(EXP / "service_codes.csv"),
        load_variant_skus(EXP / "variant_skus.csv"),
        load_bundles(EXP / "bundles.csv"),
    )
    start = time.perf_counter()
    frame = prepare_lines(orders, lines, "whistl", *maps)
    prepared = time.perf_counter() - start
    failures, verdicts = check_orders(frame, suite, params)
    total = time.perf_counter() - start
    frame.write_parquet(data / "frame.parquet")
    return {
        "seconds": total,
        "prepare_seconds": prepared,
        "rows": frame.height,
        "orders": orders.height,
        "failures": failures.height,
        "held": int(verdicts.filter(~pl.col("passed"))["order_key"].n_unique()),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(polars_run(Path(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--complete-sample", type=int, default=0, help="0: the baseline runs on every line")
    parser.add_argument("--skip-gx-summary", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        generate(args.lines, data)
        print(f"generated {args.lines:,} lines in {time.perf_counter() - t:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(data)], capture_output=True, text=True, check=True
        )
        p = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"polars verdicts: {p['rows']:,} lines ({p['orders']:,} orders) in {p['seconds']:.2f} s "
            f"(prepare {p['prepare_seconds']:.2f} s) = {p['rows'] / p['seconds']:,.0f} lines/s; "
            f"{p['held']:,} orders held; peak memory {p['peak_mb']:,.0f} MB"
        )
        frame = pl.read_parquet(data / "frame.parquet")
        params = {"wms_catalogue": pl.read_parquet(data / "catalogue.parquet")["sku"].to_list()}
        suite = load_suite("whistl", EXP)
        if not args.skip_gx_summary:
            t = time.perf_counter()
            summary = run_gx(frame, suite, params)
            gx_s = time.perf_counter() - t
            print(
                f"GX summary run:  {frame.height:,} lines in {gx_s:.1f} s = {frame.height / gx_s:,.0f} lines/s "
                f"({gx_s / p['seconds']:.0f}x polars); errors: {summary.errors or 'none'}"
            )
        if args.complete_sample and args.complete_sample < frame.height:
            # t(n) = fixed + per_row * n, fitted on two sample sizes, so GX's fixed start-up is not scaled up.
            sizes = (args.complete_sample // 4, args.complete_sample)
            run_gx(frame.head(1000), suite, params, result_format=PER_ROW)  # warm-up: imports, first compile
            times = []
            for n in sizes:
                t = time.perf_counter()
                run_gx(frame.head(n), suite, params, result_format=PER_ROW)
                times.append(time.perf_counter() - t)
            per_row = (times[1] - times[0]) / (sizes[1] - sizes[0])
            complete_s = max(times[0] - per_row * sizes[0], 0) + per_row * frame.height
            how = f"fitted on {sizes[0]:,} lines ({times[0]:.1f} s) and {sizes[1]:,} lines ({times[1]:.1f} s)"
        else:
            t = time.perf_counter()
            run_gx(frame, suite, params, result_format=PER_ROW)
            complete_s = time.perf_counter() - t
            how = "measured on every line"
        print(f"baseline GX COMPLETE (per row): {frame.height:,} lines in {complete_s:.1f} s ({how})")
        print(
            f"ratio: polars verdicts are {complete_s / p['seconds']:,.0f}x faster than the GX COMPLETE baseline "
            f"(target >= 100x); polars under 3 s: {p['seconds'] < 3}; peak under 2 GB: {p['peak_mb'] < 2048}"
        )


if __name__ == "__main__":
    main()
