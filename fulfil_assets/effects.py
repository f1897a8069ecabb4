"""The one way fulfil changes another system: intend -> send -> confirm, through a ledger table.

1. **intend**: a ledger row per effect (idempotency key, flow, target, payload and its hash) is written before
   anything is sent. A flow in shadow mode stops here (status `shadow`).
2. **send**: a sender *claims* rows in the database itself (a lease; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so
   two runs never send the same effect, whatever launched them. Each attempt is recorded (`sending`, attempts + 1)
   before the call. A row whose earlier attempt has no confirmation (a crash, a timeout the target may have
   applied) is first checked at the target: if the target already holds it, it is confirmed, never resent.
3. **confirm**: what the target answered, and when.

Statuses: `pending` (to send), `sending` (attempted, outcome unknown), `sent` (the target took it), `held` (no
longer wanted; armed again when it is), `failed` (the target refused the data; armed again when the payload
changes), `shadow`. What the target reports later (`acknowledged`, `rejected`, `despatched`, `cancelled`,
`too_late`) is applied by `report`, only from the statuses `REPORTED_FROM` allows. A ledger row changes state
only here: `intend` (and `rearm`, `go_live`) before a send, `claim`/`record` during it, `report` after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import polars as pl
import sqlalchemy as sa

from resources.http import TransientError
from resources.warehouse import SCHEMA, WarehouseDb

PENDING, SENDING, SENT, HELD, FAILED, SHADOW = "pending", "sending", "sent", "held", "failed", "shadow"
REJECTED = "rejected"  # the target took the effect, then refused it (a WMS rejection file)
TOO_LATE = "too_late"  # the target can no longer carry it out (a cancellation after picking started)
ACKNOWLEDGED = "acknowledged"  # the target confirmed it holds the effect (a Whistl acknowledgement)
DESPATCHED = "despatched"  # the order the submission sent left the warehouse in full
CANCELLED = "cancelled"  # the warehouse confirmed the order's cancellation: never sent again
AT_TARGET = (SENDING, SENT, ACKNOWLEDGED, DESPATCHED)  # an order that (may) have reached its target
# What a target may report later about an effect it was sent, and the statuses each report may follow (a report
# that finds the row elsewhere changes nothing: a late acknowledgement never undoes a despatch).
REPORTED_FROM = {
    ACKNOWLEDGED: (SENDING, SENT),
    REJECTED: (SENDING, SENT, ACKNOWLEDGED),
    DESPATCHED: (SENDING, SENT, ACKNOWLEDGED),
    CANCELLED: (SENDING, SENT, ACKNOWLEDGED),
    TOO_LATE: (SENDING, SENT),
    FAILED: (SENDING, SENT),
}
SENDABLE = (PENDING, SENDING)
NEVER_ATTEMPTED = (PENDING, HELD, SHADOW)
REFUSED = (FAILED, REJECTED)
LEASE_S = 600.0
CLAIM_CHUNK = 200
MAX_DEFERRED_IN_A_ROW = 20


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def sender_id() -> str:
    """Who holds a claim: host, process and a random part (two runs in one process differ too)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def payload_hash(payload: str) -> str:
    """The payload's fingerprint: a changed payload is a different effect."""
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def to_payload(value: Any) -> str:
    """Canonical JSON of what will be sent (stable key order), as stored in the ledger."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


@dataclass(frozen=True)
class Outcome:
    """What one send did to a set of ledger rows."""

    status: str  # SENT, FAILED, PENDING (not applied: try later) or SENDING (may have been applied: check first)
    result: str | None = None
    error: str | None = None
    started: bool = True  # False: the target was not called for these (the delivery's time was up)
    target_ref: str | None = None  # the target's own id for what it now holds (the Linnworks order fulfil created)


NOT_STARTED = Outcome(PENDING, started=False)


class Target(Protocol):
    """A system fulfil changes, as the effect module sees it."""

    def holds(self, rows: pl.DataFrame) -> dict[str, str | Outcome]:
        """Of rows whose earlier attempt is unconfirmed: idempotency key -> evidence (or the whole `SENT` outcome,
        with the target's own id), for each effect the target already holds."""

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Send the rows (one batch); yield the outcome per group of idempotency keys as it is known."""


@dataclass
class DeliveryReport:
    """What one delivery did: counts by outcome and the first errors."""

    claimed: int = 0
    found_at_target: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    held: int = 0
    left: int = 0  # claimed, not sent: the delivery's time ran out (`until`)
    errors: list[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        """One markdown line for a person: what this delivery did, and what is left for the next run."""
        return (
            f"**{self.sent} {what} sent**; {self.found_at_target} confirmed at the target from an earlier attempt, "
            f"{self.held} held back, {self.failed} refused, {self.deferred + self.left} waiting for the next run"
            + (f" ({self.left} because this run's time for them was up)." if self.left else ".")
        )

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata."""
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"first_errors": self.errors[:5]}


