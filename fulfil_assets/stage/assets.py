"""Staging assets: every configured system's raw tables -> canonical `orders`, `order_lines`, `oms_stock`,
`wms_stock` and (for Peoplevox) `despatches`. Each system's rows are rebuilt whole from its raw tables (which hold
every record ever seen, merged on the system's id), so orders that left the open set keep their history."""

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets.config import FulfilConfig, is_shadow, whistl_in_shadow
from fulfil_assets.despatch.matching import match_despatches
from fulfil_assets.despatch.planning import plan_tracking, read_context, record_plan
from fulfil_assets.ledger import now_utc, open_exceptions, resolve_exceptions
from fulfil_assets.stage.cin7 import stage_cin7, unreadable_sales
from fulfil_assets.stage.despatches import peoplevox_despatches
from fulfil_assets.stage.linnworks import stage_linnworks
from fulfil_assets.stage.stock import (
    bigcommerce_stock,
    cin7_stock,
    judge_snapshot,
    latest_versions,
    linnworks_stock,
    peoplevox_stock,
    shopify_stock,
    snapshot_files,
    whistl_stock,
)
from fulfil_assets.stage.storefronts import stage_bigcommerce, stage_shopify
from resources.file_drop import FileDrop, keep_file
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb


@dataclass(frozen=True)
class Staging:
    """How one system's raw tables become canonical rows: the raw assets it depends on, the raw tables its pure
    staging function takes (in order), and that function."""

    deps: Sequence[str]
    tables: Sequence[str]
    stage: Callable[..., Any]


ORDER_STAGING = {
    "linnworks": Staging(
        ("open_orders", "processed_orders"), ("open_orders", "open_orders__items", "processed_orders"), stage_linnworks
    ),
    "cin7": Staging(("sale_list", "sales"), ("sales", "sales__order__lines", "sale_list"), stage_cin7),
    "shopify": Staging(
        ("orders", "fulfillment_orders"),
        ("orders", "orders__line_items", "orders__shipping_lines", "fulfillment_orders"),
        stage_shopify,
    ),
    "bigcommerce": Staging(
        ("orders", "order_products", "order_shipping_addresses"),
        ("orders", "order_products", "order_shipping_addresses"),
        stage_bigcommerce,
    ),
}
OMS_STOCK_STAGING = {
    "linnworks": Staging(("stock_items",), ("stock_items__stock_levels",), linnworks_stock),
    "cin7": Staging(("product_availability",), ("product_availability",), cin7_stock),
    "shopify": Staging(("inventory_levels", "products"), ("inventory_levels", "products__variants"), shopify_stock),
    "bigcommerce": Staging(("inventory_levels",), ("inventory_levels",), bigcommerce_stock),
}


def raw_table(db: WarehouseDb, system: str, table: str) -> pl.DataFrame:
    """A raw table, or an empty frame when the system's raw asset has not run yet (its first run creates every
    declared table, rows or not)."""
    schema = f"raw_{system}"
    return db.read(f"SELECT * FROM {schema}.{table}") if db.table_exists(table, schema) else pl.DataFrame()


def _keys(system: str, staging: Staging) -> list[dg.AssetKey]:
    return [dg.AssetKey([f"raw_{system}", dep]) for dep in staging.deps]


INCOMPLETE_WAIT = timedelta(minutes=10)  # a file cut short may still be being written: wait before quarantining it


