"""Despatches waiting at the warehouse that fulfil has not taken in: a Whistl despatch file left in `out/`, a
Peoplevox despatch not read. A check per warehouse turns red once the oldest has waited longer than
`schedules.despatch_backlog_minutes`, so a jammed queue or a stopped sensor is seen before customers ask; the
tracking checks downstream can only see despatches fulfil has read."""

import fnmatch
import hashlib
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets.config import FulfilConfig
from fulfil_assets.despatch.intake import feedback_files
from fulfil_assets.ingest.peoplevox_source import date_clause
from fulfil_assets.ledger import now_utc
from resources.file_drop import DropFile, DropSession, FileDrop
from resources.http import SystemError_
from resources.peoplevox import PeoplevoxResource
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

CHECK_NAME = "no_despatch_backlog"
DESPATCH_FILES = "shp_*.csv"  # matched whatever the case of the name, as the despatch run takes them
# With nothing read from Peoplevox yet, how far back its despatches count as waiting (older ones are history from
# before fulfil, not a backlog).
PEOPLEVOX_LOOKBACK = timedelta(days=7)
EXAMPLES = 10


def despatch_files(drop: DropSession) -> list[DropFile]:
    """Whistl's despatch confirmations (`shp_*.csv`) waiting in `out/`."""
    return [f for f in feedback_files(drop) if fnmatch.fnmatch(f.name.lower(), DESPATCH_FILES)]


def waited_minutes(files: Sequence[DropFile], now: float) -> list[tuple[DropFile, float]]:
    """Each file with the minutes since Whistl wrote it (its modification time), oldest first."""
    return sorted(((f, max(0.0, now - f.mtime) / 60) for f in files), key=lambda fw: (-fw[1], fw[0].name))


def taken_in(db: WarehouseDb, drop: DropSession, files: Sequence[DropFile]) -> set[str]:
    """Of `files`, those the despatch run already took in (the processed-files table holds their name and content
    hash) but has not yet moved out of `out/`: not a despatch waiting. Only files of a name and size taken in
    before are read and hashed."""
    if not files:
        return set()
    done = db.read(
        f"SELECT file_name, size, content_hash FROM {SCHEMA}.processed_files "
        f"WHERE wms = 'whistl' AND {db.any_of('file_name', 'names')}",
        {"names": [f.name for f in files]},
        schema={"file_name": pl.String, "size": pl.Int64, "content_hash": pl.String},
    )
    hashes: dict[tuple[str, int], set[str]] = {}
    for name, size, digest in done.iter_rows():
        hashes.setdefault((name, int(size or 0)), set()).add(digest)
    found = set()
    for f in files:
        known = hashes.get((f.name, f.size))
        if known and hashlib.sha256(drop.read("out", f.name)).hexdigest() in known:
            found.add(f.name)
    return found


def _no_listing(where: str, exc: Exception) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"Could not see what waits at the warehouse ({where}): {exc}. Nothing is known to be taken "
        "in until it can be read again.",
        metadata={"unreachable": True, "error": str(exc)[:500]},
    )


def whistl_backlog_result(
    waiting: Sequence[tuple[DropFile, float]], taken: set[str], minutes: int
) -> dg.AssetCheckResult:
    """The verdict on Whistl's `out/` folder: red (ERROR) when a despatch file not taken in has waited `minutes`
    or longer, naming the oldest, how long it waited, and how many have."""
    pending = [(f, w) for f, w in waiting if f.name not in taken]
    late = [(f, w) for f, w in pending if w >= minutes]
    metadata: dict[str, Any] = {
        "threshold_minutes": minutes,
        "despatch_files_waiting": len(pending),
        "past_threshold": len(late),
        "taken_in_not_yet_archived": len(taken),
    }
    if not late:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"No Whistl despatch file has waited {minutes} min or longer in out/ "
            f"({len(pending)} waiting, each newer).",
            metadata=metadata,
        )
    oldest, waited = late[0]
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(late)} Whistl despatch file(s) waiting in out/ {minutes} min or longer, not taken in; "
        f"the oldest, {oldest.name}, for {waited:.0f} min. Its parcels' tracking waits with it: the data team looks "
        "at despatch_file_sensor and the despatch_job runs (queued behind another run? failing?).",
        metadata={
            **metadata,
            "oldest_file": oldest.name,
            "oldest_waiting_minutes": round(waited, 1),
            "examples": dg.MetadataValue.json(
                [{"file": f.name, "waiting_minutes": round(w, 1)} for f, w in late][:EXAMPLES]
            ),
        },
    )