def _table(table: str) -> str:
    return f"{SCHEMA}.{table}"


def report(
    db: WarehouseDb, table: str, keys: Sequence[str], status: str, *, error: str | None = None, confirmed: bool = False
) -> int:
    """Apply what the target reported later about effects it was sent (`status`, a key of `REPORTED_FROM`), with
    its words (`error`) or the time it confirmed them, to the rows still in a status the report may follow;
    returns the rows changed."""
    if not keys:
        return 0
    allowed = ", ".join(f"'{s}'" for s in REPORTED_FROM[status])
    sets = "status = :status, updated_at = :now, last_error = :error"
    if confirmed:  # the first confirmation stays: when the target first held the effect
        sets += ", confirmed_at = COALESCE(confirmed_at, :now)"
    statement = sa.text(
        f"UPDATE {_table(table)} SET {sets} WHERE {db.any_of('idempotency_key', 'keys')} AND status IN ({allowed})"
    )
    with db.begin() as conn:  # one statement for the lot: a statement per key costs a round trip each on DuckDB
        changed = conn.execute(statement, {"status": status, "now": now_utc(), "error": error, "keys": list(keys)})
        return int(changed.rowcount or 0)


def intend(db: WarehouseDb, table: str, rows: pl.DataFrame, *, shadow: bool = False) -> tuple[int, list[str]]:
    """Record intended effects. `rows` holds `idempotency_key`, `order_key`, `payload` and the ledger's own
    columns. New keys are inserted (`pending`, or `shadow` for a flow in shadow mode); a key never attempted
    takes the new payload; a refused one (`failed`, `rejected`) is armed again when its payload changed (the
    data was fixed). Returns the number of new rows and the keys armed again."""
    if rows.is_empty():
        return 0, []
    now = now_utc()
    status = SHADOW if shadow else PENDING
    rows = rows.with_columns(
        pl.col("payload").map_elements(payload_hash, return_dtype=pl.String).alias("payload_hash"),
        pl.lit(status).alias("status"),
        pl.lit(0).alias("attempts"),
        pl.lit(now).alias("created_at"),
        pl.lit(now).alias("updated_at"),
    )
    existing = db.read(
        f"SELECT idempotency_key, status, payload_hash AS old_hash FROM {_table(table)} "
        f"WHERE {db.any_of('idempotency_key', 'keys')}",
        {"keys": rows["idempotency_key"].to_list()},
        schema={"idempotency_key": pl.String, "status": pl.String, "old_hash": pl.String},
    )
    new = rows.join(existing, on="idempotency_key", how="anti")
    db.write(table, new, mode="upsert", key=["idempotency_key"], update=[])
    changed = rows.join(existing.rename({"status": "old_status"}), on="idempotency_key").filter(
        pl.col("payload_hash") != pl.col("old_hash").fill_null("")
    )
    update = changed.filter(pl.col("old_status").is_in(NEVER_ATTEMPTED))
    rearm = changed.filter(pl.col("old_status").is_in(REFUSED))
    statement = sa.text(
        f"UPDATE {_table(table)} SET payload = :payload, payload_hash = :hash, updated_at = :now, status = :status, "
        "last_error = NULL, confirmed_at = NULL WHERE idempotency_key = :key AND status = :old"
    )
    params = [
        {
            "payload": r["payload"],
            "hash": r["payload_hash"],
            "now": now,
            "key": r["idempotency_key"],
            "old": r["old_status"],
            "status": status if r["old_status"] in REFUSED else r["old_status"],
        }
        for r in pl.concat([update, rearm]).iter_rows(named=True)
    ]
    if params:
        with db.begin() as conn:
            conn.execute(statement, params)
    return new.height, rearm["idempotency_key"].to_list()


