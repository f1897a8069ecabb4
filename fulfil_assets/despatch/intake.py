"""Whistl's answers into the warehouse, each file once: acknowledgements (orders, cancellations and amendments
received), despatch confirmations (despatch rows, exceptions and the tracking posts they call for) and rejections;
then the file is archived, or quarantined with its reason beside it. The `despatches` asset (`assets.py`) runs this
for every file waiting in `out/`."""

import fnmatch
import hashlib
import json
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.despatch.matching import match_despatches
from fulfil_assets.despatch.planning import DESPATCH_KEY, plan_tracking, read_context, record_plan
from fulfil_assets.ledger import adopt_amendments, mark_cancelled, now_utc, open_exceptions
from fulfil_assets.push.amendments import amend_too_late
from fulfil_assets.whistl_formats import (
    FileFormatError,
    parse_ack_file,
    parse_despatch_file,
    parse_rejection_file,
)
from resources.file_drop import DropFile, DropSession, keep_file
from resources.warehouse import SCHEMA, WarehouseDb

FEEDBACK_PATTERNS = ("ack_*.csv", "shp_*.csv", "err_*.csv")  # matched whatever the case of the name


def feedback_files(drop: DropSession) -> list[DropFile]:
    """Whistl's acknowledgement, despatch and rejection files waiting in `out/` (`SHP_...CSV` counts too)."""
    return [f for f in drop.list("out", "*") if any(fnmatch.fnmatch(f.name.lower(), p) for p in FEEDBACK_PATTERNS)]


def take_despatch_file(
    db: WarehouseDb, name: str, data: bytes, now: datetime, flows: dict[str, bool]
) -> dict[str, int]:
    """Load one despatch confirmation in one direction: parse the file, read what its orders need once, decide
    (matching, exceptions, the tracking posts each order's own system is due, in its flow, shadow or live), then
    write. Every write is keyed, so taking the same file twice changes nothing."""
    rows, bad = parse_despatch_file(data, name)
    # Read: only this file's orders (the tables grow with every file taken in).
    sent = db.read(
        f"SELECT order_ref, order_key FROM {SCHEMA}.wms_submissions "
        f"WHERE wms = 'whistl' AND {db.any_of('order_ref', 'refs')}",
        {"refs": rows["order_ref"].unique().to_list()},
        schema={"order_ref": pl.String, "order_key": pl.String},
    )
    ctx = read_context(db, "whistl", sent["order_key"].unique().to_list())
    # Decide. An order whose despatch does not add up (over-shipped, a line it never had) waits for the warehouse
    # owner: its exception is open and fulfil posts nothing to the customer's order (a person checks it by hand).
    matched, problems = match_despatches(rows, sent, ctx.lines, ctx.earlier)
    plan = plan_tracking("whistl", matched, problems, name, ctx)
    # Write.
    db.write("despatches", matched, mode="upsert", key=DESPATCH_KEY)
    open_exceptions(db, problems, "despatch_match", now)
    if bad.height:
        db.write(
            "quarantined_rows",
            bad.with_columns(pl.lit("whistl_despatch").alias("source"), pl.lit(now).alias("quarantined_at")),
        )
    record_plan(db, "whistl", plan, now, flows)
    return {
        "rows_read": rows.height + bad.height,
        "rows_kept": matched.height,
        "quarantined": bad.height,
        "problems": problems.height + plan.short_shipped,
        "tracking_posts": plan.intents.height,
    }