def whistl_backlog_check(minutes: int) -> dg.AssetChecksDefinition:
    """`despatches:no_despatch_backlog`: red when a despatch file has waited in Whistl's `out/` past `minutes`."""

    @dg.asset_check(
        asset="despatches",
        name=CHECK_NAME,
        blocking=False,
        description=f"No Whistl despatch file (shp_*) waits in out/ {minutes} minutes or longer without being taken "
        "in (schedules.despatch_backlog_minutes). Red names the oldest file and how long it has waited: despatches "
        "fulfil has not read are invisible to the tracking checks, and customers are waiting for their tracking.",
    )
    def no_despatch_backlog(warehouse: Warehouse, whistl_drop: FileDrop) -> dg.AssetCheckResult:
        db: WarehouseDb = warehouse.get_db()
        try:
            with whistl_drop.session() as drop:
                waiting = waited_minutes(despatch_files(drop), time.time())
                taken = taken_in(db, drop, [f for f, w in waiting if w >= minutes])
        except Exception as exc:  # an unreachable folder is not an empty one
            return _no_listing(f"Whistl's out/ at {whistl_drop.describe()}", exc)
        return whistl_backlog_result(waiting, taken, minutes)

    return no_despatch_backlog


def peoplevox_held(rows: Sequence[dict[str, str]]) -> pl.DataFrame:
    """Peoplevox `Despatches` rows (one per despatch and item) as one row per despatch: number, order reference,
    despatched_at (UTC; null where the date cannot be read, as the staging reads it)."""
    frame = pl.DataFrame(
        [{k: r.get(k) for k in ("DespatchNumber", "SalesOrderNumber", "DespatchDate")} for r in rows],
        schema={"DespatchNumber": pl.String, "SalesOrderNumber": pl.String, "DespatchDate": pl.String},
    )
    return (
        frame.with_columns(pl.col("DespatchDate").str.to_datetime(time_zone="UTC", strict=False).alias("despatched_at"))
        .group_by("DespatchNumber")
        .agg(pl.col("SalesOrderNumber").first().alias("order_ref"), pl.col("despatched_at").min())
        .rename({"DespatchNumber": "despatch_ref"})
    )


def unread_despatches(held: pl.DataFrame, known: set[str], now: datetime, minutes: int) -> pl.DataFrame:
    """Of the despatches Peoplevox holds, those fulfil has not read that were despatched `minutes` ago or more (a
    date that cannot be read counts as old: it cannot be shown to be new), oldest first, with minutes waited."""
    return (
        held.filter(~pl.col("despatch_ref").is_in(list(known)))
        .with_columns(((pl.lit(now) - pl.col("despatched_at")).dt.total_seconds() / 60).alias("waiting_minutes"))
        .filter(pl.col("waiting_minutes").is_null() | (pl.col("waiting_minutes") >= minutes))
        .sort("waiting_minutes", "despatch_ref", descending=[True, False], nulls_last=False)
    )