def stage_whistl_snapshots(
    db: WarehouseDb, drop: FileDrop, min_ratio: float, log: Any, shadow: bool = False
) -> dict[str, Any]:
    """Judge every Whistl snapshot file not judged before (by name and content hash), record the verdicts in
    `processed_files`, move each file to `out/archive/` or `out/quarantine/` (left in place in shadow), and put
    the newest accepted one in `wms_stock`. Returns metadata."""
    now = now_utc()
    judged = db.read(
        f"SELECT file_name, content_hash, outcome, rows_kept, processed_at FROM {SCHEMA}.processed_files "
        "WHERE wms = 'whistl' AND kind = 'inv'",
        schema={"rows_kept": pl.Int64, "processed_at": pl.Datetime("us", "UTC")},
    )
    raw = latest_versions(snapshot_rows_to_stage(db, judged))
    done = set(judged.select("file_name", "content_hash").iter_rows())
    accepted = judged.filter(pl.col("outcome") == "accepted").sort("processed_at")
    last_rows = int(accepted["rows_kept"][-1]) if accepted.height else None
    verdicts: list[dict[str, Any]] = []
    files = snapshot_files(raw).sort("snapshot_at", "file_name", nulls_last=False)
    for f in files.iter_rows(named=True):
        if (f["file_name"], f["file_hash"]) in done:
            continue
        good, bad = whistl_stock(raw.filter(pl.col("_file_name") == f["file_name"]))
        if bad.height:
            db.write("quarantined_rows", bad.with_columns(pl.lit(now).alias("quarantined_at")))
        reason = judge_snapshot(f["snapshot_at"], good.height, last_rows, now, min_ratio)
        if reason is None:
            last_rows = good.height
        verdicts.append({**f, "rows_read": f["rows"], "rows_kept": good.height, "reason": reason})
    unreadable = raw_table(db, "whistl", "unreadable_files")
    if unreadable.height:
        unreadable = unreadable.filter(pl.col("_file_name").str.to_lowercase().str.starts_with("inv_"))
        for name, digest, reason, modified in unreadable.select(
            "_file_name", "_file_hash", "reason", "_file_modified_at"
        ).iter_rows():
            if (name, digest) in done or (reason.startswith("no line break") and now - modified < INCOMPLETE_WAIT):
                continue
            verdicts.append({"file_name": name, "file_hash": digest, "rows_read": 0, "rows_kept": 0, "reason": reason})
    if verdicts:
        record_snapshot_verdicts(db, verdicts, now, log)
    if not shadow:  # judged files leave out/ (also those judged while the flows were in shadow)
        file_judged_snapshots(db, drop)
    return apply_newest_snapshot(db, raw, files)


def snapshot_rows_to_stage(db: WarehouseDb, judged: pl.DataFrame) -> pl.DataFrame:
    """The raw snapshot rows staging needs: every version of each file whose newest version is not in `judged`
    (`processed_files` rows of Whistl's stock files, by name and content hash), and of the newest accepted file,
    which a newer one may replace. Every snapshot ever taken in is kept raw (2,000 rows a file, one a minute in the
    live bench): reading them all grew without end."""
    if not db.table_exists("stock_snapshots", "raw_whistl"):
        return pl.DataFrame()
    files = snapshot_files(
        latest_versions(
            db.read(
                "SELECT DISTINCT _file_name, _file_hash, _file_modified_at, snapshot_at FROM raw_whistl.stock_snapshots"
            )
        )
    )
    verdicts = judged.select("file_name", pl.col("content_hash").alias("file_hash"), "outcome")
    unjudged = files.join(verdicts, on=["file_name", "file_hash"], how="anti")["file_name"].to_list()
    accepted = files.join(verdicts.filter(pl.col("outcome") == "accepted"), on=["file_name", "file_hash"], how="semi")
    names = unjudged + accepted.sort("snapshot_at", "file_name", nulls_last=False)["file_name"].tail(1).to_list()
    if not names:
        return pl.DataFrame()
    wanted = db.any_of("_file_name", "names")
    return db.read(f"SELECT * FROM raw_whistl.stock_snapshots WHERE {wanted}", {"names": names})