def rearm(db: WarehouseDb, table: str, keys: Sequence[str]) -> int:
    """Arm held effects again (held by `deliver` when their subject stopped being ready): it is ready once more."""
    if not keys:
        return 0
    statement = sa.text(
        f"UPDATE {_table(table)} SET status = :p, last_error = NULL, updated_at = :now "
        f"WHERE idempotency_key = :key AND status = '{HELD}'"
    )
    now = now_utc()
    with db.begin() as conn:
        result = conn.execute(statement, [{"p": PENDING, "now": now, "key": k} for k in keys])
    return int(result.rowcount or 0)


def go_live(db: WarehouseDb, table: str, where: str = "TRUE") -> int:
    """A flow switched from shadow to live: what it recorded becomes due, once."""
    with db.begin() as conn:
        result = conn.execute(
            sa.text(f"UPDATE {_table(table)} SET status = :p, updated_at = :now WHERE status = :s AND ({where})"),
            {"p": PENDING, "s": SHADOW, "now": now_utc()},
        )
    return int(result.rowcount or 0)


def claim(
    db: WarehouseDb, table: str, where: str, owner: str, settle_s: float = 0.0, limit: int = CLAIM_CHUNK
) -> pl.DataFrame:
    """Take up to `limit` sendable rows matching `where` for `owner`, atomically: a row another sender holds
    (unexpired lease) is skipped, never shared, and so is an unconfirmed attempt younger than `settle_s` (the
    target may still be carrying it out). On PostgreSQL `FOR UPDATE SKIP LOCKED` keeps concurrent claims from
    waiting on each other; DuckDB has a single writer."""
    now = now_utc()
    free = (
        f"status IN ('{PENDING}', '{SENDING}') AND (claimed_until IS NULL OR claimed_until < :now) "
        f"AND NOT (status = '{SENDING}' AND attempted_at > :settled) AND ({where})"
    )
    pick = (
        f"SELECT idempotency_key FROM {_table(table)} WHERE {free} ORDER BY created_at, idempotency_key "
        f"LIMIT {int(limit)}" + ("" if db.is_duckdb else " FOR UPDATE SKIP LOCKED")
    )
    params = {
        "owner": owner,
        "until": now + timedelta(seconds=LEASE_S),
        "now": now,
        "settled": now - timedelta(seconds=settle_s),
    }
    update = f"UPDATE {_table(table)} SET claimed_by = :owner, claimed_until = :until WHERE {free} AND "  # DuckDB
    with db.begin() as conn:
        if db.is_duckdb:  # one writer; DuckDB does not honour LIMIT inside `IN (...)`: pick, then update
            keys = [r[0] for r in conn.execute(sa.text(pick), params).fetchall()]
            if not keys:
                return pl.DataFrame()
            statement = sa.text(update + "idempotency_key IN :keys RETURNING *").bindparams(
                sa.bindparam("keys", expanding=True)
            )
            result = conn.execute(statement, {**params, "keys": keys})
        else:  # a materialised CTE: `IN (subquery LIMIT n)` may be re-run by the planner and take more than n
            t = _table(table)
            statement = (
                f"WITH picked AS MATERIALIZED ({pick}) UPDATE {t} SET claimed_by = :owner, claimed_until = :until "
                f"FROM picked WHERE {t}.idempotency_key = picked.idempotency_key RETURNING {t}.*"
            )
            result = conn.execute(sa.text(statement), params)
        columns, rows = list(result.keys()), result.fetchall()
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in columns})
    return pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def release_dead_claims(db: WarehouseDb, table: str) -> int:
    """Free claims held by senders on this machine whose process has died (a SIGKILL, an OOM): their rows need
    not wait for the lease. Claims from other machines wait for their lease."""
    owners = db.read(
        f"SELECT DISTINCT claimed_by FROM {_table(table)} WHERE claimed_by IS NOT NULL",
        schema={"claimed_by": pl.String},
    )["claimed_by"].to_list()
    host = socket.gethostname()
    dead = [o for o in owners if o.rsplit(":", 2)[0] == host and not _alive(int(o.rsplit(":", 2)[1]))]
    for owner in dead:
        release(db, table, owner)
    return len(dead)


def _attempt(db: WarehouseDb, table: str, keys: Sequence[str], owner: str) -> list[str]:
    """Record an attempt on rows this sender still holds (renewing the lease); return the keys it may send."""
    if not keys:
        return []
    now = now_utc()
    statement = sa.text(
        f"UPDATE {_table(table)} SET status = :s, attempts = attempts + 1, attempted_at = :now, updated_at = :now, "
        "claimed_until = :until WHERE idempotency_key IN :keys AND claimed_by = :owner "
        f"AND status IN ('{PENDING}', '{SENDING}') RETURNING idempotency_key"
    ).bindparams(sa.bindparam("keys", expanding=True))
    until = now + timedelta(seconds=LEASE_S)
    with db.begin() as conn:
        rows = conn.execute(statement, {"s": SENDING, "now": now, "until": until, "keys": list(keys), "owner": owner})
        return [r[0] for r in rows.fetchall()]