def take_cancel_acks(db: WarehouseDb, acks: pl.DataFrame, now: datetime) -> None:
    """Whistl's answers to our cancellation files: `CANCELLED` confirms the cancellation (and the order's
    submission turns `cancelled`); `CANCEL_TOO_LATE` (picking had started) leaves it with the warehouse owner as
    an exception saying what the customer asked and when; `UNKNOWN_ORDER` means Whistl never held the order."""
    ledger = db.read(
        f"SELECT idempotency_key, order_key, order_ref, file_name, payload FROM {SCHEMA}.cancellations "
        f"WHERE wms = 'whistl' AND status IN ('{effects.SENT}', '{effects.SENDING}')"
    )
    hits = acks.join(ledger, on=["file_name", "order_ref"], how="inner")
    for row in hits.iter_rows(named=True):
        key, order_key = row["idempotency_key"], row["order_key"]
        if row["status"] == "CANCELLED" or row["detail"] == "UNKNOWN_ORDER":
            effects.report(db, "cancellations", [key], effects.ACKNOWLEDGED, confirmed=True)
            mark_cancelled(db, "whistl", [order_key])
        else:
            asked = json.loads(row["payload"])[0][2]
            effects.report(db, "cancellations", [key], effects.TOO_LATE, error=f"{row['detail']} ({row['ack_file']})")
            problem = pl.DataFrame(
                {
                    "order_key": [order_key],
                    "reason_code": ["CANCEL_TOO_LATE"],
                    "detail": [
                        f"customer cancelled order {row['order_ref']} at {asked}; Whistl answered {row['detail']} "
                        f"(picking had started): stop it at the warehouse or arrange a return"
                    ],
                }
            )
            open_exceptions(db, problem, "cancellation", now)


def take_amend_acks(db: WarehouseDb, acks: pl.DataFrame, now: datetime) -> None:
    """Whistl's answers to our amendment files: `AMENDED` makes the amended order what the submission holds;
    `AMEND_TOO_LATE` (picking had started) opens an exception for the warehouse owner saying what changed."""
    ledger = db.read(
        f"SELECT a.idempotency_key, a.order_key, a.order_ref, a.file_name, a.payload, s.payload AS held "
        f"FROM {SCHEMA}.amendments a JOIN {SCHEMA}.wms_submissions s "
        "ON s.idempotency_key = 'whistl:order:' || a.order_key "
        f"WHERE a.wms = 'whistl' AND a.status IN ('{effects.SENT}', '{effects.SENDING}')"
    )
    hits = acks.join(ledger, on=["file_name", "order_ref"], how="inner")
    adopt_amendments(db, "whistl", hits.filter(pl.col("status") == "AMENDED")["idempotency_key"].to_list())
    refused = hits.filter(pl.col("status") != "AMENDED")
    for row in refused.iter_rows(named=True):
        status = effects.TOO_LATE if row["detail"] == "AMEND_TOO_LATE" else effects.FAILED
        effects.report(db, "amendments", [row["idempotency_key"]], status, error=f"Whistl answered {row['detail']}")
    late = refused.filter(pl.col("detail") == "AMEND_TOO_LATE").with_columns(
        pl.format("Whistl answered {} ({})", "detail", "ack_file").alias("last_error")
    )
    open_exceptions(db, amend_too_late(late), "amendment", now)


def take_ack_file(db: WarehouseDb, name: str, data: bytes) -> dict[str, int]:
    """Load one acknowledgement: what Whistl received, per order file and order. An order it accepted moves from
    `sent` to `acknowledged` (refusals come as rejection files); answers to cancellation and amendment files
    settle the `cancellations` and `amendments` ledgers."""
    acks = parse_ack_file(data, name).filter(pl.col("order_ref") != "")
    db.write("wms_acknowledgements", acks, mode="upsert", key=["wms", "file_name", "order_ref"])
    kind = pl.col("file_name").str.to_lowercase()
    take_cancel_acks(db, acks.filter(kind.str.starts_with("can_")), now_utc())
    take_amend_acks(db, acks.filter(kind.str.starts_with("amd_")), now_utc())
    accepted = acks.filter(pl.col("status") == "ACCEPTED")
    if accepted.height:  # the submissions these answers are about: the order, in the file Whistl names
        sent = db.read(
            f"SELECT idempotency_key, order_ref, file_name FROM {SCHEMA}.wms_submissions "
            f"WHERE wms = 'whistl' AND {db.any_of('order_ref', 'refs')}",
            {"refs": accepted["order_ref"].unique().to_list()},
            schema={"idempotency_key": pl.String, "order_ref": pl.String, "file_name": pl.String},
        )
        keys = sent.join(accepted.select("order_ref", "file_name"), on=["order_ref", "file_name"], how="semi")
        effects.report(db, "wms_submissions", keys["idempotency_key"].to_list(), effects.ACKNOWLEDGED)
    return {"rows_read": acks.height, "rows_kept": acks.height, "quarantined": 0, "problems": 0}