def record_snapshot_verdicts(db: WarehouseDb, verdicts: list[dict[str, Any]], now: datetime, log: Any) -> None:
    """Processed-files rows and exceptions for the warehouse owner."""
    frame = pl.DataFrame(
        [
            {
                "wms": "whistl",
                "file_name": v["file_name"],
                "size": 0,
                "content_hash": v["file_hash"],
                "kind": "inv",
                "outcome": "quarantined" if v["reason"] else "accepted",
                "detail": v["reason"],
                "rows_read": v["rows_read"],
                "rows_kept": v["rows_kept"],
                "processed_at": now,
            }
            for v in verdicts
        ]
    )
    db.write("processed_files", frame, mode="upsert", key=["wms", "file_name", "content_hash"])
    rejected = frame.filter(pl.col("outcome") == "quarantined")
    if rejected.height:
        exceptions = rejected.select(
            pl.format("whistl:file:{}", "file_name").alias("order_key"),
            pl.lit("stock_snapshot").alias("rule"),
            pl.lit("SNAPSHOT_REJECTED").alias("reason_code"),
            pl.format(
                "Stock file {} not applied: {}. The last good snapshot stays in use.", "file_name", "detail"
            ).alias("detail"),
            pl.lit("warehouse").alias("owner"),
            pl.lit(now).alias("first_seen"),
            pl.lit(now).alias("last_seen"),
            pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("resolved_at"),
        )
        db.write("order_exceptions", exceptions, mode="upsert", key=["order_key", "rule"])
        for name, detail in rejected.select("file_name", "detail").iter_rows():
            log.error(f"{name}: stock snapshot quarantined: {detail}")


def file_judged_snapshots(db: WarehouseDb, drop: FileDrop) -> None:
    """Move each stock file still in `out/` that has been judged (the same name and content) to `out/archive/` or
    `out/quarantine/` by its verdict."""
    judged = db.read(
        f"SELECT file_name, content_hash, outcome FROM {SCHEMA}.processed_files WHERE wms = 'whistl' AND kind = 'inv'"
    )
    verdict = {(n, h): o for n, h, o in judged.iter_rows()}
    names = {n for n, _ in verdict}
    with drop.session() as session:
        for f in session.list("out", "*"):
            if f.name not in names:
                continue
            digest = hashlib.sha256(session.read("out", f.name)).hexdigest()
            outcome = verdict.get((f.name, digest))
            if outcome is not None:
                keep_file(session, f.name, "out/archive" if outcome == "accepted" else "out/quarantine", digest)


def apply_newest_snapshot(db: WarehouseDb, raw: pl.DataFrame, files: pl.DataFrame) -> dict[str, Any]:
    """Put the newest accepted snapshot of `files` (`snapshot_files(raw)`) in `wms_stock`. Returns metadata."""
    accepted = db.read(
        f"SELECT file_name, content_hash FROM {SCHEMA}.processed_files "
        "WHERE wms = 'whistl' AND kind = 'inv' AND outcome = 'accepted'"
    )
    if accepted.is_empty() or raw.is_empty():
        return {"whistl_snapshot": "none accepted yet"}
    files = files.join(accepted.rename({"content_hash": "file_hash"}), on=["file_name", "file_hash"], how="semi")
    if files.is_empty():
        return {"whistl_snapshot": "none accepted yet"}
    newest = files.sort("snapshot_at", "file_name")["file_name"][-1]
    good, bad = whistl_stock(raw.filter(pl.col("_file_name") == newest))
    db.write("wms_stock", good, mode="replace", replace_where="wms = 'whistl'")
    return {
        "whistl_snapshot": newest,
        "whistl_skus": good.height,
        "whistl_units_available": int(good["available"].sum() or 0),
        "whistl_rows_quarantined": bad.height,
    }