def record(db: WarehouseDb, table: str, keys: Sequence[str], outcome: Outcome, owner: str | None = None) -> None:
    """Write an outcome on rows (only this sender's, when `owner` is given). A final outcome releases the claim;
    a deferred one keeps it until the delivery ends, so the same delivery does not take the row again."""
    record_all(db, table, [(keys, outcome)], owner)


def record_all(
    db: WarehouseDb, table: str, outcomes: Sequence[tuple[Sequence[str], Outcome]], owner: str | None = None
) -> None:
    """`record` for many outcomes in one transaction, one statement per status and error (the per-row results
    travel in a VALUES list): a DuckDB connection costs ~25 ms to open and a one-row UPDATE ~2 ms."""
    groups: dict[tuple[str, str | None, bool], list[tuple[str, str | None, str | None]]] = {}
    for keys, outcome in outcomes:
        group = (outcome.status, outcome.error, outcome.started)
        groups.setdefault(group, []).extend((k, outcome.result, outcome.target_ref) for k in keys)
    if not groups:
        return
    now = now_utc()
    t = _table(table)
    with db.begin() as conn:
        for (status, error, started), rows in groups.items():
            sets = (
                "status = :status, last_error = :error, updated_at = :now, result = COALESCE(v.result, t.result), "
                "target_ref = COALESCE(v.target_ref, t.target_ref)"
            )
            if not started:  # the attempt recorded before the call was never made
                sets += ", attempts = attempts - 1"
            if status not in SENDABLE:
                sets += ", claimed_by = NULL, claimed_until = NULL"
            if status == SENT:
                sets += ", confirmed_at = :now"
            elif status == SENDING:  # settled from when the client gave up, not from the start of its batch
                sets += ", attempted_at = :now"
            guard = f" AND t.status IN ('{PENDING}', '{SENDING}')" + (" AND t.claimed_by = :owner" if owner else "")
            for start in range(0, len(rows), 500):
                part = rows[start : start + 500]
                values = ", ".join(
                    f"(CAST(:k{i} AS TEXT), CAST(:r{i} AS TEXT), CAST(:t{i} AS TEXT))" for i in range(len(part))
                )
                params: dict[str, Any] = {"status": status, "error": error, "now": now, "owner": owner}
                for i, (key, result, ref) in enumerate(part):
                    params[f"k{i}"], params[f"r{i}"], params[f"t{i}"] = key, result, ref
                statement = (
                    f"UPDATE {t} AS t SET {sets} FROM (VALUES {values}) AS v(key, result, target_ref) "
                    f"WHERE t.idempotency_key = v.key{guard}"
                )
                conn.execute(sa.text(statement), params)


def _restore_not_started(
    outcomes: list[tuple[list[str], Outcome]], batch: pl.DataFrame
) -> list[tuple[list[str], Outcome]]:
    """Rows the target never called for go back to the status they were claimed in: an earlier attempt with no
    known outcome stays `sending` (looked up at the target before any send), the rest `pending`."""
    claimed_as = dict(batch.select("idempotency_key", "status").iter_rows())
    out: list[tuple[list[str], Outcome]] = []
    for keys, outcome in outcomes:
        if outcome.started:
            out.append((keys, outcome))
            continue
        for status in (PENDING, SENDING):
            mine = [k for k in keys if claimed_as.get(k, PENDING) == status]
            if mine:
                out.append((mine, Outcome(status, started=False)))
    return out


def release(db: WarehouseDb, table: str, owner: str) -> None:
    """Give back every claim this sender still holds (rows keep their status)."""
    with db.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {_table(table)} SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = :o"),
            {"o": owner},
        )