def take_rejection_file(db: WarehouseDb, data: bytes, now: datetime) -> dict[str, int]:
    """Load one rejection file: the ledger row turns `rejected` and the order gets an exception with an owner."""
    # Refused cancellations are answered in the acknowledgement file too (take_cancel_acks): not order rejections.
    rejected = parse_rejection_file(data).filter(~pl.col("wms_code").is_in(["DUPLICATE_ORDER", "CANCEL_TOO_LATE"]))
    sent = db.read(f"SELECT order_ref, order_key, idempotency_key FROM {SCHEMA}.wms_submissions WHERE wms = 'whistl'")
    hits = rejected.join(sent, on="order_ref", how="inner")
    for row in hits.iter_rows(named=True):
        error = f"{row['wms_code']}: {row['detail']}"
        effects.report(db, "wms_submissions", [row["idempotency_key"]], effects.REJECTED, error=error)
    # A rejection of a reference fulfil never sent is news too: the warehouse owner finds out whose it is.
    strangers = rejected.join(sent, on="order_ref", how="anti").select(
        pl.format("whistl:{}", "order_ref").alias("order_key"),
        pl.lit("WMS_REJECTED").alias("reason_code"),
        pl.format(
            "Whistl rejected order {} ({}: {}), which fulfil never sent", "order_ref", "wms_code", "detail"
        ).alias("detail"),
    )
    found = hits.select(
        "order_key", "reason_code", pl.format("Whistl rejected the order: {}", "detail").alias("detail")
    )
    open_exceptions(db, pl.concat([found, strangers]), "wms_acceptance", now)
    problems = hits.height + strangers.height
    return {"rows_read": rejected.height, "rows_kept": hits.height, "quarantined": 0, "problems": problems}


LEFT_IN_PLACE = "out/ (left in place: Whistl's flows are in shadow)"


def keep_taken(drop: DropSession, name: str, data: bytes, digest: str, outcome: str, detail: str | None) -> str:
    """Move a file taken in to `out/archive/`, or one not taken in to `out/quarantine/` with the reason beside it
    (for whoever opens the folder). Returns where it went."""
    if outcome == "processed":
        return keep_file(drop, name, "out/archive", digest)
    kept = keep_file(drop, name, "out/quarantine", digest)
    folder, _, kept_name = kept.rpartition("/")
    reason = f"{name} ({len(data)} bytes, sha256 {digest}) was not taken in: {detail}\n"
    drop.write_atomic(folder, f"{kept_name}.reason.txt", reason.encode("utf-8"))
    return kept


def take_feedback_file(
    db: WarehouseDb, drop: DropSession, name: str, log: dg.DagsterLogManager, flows: dict[str, bool], shadow: bool
) -> dict[str, Any]:
    """Take one feedback file in, once (by name and content hash), then archive it (or quarantine it with its
    reason beside it); in shadow the file stays where Whistl put it and nothing is written to its server."""
    data = drop.read("out", name)
    digest = hashlib.sha256(data).hexdigest()
    now = now_utc()
    seen = db.read(
        f"SELECT outcome, detail FROM {SCHEMA}.processed_files "
        "WHERE wms = 'whistl' AND file_name = :n AND content_hash = :h",
        {"n": name, "h": digest},
    )
    if seen.height:  # taken in before (in shadow it stayed): kept where its first outcome says, once live
        first, detail = seen.row(0)
        kept = LEFT_IN_PLACE if shadow else keep_taken(drop, name, data, digest, first, detail)
        log.info(f"{name}: already taken in ({first}); {kept}")
        return {"outcome": "duplicate", "kept_as": kept, "sha256": digest}
    kind = name.split("_", 1)[0].lower()
    try:
        if kind == "shp":
            counts = take_despatch_file(db, name, data, now, flows)
        elif kind == "ack":
            counts = take_ack_file(db, name, data)
        else:
            counts = take_rejection_file(db, data, now)
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
    kept = LEFT_IN_PLACE if shadow else keep_taken(drop, name, data, digest, outcome, detail)
    log.info(f"{name} -> {kept}")
    log.info(f"{name}: {outcome} {counts}")
    return {"outcome": outcome, "kept_as": kept, "sha256": digest, **counts, **({"reason": detail} if detail else {})}
