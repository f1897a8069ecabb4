"""Whistl's answers (despatch confirmations, rejections) into the warehouse, and tracking back to Linnworks."""

import hashlib
from datetime import datetime

import dagster as dg
import polars as pl

from fulfil_assets.despatch.whistl_files import (
    FileFormatError,
    match_despatches,
    parse_despatch_file,
    parse_rejection_file,
    tracking_intents,
)
from fulfil_assets.ledger import insert_new, mark, now_utc, read_ledger
from fulfil_assets.validate.rules import OWNERS
from resources.file_drop import DropSession, FileDrop
from resources.http import AuthError, DataError, TransientError
from resources.linnworks import LinnworksResource
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

FEEDBACK_PATTERNS = ("shp_*.csv", "err_*.csv")
EXCEPTION_UPDATE = ["reason_code", "detail", "owner", "last_seen", "resolved_at"]


class WhistlFilesConfig(dg.Config):
    """Which files in Whistl's `out/` folder to take in; empty means every one waiting there."""

    file_names: list[str] = []


def open_exceptions(db: WarehouseDb, problems: pl.DataFrame, rule: str, now: datetime) -> None:
    """Open (or refresh) exceptions for `order_key, reason_code, detail` rows under `rule`."""
    if problems.is_empty():
        return
    rows = problems.select(
        "order_key",
        pl.lit(rule).alias("rule"),
        "reason_code",
        "detail",
        pl.col("reason_code").replace_strict(OWNERS, default="office").alias("owner"),
        pl.lit(now).alias("first_seen"),
        pl.lit(now).alias("last_seen"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("resolved_at"),
    )
    db.write("order_exceptions", rows, mode="upsert", key=["order_key", "rule"], update=EXCEPTION_UPDATE)


def take_despatch_file(db: WarehouseDb, name: str, data: bytes, now: datetime) -> dict[str, int]:
    """Load one despatch confirmation: despatch rows, problems as exceptions, bad rows quarantined, and the
    tracking posts it calls for. Every write is keyed, so taking the same file twice changes nothing."""
    rows, bad = parse_despatch_file(data, name)
    sent = db.read(f"SELECT order_ref, order_key FROM {SCHEMA}.wms_submissions WHERE wms = 'whistl'")
    lines = db.read(
        f"SELECT order_key, wms_line_no AS line_no, quantity FROM {SCHEMA}.wms_order_lines WHERE wms = 'whistl'"
    )
    earlier = db.read(
        f"SELECT * FROM {SCHEMA}.despatches WHERE wms = 'whistl' AND order_ref IN "
        f"(SELECT DISTINCT order_ref FROM {SCHEMA}.wms_submissions)"
    )
    matched, problems = match_despatches(
        rows,
        sent,
        lines,
        earlier,
    )
    db.write("despatches", matched, mode="upsert", key=["wms", "despatch_ref", "line_no", "parcel_no"])
    open_exceptions(db, problems, "despatch_match", now)
    if bad.height:
        db.write(
            "quarantined_rows",
            bad.with_columns(pl.lit("whistl_despatch").alias("source"), pl.lit(now).alias("quarantined_at")),
        )
    affected = matched.select("order_key").unique()
    all_rows = db.read(f"SELECT * FROM {SCHEMA}.despatches WHERE wms = 'whistl'").join(affected, on="order_key")
    intents = tracking_intents(all_rows, lines, "linnworks")
    insert_new(
        db,
        "tracking_posts",
        intents.with_columns(
            pl.lit("pending").alias("status"),
            pl.lit(0).alias("attempts"),
            pl.lit(now).alias("created_at"),
            pl.lit(now).alias("updated_at"),
            pl.lit("linnworks").alias("oms"),
        ),
    )
    done = intents.filter(pl.col("kind") == "process")["order_key"].to_list()
    mark(db, "wms_submissions", [f"whistl:order:{k}" for k in done], "despatched", confirmed=True)
    return {
        "rows_read": rows.height + bad.height,
        "rows_kept": matched.height,
        "quarantined": bad.height,
        "problems": problems.height,
    }


def take_rejection_file(db: WarehouseDb, data: bytes, now: datetime) -> dict[str, int]:
    """Load one rejection file: the ledger row turns `rejected` and the order gets an exception with an owner."""
    rejected = parse_rejection_file(data).filter(pl.col("wms_code") != "DUPLICATE_ORDER")
    sent = db.read(f"SELECT order_ref, order_key, idempotency_key FROM {SCHEMA}.wms_submissions WHERE wms = 'whistl'")
    hits = rejected.join(sent, on="order_ref", how="inner")
    for row in hits.iter_rows(named=True):
        mark(db, "wms_submissions", [row["idempotency_key"]], "rejected", error=f"{row['wms_code']}: {row['detail']}")
    open_exceptions(
        db,
        hits.select("order_key", "reason_code", pl.format("Whistl rejected the order: {}", "detail").alias("detail")),
        "wms_acceptance",
        now,
    )
    return {"rows_read": rejected.height, "rows_kept": hits.height, "quarantined": 0, "problems": hits.height}


def _take(db: WarehouseDb, drop: DropSession, name: str, log: dg.DagsterLogManager) -> str:
    data = drop.read("out", name)
    digest = hashlib.sha256(data).hexdigest()
    now = now_utc()
    seen = db.read(
        f"SELECT outcome FROM {SCHEMA}.processed_files WHERE wms = 'whistl' AND file_name = :n AND content_hash = :h",
        {"n": name, "h": digest},
    )
    if seen.height:
        drop.move("out", name, "out/archive")
        log.info(f"{name}: already taken in ({seen['outcome'][0]}); archived")
        return "duplicate"
    kind = name.split("_", 1)[0]
    try:
        counts = take_despatch_file(db, name, data, now) if kind == "shp" else take_rejection_file(db, data, now)
        outcome, detail = "processed", None
    except FileFormatError as exc:
        counts, outcome, detail = {"rows_read": 0, "rows_kept": 0}, "quarantined", str(exc)
        log.error(f"{name}: quarantined: {exc}")
    db.write(
        "processed_files",
        pl.DataFrame(
            [
                {
                    "wms": "whistl",
                    "file_name": name,
                    "size": len(data),
                    "content_hash": digest,
                    "kind": kind,
                    "outcome": outcome,
                    "detail": detail,
                    "rows_read": counts["rows_read"],
                    "rows_kept": counts["rows_kept"],
                    "processed_at": now,
                }
            ]
        ),
        mode="upsert",
        key=["wms", "file_name", "content_hash"],
    )
    drop.move("out", name, "out/archive" if outcome == "processed" else "out/quarantine")
    log.info(f"{name}: {outcome} {counts}")
    return outcome


@dg.asset(
    group_name="despatch",
    kinds={"whistl", "sftp"},
    tags={"fulfil/warehouse": "write"},
    deps=[dg.AssetKey("wms_submissions")],
)
def despatches(
    context: dg.AssetExecutionContext, config: WhistlFilesConfig, warehouse: Warehouse, whistl_drop: FileDrop
) -> dg.MaterializeResult:
    """Despatch confirmations and rejections from Whistl, each file taken in exactly once (a table of processed
    files by name and content hash is the record). Good rows land in `despatches`; bad rows are quarantined with
    a reason; rows for orders fulfil never sent, or shipping more than ordered, become exceptions; a file that
    cannot be read at all moves to `out/quarantine/`."""
    db = warehouse.get_db()
    outcomes: dict[str, str] = {}
    with whistl_drop.session() as drop:
        waiting = {f.name for p in FEEDBACK_PATTERNS for f in drop.list("out", p)}
        names = [n for n in config.file_names if n in waiting] if config.file_names else sorted(waiting)
        for name in names:
            outcomes[name] = _take(db, drop, name, context.log)
    quarantined = [n for n, o in outcomes.items() if o == "quarantined"]
    if quarantined:
        context.log.warning(f"quarantined files: {quarantined}")
    return dg.MaterializeResult(
        metadata={
            "files": dg.MetadataValue.json(outcomes),
            "files_quarantined": len(quarantined),
            "despatch_rows_total": int(db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.despatches")["n"][0]),
        }
    )


@dg.asset(group_name="despatch", deps=[despatches], kinds={"linnworks"}, tags={"fulfil/warehouse": "write"})
def tracking_posts(
    context: dg.AssetExecutionContext, warehouse: Warehouse, linnworks: LinnworksResource
) -> dg.MaterializeResult:
    """Tracking numbers posted back to Linnworks (`SetOrderShippingInfo` per despatch, partial ones included)
    and orders marked processed (`ProcessOrder`) once every line has shipped. Driven by the `tracking_posts`
    ledger: transient failures stay pending for the next run; refusals are recorded and not retried blindly."""
    db = warehouse.get_db()
    client = linnworks.get_client()
    pending = read_ledger(db, "tracking_posts", "oms = 'linnworks' AND status = 'pending'")
    ids = db.read(f"SELECT order_key, source_order_id FROM {SCHEMA}.orders WHERE source_system = 'linnworks'")
    pending = pending.join(ids, on="order_key", how="left").sort("kind", descending=True)  # tracking before process
    posted = failed = deferred = 0
    blocked: set[str] = set()
    try:
        for row in pending.iter_rows(named=True):
            key, order_id = row["idempotency_key"], row["source_order_id"]
            if row["kind"] == "process" and row["order_key"] in blocked:
                deferred += 1
                continue
            try:
                if row["kind"] == "tracking":
                    client.set_shipping_info(order_id, row["tracking_number"])
                    result = f"tracking {row['tracking_number']}"
                else:
                    answer = client.process_order(order_id)
                    if not answer.get("Processed") and "already processed" not in str(answer.get("Error") or ""):
                        raise DataError("Linnworks", "Orders/ProcessOrder", str(answer.get("Error")))
                    result = "processed"
            except TransientError as exc:
                mark(db, "tracking_posts", [key], "pending", error=str(exc), attempt=True)
                blocked.add(row["order_key"])
                deferred += 1
                continue
            except DataError as exc:
                mark(db, "tracking_posts", [key], "failed", error=str(exc), attempt=True)
                blocked.add(row["order_key"])
                failed += 1
                continue
            mark(db, "tracking_posts", [key], "posted", result=result, confirmed=True, attempt=True)
            posted += 1
    except AuthError as exc:
        raise dg.Failure(description=str(exc)) from None
    finally:
        client.close()
    return dg.MaterializeResult(
        metadata={
            "posted": posted,
            "failed": failed,
            "deferred": deferred,
            "linnworks_calls": dg.MetadataValue.json(client.stats.as_metadata()),
        }
    )