def deliver(
    db: WarehouseDb,
    table: str,
    target: Target,
    *,
    where: str = "TRUE",
    settle_s: float = 0.0,
    wanted: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    batches: Callable[[pl.DataFrame], Iterable[pl.DataFrame]] | None = None,
    recheck: Callable[[pl.DataFrame], dict[str, str]] | None = None,
    log: Callable[[str], None] | None = None,
    chunk: int = CLAIM_CHUNK,
    until: float | None = None,
) -> DeliveryReport:
    """Send every due effect of `table` matching `where`, chunk by chunk of claimed rows: first ask the target
    about attempts with no known outcome, once they are `settle_s` old (confirm what it holds), hold rows `wanted`
    drops and rows `recheck` (the source, asked right before the send) gives a reason against, then send the rest
    in `batches` (default: one row each), recording each batch's outcomes as soon as it is sent. `chunk` rows are
    claimed at a time (at least the target's batch size, so that batches can be full). With `until` (a
    `time.monotonic()` instant) no batch starts after it, and a target that sends row by row answers `NOT_STARTED`
    for the rows of a batch it reaches after it: what is left stays due, for the next run."""
    # One connection for the ledger work of the delivery (see `WarehouseDb.session`), let go while a target is
    # called: a target's rate limit then never holds the warehouse.
    with db.session():
        owner = sender_id()
        report = DeliveryReport()
        streak = 0  # deferrals in a row: a target that keeps failing is left for the next run
        release_dead_claims(db, table)
        try:
            while until is None or time.monotonic() < until:
                rows = claim(db, table, where, owner, settle_s, chunk)
                if rows.is_empty():
                    return report
                report.claimed += rows.height
                unsure = rows.filter(pl.col("status") == SENDING)  # attempted, no outcome known
                if unsure.height:
                    try:
                        with db.released():
                            found = target.holds(unsure)
                    except TransientError as exc:  # cannot ask now: the unsure rows wait, the rest go on
                        report.errors.append(f"could not check earlier attempts: {exc}")
                        report.deferred += unsure.height
                        rows = rows.filter(pl.col("status") != SENDING)
                        found = {}
                    record_all(
                        db,
                        table,
                        [
                            ([k], e if isinstance(e, Outcome) else Outcome(SENT, result=f"found at target: {e}"))
                            for k, e in found.items()
                        ],
                        owner,
                    )
                    report.found_at_target += len(found)
                    rows = rows.filter(~pl.col("idempotency_key").is_in(list(found)))
                if wanted is not None and rows.height:
                    keep = wanted(rows)
                    dropped = rows.join(keep.select("idempotency_key"), on="idempotency_key", how="anti")
                    record(
                        db, table, dropped["idempotency_key"].to_list(), Outcome(HELD, error="no longer ready"), owner
                    )
                    report.held += dropped.height
                    rows = keep
                if recheck is not None and rows.height:
                    try:
                        with db.released():
                            against = recheck(rows)
                    except TransientError as exc:  # the source cannot say now: nothing goes unchecked, try later
                        report.errors.append(f"could not recheck at source: {exc}")
                        report.deferred += rows.height
                        continue
                    record_all(db, table, [([k], Outcome(HELD, error=r)) for k, r in against.items()], owner)
                    report.held += len(against)
                    rows = rows.filter(~pl.col("idempotency_key").is_in(list(against)))
                done: set[str] = set()
                for batch in batches(rows) if batches else (rows.slice(i, 1) for i in range(rows.height)):
                    if until is not None and time.monotonic() >= until:
                        report.left += rows.filter(~pl.col("idempotency_key").is_in(list(done))).height
                        return report  # the claims are given back below: the rows stay due
                    done.update(batch["idempotency_key"].to_list())
                    mine = _attempt(db, table, batch["idempotency_key"].to_list(), owner)
                    if not mine:
                        continue
                    batch = batch.filter(pl.col("idempotency_key").is_in(mine))
                    outcomes: list[tuple[list[str], Outcome]] = []
                    try:
                        with db.released():  # other processes may use the warehouse while the target answers
                            outcomes.extend(target.send(batch))
                    finally:  # what is known is recorded, even when the sender fails half way
                        outcomes = _restore_not_started(outcomes, batch)
                        record_all(db, table, outcomes, owner)
                    for keys, outcome in outcomes:
                        if not outcome.started:
                            report.left += len(keys)
                            continue
                        if outcome.status == SENT:
                            report.sent += len(keys)
                        elif outcome.status in (FAILED, TOO_LATE):
                            report.failed += len(keys)
                        else:
                            report.deferred += len(keys)
                        streak = streak + len(keys) if outcome.status in SENDABLE else 0
                        if outcome.error:
                            report.errors.append(outcome.error)
                            if log:
                                log(f"{table} {keys[:3]}: {outcome.status}: {outcome.error}")
                    if streak >= MAX_DEFERRED_IN_A_ROW:
                        return report
            return report
        finally:
            release(db, table, owner)