def peoplevox_backlog_result(unread: pl.DataFrame, asked: int, minutes: int) -> dg.AssetCheckResult:
    """The verdict on Peoplevox: red (ERROR) when it holds a despatch fulfil has not read, `minutes` old or more."""
    metadata: dict[str, Any] = {
        "threshold_minutes": minutes,
        "despatches_asked": asked,
        "past_threshold": unread.height,
    }
    if unread.is_empty():
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"Every Peoplevox despatch {minutes} min old or more has been read ({asked} asked about).",
            metadata=metadata,
        )
    oldest = unread.row(0, named=True)
    waited = oldest["waiting_minutes"]
    how_long = f"{waited:.0f} min" if waited is not None else "since a date Peoplevox gave that cannot be read"
    examples = [
        {"despatch": r["despatch_ref"], "order_ref": r["order_ref"], "waiting_minutes": r["waiting_minutes"]}
        for r in unread.head(EXAMPLES).with_columns(pl.col("waiting_minutes").round(1)).iter_rows(named=True)
    ]
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{unread.height} Peoplevox despatch(es) {minutes} min old or more that fulfil has not read; "
        f"the oldest, {oldest['despatch_ref']} (order {oldest['order_ref']}), for {how_long}. The data team looks "
        "at the peoplevox_despatch_job runs (queued behind another run? failing?).",
        metadata={
            **metadata,
            "oldest_despatch": str(oldest["despatch_ref"]),
            "oldest_order_ref": str(oldest["order_ref"]),
            "oldest_waiting_minutes": round(waited, 1) if waited is not None else dg.MetadataValue.null(),
            "examples": dg.MetadataValue.json(examples),
        },
    )


def peoplevox_backlog_check(minutes: int) -> dg.AssetChecksDefinition:
    """`peoplevox_despatch_lines:no_despatch_backlog`: red when Peoplevox holds a despatch fulfil has not read,
    `minutes` old or more."""

    @dg.asset_check(
        asset="peoplevox_despatch_lines",
        name=CHECK_NAME,
        blocking=False,
        description=f"Every despatch Peoplevox holds that is {minutes} minutes old or more "
        "(schedules.despatch_backlog_minutes) has been read into fulfil's despatches. Peoplevox is asked (GetData "
        "Despatches) for what it despatched since the newest despatch fulfil holds (with none, the last "
        f"{PEOPLEVOX_LOOKBACK.days} days). Red names the oldest unread despatch and how long it has waited.",
    )
    def no_despatch_backlog(warehouse: Warehouse, peoplevox: PeoplevoxResource) -> dg.AssetCheckResult:
        db: WarehouseDb = warehouse.get_db()
        now = now_utc()
        newest = db.read(
            f"SELECT MAX(despatched_at) AS t FROM {SCHEMA}.despatches WHERE wms = 'peoplevox'",
            schema={"t": pl.Datetime("us", "UTC")},
        )["t"][0]
        since = newest if newest is not None else now - PEOPLEVOX_LOOKBACK
        client = peoplevox.get_client()
        try:  # no warehouse connection is held while Peoplevox answers
            rows = [r for page in client.get_data("Despatches", date_clause("DespatchDate", since)) for r in page]
        except SystemError_ as exc:
            return _no_listing("Peoplevox GetData Despatches", exc)
        finally:
            client.close()
        held = peoplevox_held(rows)
        if held.is_empty():  # nothing despatched since: nothing can wait
            return peoplevox_backlog_result(held, 0, minutes)
        known = db.read(
            f"SELECT DISTINCT despatch_ref FROM {SCHEMA}.despatches "
            f"WHERE wms = 'peoplevox' AND {db.any_of('despatch_ref', 'refs')}",
            {"refs": held["despatch_ref"].to_list()},
            schema={"despatch_ref": pl.String},
        )
        unread = unread_despatches(held, set(known["despatch_ref"].to_list()), now, minutes)
        return peoplevox_backlog_result(unread, held.height, minutes)

    return no_despatch_backlog


def despatch_backlog_checks(config: FulfilConfig) -> list[dg.AssetChecksDefinition]:
    """The `no_despatch_backlog` checks of the configured warehouses: on `despatches` (Whistl's `out/` folder)
    and on `peoplevox_despatch_lines` (Peoplevox's despatches), each red past `schedules.despatch_backlog_minutes`."""
    minutes = config.schedules.despatch_backlog_minutes
    checks = []
    if config.systems.whistl is not None:
        checks.append(whistl_backlog_check(minutes))
    if config.systems.peoplevox is not None:
        checks.append(peoplevox_backlog_check(minutes))
    return checks
