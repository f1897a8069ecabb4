"""Validation assets: verdicts per order and rule, the exceptions people act on, and the GX record."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from fulfil_assets.ledger import now_utc
from fulfil_assets.validate.gx_run import run_gx
from fulfil_assets.validate.mappings import load_bundles, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, merge_exceptions, prepare_lines, wms_ready_orders
from fulfil_assets.validate.suites import load_suite
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

WMS = "whistl"
RULES = ("sku_mapping", "sku_format", "sku_known", "quantity", "phone", "postcode", "address", "service")
SENT = "('sending', 'sent', 'acknowledged', 'despatched')"  # orders that (may) have reached the WMS
DOCS_KEPT = 48  # Data Docs of the newest runs; older ones are removed


def _prune_docs(root: Path, keep: int) -> None:
    """Keep the Data Docs of the newest `keep` runs."""
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


class ValidationConfig(dg.Config):
    """Where the suites and mapping tables live, and whether to record a GX run beside the verdicts."""

    expectations_dir: str = "expectations"
    run_great_expectations: bool = True


def _write_wms_lines(db: WarehouseDb, frame: pl.DataFrame) -> None:
    """The lines each order will have at the WMS; frozen once the order is sent."""
    sent = db.read(f"SELECT order_key FROM {SCHEMA}.wms_submissions WHERE status IN {SENT}")
    rows = (
        frame.filter(pl.col("wms_line_no").is_not_null())
        .join(sent, on="order_key", how="anti")
        .select(
            "order_key",
            pl.lit(WMS).alias("wms"),
            "wms_line_no",
            pl.col("line_no").alias("source_line_no"),
            pl.col("wms_sku").alias("sku"),
            "quantity",
        )
    )
    db.write(
        "wms_order_lines",
        rows,
        mode="replace",
        replace_where=(
            f"wms = '{WMS}' AND order_key NOT IN "
            f"(SELECT order_key FROM {SCHEMA}.wms_submissions WHERE status IN {SENT})"
        ),
    )


@dg.multi_asset(
    group_name="validate",
    specs=[
        dg.AssetSpec(
            "validated_orders",
            deps=["orders", "order_lines", "wms_stock"],
            description="Each open order's verdict per rule of `expectations/whistl.json`, the values the "
            "warehouse will get (normalised phone and postcode, exact service code, bundles "
            "expanded into component lines), and whether it is ready to send.",
        ),
        dg.AssetSpec(
            "order_exceptions",
            deps=["orders"],
            description="Orders held back, one row per failing rule: reason code, a detail a person can "
            "act on, owner (warehouse, office, cx), first and last seen. An exception "
            "resolves itself when a later run finds the order passes.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            f"rule_{r}",
            asset="validated_orders",
            description=f"Open orders failing the `{r}` rule (they are held back)",
        )
        for r in RULES
    ]
    + [
        dg.AssetCheckSpec(
            "great_expectations_agrees",
            asset="validated_orders",
            description="GX's own unexpected counts equal the polars verdicts, expectation by expectation",
        )
    ],
    op_tags={"fulfil/warehouse": "write"},
)
def validation(
    context: dg.AssetExecutionContext, config: ValidationConfig, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Check every open order against its warehouse's suite; one bad line holds the whole order."""
    db = warehouse.get_db()
    now = now_utc()
    exp_dir = Path(config.expectations_dir)
    suite = load_suite(WMS, exp_dir)
    orders = db.read(f"SELECT * FROM {SCHEMA}.orders WHERE status = 'open'")
    lines = db.read(f"SELECT * FROM {SCHEMA}.order_lines")
    catalogue = db.read(f"SELECT sku FROM {SCHEMA}.wms_stock WHERE wms = '{WMS}'")
    parameters = {} if catalogue.is_empty() else {"wms_catalogue": catalogue["sku"].to_list()}
    if catalogue.is_empty():
        context.log.warning("no Whistl stock snapshot yet: SKU_UNKNOWN_AT_WMS is not checked this run")
    frame = prepare_lines(
        orders,
        lines,
        WMS,
        load_service_codes(exp_dir / "service_codes.csv"),
        load_variant_skus(exp_dir / "variant_skus.csv"),
        load_bundles(exp_dir / "bundles.csv"),
    )
    failures, verdicts = check_orders(frame, suite, parameters)
    ready = wms_ready_orders(orders, verdicts)
    failing = verdicts.filter(~pl.col("passed"))
    first = frame.unique("order_key", keep="first")
    validated = first.select(
        "order_key",
        pl.lit(WMS).alias("wms"),
        "service_code",
        pl.col("phone_wms").alias("phone_normalised"),
        pl.col("postcode_norm").alias("postcode_normalised"),
        (~pl.col("order_key").is_in(failing["order_key"].implode())).alias("passed"),
        pl.col("order_key").is_in(ready["order_key"].implode()).alias("ready"),
        "content_hash",
        pl.lit(now).alias("validated_at"),
    )
    db.write(
        "order_verdicts",
        verdicts.with_columns(pl.lit(now).alias("checked_at")),
        mode="upsert",
        key=["order_key", "rule"],
    )
    db.write("validated_orders", validated, mode="upsert", key=["order_key"])
    _write_wms_lines(db, frame)
    existing = db.read(
        f"SELECT * FROM {SCHEMA}.order_exceptions WHERE rule NOT IN ('wms_acceptance', 'despatch_match')"
    )
    db.write(
        "order_exceptions",
        merge_exceptions(existing, verdicts, now),
        mode="upsert",
        key=["order_key", "rule"],
        update=["reason_code", "detail", "owner", "last_seen", "resolved_at"],
    )

    by_reason = dict(failing.group_by("reason_code").len().sort("reason_code").iter_rows())
    polars_counts = dict(failures.group_by("expectation").len().iter_rows())
    gx_meta: dict[str, dg.MetadataValue] = {}
    if config.run_great_expectations:
        docs_root = Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "gx_docs"
        gx = run_gx(frame, suite, parameters, docs_root / context.run_id)
        _prune_docs(docs_root, keep=DOCS_KEPT)
        disagree = {i: (n, polars_counts.get(i, 0)) for i, n in gx.unexpected.items() if n != polars_counts.get(i, 0)}
        gx_meta = {"gx_unexpected_by_expectation": dg.MetadataValue.json({str(k): v for k, v in gx.unexpected.items()})}
        if gx.docs_index:
            gx_meta["gx_data_docs"] = dg.MetadataValue.url(gx.docs_index.resolve().as_uri())
        yield dg.AssetCheckResult(
            check_name="great_expectations_agrees",
            asset_key="validated_orders",
            passed=not disagree and not gx.errors,
            metadata={
                "disagreements": dg.MetadataValue.json(
                    {str(k): {"gx": a, "polars": b} for k, (a, b) in disagree.items()}
                ),
                "gx_errors": dg.MetadataValue.json(gx.errors),
            },
        )
    else:
        yield dg.AssetCheckResult(
            check_name="great_expectations_agrees",
            asset_key="validated_orders",
            passed=True,
            metadata={"skipped": "run_great_expectations is off"},
        )
    ran = set(verdicts["rule"].unique().to_list())
    for rule in RULES:
        n = int(failing.filter(pl.col("rule") == rule).height)
        yield dg.AssetCheckResult(
            check_name=f"rule_{rule}",
            asset_key="validated_orders",
            passed=n == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failing_orders": n, "evaluated": rule in ran},
        )
    yield dg.MaterializeResult(
        asset_key="validated_orders",
        metadata={
            "orders_checked": orders.height,
            "wms_lines_checked": frame.height,
            "ready": ready.height,
            "held": orders.height - int(validated["passed"].sum()),
            "failures_by_reason": dg.MetadataValue.json(by_reason),
            **gx_meta,
        },
    )
    open_ex = db.read(
        f"SELECT order_key, reason_code, owner, detail, last_seen FROM {SCHEMA}.order_exceptions "
        "WHERE resolved_at IS NULL ORDER BY last_seen DESC, order_key LIMIT 20"
    )
    table = "| order | reason | owner | detail |\n|---|---|---|---|\n" + "\n".join(
        f"| {r['order_key']} | {r['reason_code']} | {r['owner']} | {r['detail']} |"
        for r in open_ex.iter_rows(named=True)
    )
    total_open = int(db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL")["n"][0])
    yield dg.MaterializeResult(
        asset_key="order_exceptions",
        metadata={
            "open_exceptions": total_open,
            "by_reason": dg.MetadataValue.json(by_reason),
            "newest": dg.MetadataValue.md(table),
        },
    )