def stage_assets(config: FulfilConfig) -> list[dg.AssetsDefinition]:
    """Staging assets for the systems fulfil.yaml configures."""
    systems = config.systems
    oms = [name for name in ORDER_STAGING if getattr(systems, name) is not None]
    deps = [key for name in oms for key in _keys(name, ORDER_STAGING[name])]

    @dg.multi_asset(
        group_name="stage",
        specs=[
            dg.AssetSpec(
                "orders",
                deps=deps,
                description="Canonical orders from every OMS: one row per order, keyed `<system>:<id>`, with "
                "the ship-to address, chosen shipping method, paid flag and status.",
            ),
            dg.AssetSpec("order_lines", deps=deps, description="Canonical order lines: SKU, quantity and price."),
        ],
    )
    def staged_orders(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
        """Stage each configured OMS's raw orders into the canonical tables, one system's rows at a time."""
        with warehouse.session() as db:
            counts: dict[str, int] = {}
            all_orders, all_lines = [], []
            for name in oms:
                staging = ORDER_STAGING[name]
                orders, lines = staging.stage(*(raw_table(db, name, t) for t in staging.tables))
                if name == "cin7":  # a sale Cin7 would not return is held alone (not staged), with an exception
                    unreadable = raw_table(db, name, "unreadable_sales")
                    problems, readable = unreadable_sales(
                        unreadable, raw_table(db, name, "sales"), raw_table(db, name, "sale_list")
                    )
                    open_exceptions(db, problems, "source_read", now_utc())
                    resolve_exceptions(db, "source_read", readable, now_utc())
                    held = problems["order_key"].implode()  # its last good version must not go on as if current
                    orders = orders.filter(~pl.col("order_key").is_in(held))
                    lines = lines.filter(~pl.col("order_key").is_in(held))
                orders = orders.with_columns(pl.lit(now_utc()).alias("staged_at"))
                db.write("orders", orders, mode="replace", replace_where=f"source_system = '{name}'")
                db.write("order_lines", lines, mode="replace", replace_where=f"order_key LIKE '{name}:%'")
                counts[name] = orders.height
                all_orders.append(orders.select("status", "paid"))
                all_lines.append(lines.select("quantity"))
            orders = (
                pl.concat(all_orders) if all_orders else pl.DataFrame(schema={"status": pl.String, "paid": pl.Boolean})
            )
            lines = pl.concat(all_lines) if all_lines else pl.DataFrame(schema={"quantity": pl.Int64})
            context.log.info(f"staged orders per system: {counts}")
            yield dg.MaterializeResult(
                asset_key="orders",
                metadata={
                    "dagster/row_count": orders.height,
                    "by_system": dg.MetadataValue.json(counts),
                    "by_status": dg.MetadataValue.json(dict(orders.group_by("status").len().iter_rows())),
                    "paid_open": int(orders.filter(pl.col("paid") & (pl.col("status") == "open")).height),
                },
            )
            yield dg.MaterializeResult(
                asset_key="order_lines",
                metadata={"dagster/row_count": lines.height, "units": int(lines["quantity"].sum() or 0)},
            )

    stock_systems = [name for name in OMS_STOCK_STAGING if getattr(systems, name) is not None]

    @dg.asset(
        group_name="stage",
        deps=[key for name in stock_systems for key in _keys(name, OMS_STOCK_STAGING[name])],
    )
    def oms_stock(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """What each order system shows as stock, per SKU and location (the OMS side of stock reconciliation)."""
        with warehouse.session() as db:
            levels: dict[str, int] = {}
            for name in stock_systems:
                staging = OMS_STOCK_STAGING[name]
                frame = staging.stage(*(raw_table(db, name, t) for t in staging.tables), now_utc())
                db.write("oms_stock", frame, mode="replace", replace_where=f"oms = '{name}'")
                levels[name] = frame.height
            return dg.MaterializeResult(
                metadata={"dagster/row_count": sum(levels.values()), "by_system": dg.MetadataValue.json(levels)}
            )

    wms_deps = []
    if systems.whistl is not None:
        wms_deps.append(dg.AssetKey(["raw_whistl", "stock_snapshots"]))
    if systems.peoplevox is not None:
        wms_deps.append(dg.AssetKey(["raw_peoplevox", "available"]))

    min_ratio = systems.whistl.snapshot_min_ratio if systems.whistl is not None else 0.0

    @dg.asset(
        group_name="stage",
        deps=wms_deps,
        kinds={"polars"},
        # Whistl's drop only when Whistl is configured (its files are archived or quarantined here).
        required_resource_keys={"warehouse", "whistl_drop"}
        if systems.whistl is not None
        else {"warehouse"},  # the drop only with Whistl
    )
    def wms_stock(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """What each warehouse physically holds (and so its item catalogue): Whistl's newest snapshot file that
        can be trusted as the whole catalogue, and Peoplevox's `Available` report. Each Whistl file is judged
        once: one that is unreadable, empty, cut short, far smaller than the last good one or dated in the
        future is quarantined (moved to `out/quarantine/`, an exception for the warehouse owner) and the last
        good snapshot stays; its unusable rows are quarantined with their reason."""
        with context.resources.warehouse.session() as db:
            metadata: dict[str, Any] = {}
            if systems.whistl is not None:
                drop = context.resources.whistl_drop
                metadata |= stage_whistl_snapshots(db, drop, min_ratio, context.log, whistl_in_shadow(config))
            if systems.peoplevox is not None:
                frame = peoplevox_stock(raw_table(db, "peoplevox", "available"), now_utc())
                db.write("wms_stock", frame, mode="replace", replace_where="wms = 'peoplevox'")
                metadata |= {
                    "peoplevox_skus": frame.height,
                    "peoplevox_units_available": int(frame["available"].sum() or 0),
                }
            return dg.MaterializeResult(metadata=metadata)

    assets: list[Any] = [staged_orders, oms_stock, wms_stock]
    if systems.peoplevox is not None:
        flows = {flow: is_shadow(config, flow) for flow in config.flows}

        @dg.asset(
            group_name="stage",
            deps=[dg.AssetKey(["raw_peoplevox", "despatches"])],
            kinds={"peoplevox"},
        )
        def peoplevox_despatch_lines(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
            """Peoplevox despatches as `despatches` rows (wms `peoplevox`), checked by the same despatch matcher
            as Whistl's files (an order fulfil never sent, an item the order lacks, more than ordered: an
            exception for the warehouse owner, and no tracking from fulfil: a person checks it); each new despatch of a
            matched order plans its tracking posts (Linnworks: tracking, then processed once complete)."""
            now = now_utc()
            with warehouse.session() as db:
                sent = db.read(f"SELECT order_ref, order_key FROM {SCHEMA}.wms_submissions WHERE wms = 'peoplevox'")
                rows = peoplevox_despatches(raw_table(db, "peoplevox", "despatches"), sent)
                key = ["wms", "despatch_ref", "line_no", "parcel_no"]
                known = db.read(
                    f"SELECT wms, despatch_ref, line_no, parcel_no, order_key FROM {SCHEMA}.despatches "
                    "WHERE wms = 'peoplevox'",
                    schema={"wms": pl.String, "despatch_ref": pl.String, "line_no": pl.Int32, "parcel_no": pl.Int32},
                )
                # Rows never seen, and rows matched to an order only now (its submission was recorded after the
                # despatch): each is judged once. A row of an order fulfil never sent is kept (unmatched) and its
                # exception opened when first seen, not again at every poll.
                unseen = rows.join(known, on=key, how="anti")
                matched_now = rows.drop_nulls("order_key").join(
                    known.filter(pl.col("order_key").is_null()).select(key), on=key, how="semi"
                )
                new = pl.concat([unseen, matched_now])
                # Read once what these orders need, decide, then write.
                ctx = read_context(db, "peoplevox", new["order_key"].drop_nulls().unique().to_list())
                earlier = ctx.earlier.join(new.select(key), on=key, how="anti")
                matched, problems = match_despatches(new.drop("order_key"), sent, ctx.lines, earlier, by="sku")
                current = rows.filter(pl.col("order_key").is_in(ctx.owners["order_key"].implode()))
                written = pl.concat(
                    [ctx.earlier.join(current.select(key), on=key, how="anti"), current], how="vertical_relaxed"
                )  # what the table holds for these orders once `rows` are written: the plan counts that
                source = "Peoplevox Despatches"
                plan = plan_tracking("peoplevox", matched, problems, source, replace(ctx, earlier=written))
                db.write("despatches", rows, mode="upsert", key=key)
                open_exceptions(db, problems, "despatch_match", now)
                # An order once unknown, now matched (its submission was recorded late): no longer a stranger.
                found = [f"peoplevox:{r}" for r in matched_now["order_ref"].unique().to_list()]
                resolve_exceptions(db, "despatch_match", found, now)
                record_plan(db, "peoplevox", plan, now, flows)
                return dg.MaterializeResult(
                    metadata={
                        "dagster/row_count": rows.height,
                        "new_rows": new.height,
                        "unmatched": int(rows["order_key"].is_null().sum()),
                        "problems": problems.height,
                        "units": int(rows["quantity"].sum() or 0),
                        "tracking_posts_planned": plan.intents.height,
                        "short_shipped_orders": plan.short_shipped,
                    }
                )

        assets.append(peoplevox_despatch_lines)
    return assets
