"""Whistl's inbox as an effect target: order and cancellation files over the drop, and what Whistl acknowledged
receiving."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator

import polars as pl
import sqlalchemy as sa

from fulfil_assets.effects import SENDING, SENT, Outcome
from fulfil_assets.ledger import now_utc
from fulfil_assets.push.whistl_order_files import CANCEL_FILE_COLUMNS, order_file_name, render_csv
from fulfil_assets.whistl_formats import ORDER_FILE_COLUMNS, FileFormatError, parse_ack_file
from resources.file_drop import DropSession
from resources.warehouse import SCHEMA, WarehouseDb

ORDERS_PER_FILE = 500


def acknowledged(db: WarehouseDb, drop: DropSession) -> dict[tuple[str, str], str]:
    """(order file, order_ref) -> the ack file that acknowledges it: those already taken in, and those still
    waiting in `out/` (read, not moved: the despatch run takes them in)."""
    known = db.read(f"SELECT file_name, order_ref, ack_file FROM {SCHEMA}.wms_acknowledgements WHERE wms = 'whistl'")
    found = {(f, r): a for f, r, a in known.iter_rows()}
    for f in drop.list("out", "ack_*.csv"):
        try:
            acks = parse_ack_file(drop.read("out", f.name), f.name)
        except FileFormatError:
            continue  # the despatch run quarantines it
        found.update({(r["file_name"], r["order_ref"]): f.name for r in acks.iter_rows(named=True)})
    return found


FILE_KINDS = {
    "wms_submissions": ("ord", ORDER_FILE_COLUMNS),
    "amendments": ("amd", ORDER_FILE_COLUMNS),
    "cancellations": ("can", CANCEL_FILE_COLUMNS),
}


class WhistlInbox:
    """Sends the effects of one ledger as files in Whistl's `in/` folder: orders as `ord_*.csv`
    (`wms_submissions`), amendments as `amd_*.csv` (`amendments`: the order's rows in full), cancellations as
    `can_*.csv` (`cancellations`); one file per batch of claimed rows, a
    new name per attempt, written to the ledger before the upload. An earlier attempt counts as received when
    Whistl acknowledged it, or when the file still waits in `in/` for Whistl to take it."""

    def __init__(self, db: WarehouseDb, drop: DropSession, table: str = "wms_submissions") -> None:
        self.db, self.drop, self.table = db, drop, table
        self.kind, self.columns = FILE_KINDS[table]
        self.run_tag = secrets.token_hex(2)
        self.files = 0

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose last attempt's file Whistl acknowledged or still has in its inbox."""
        acks = acknowledged(self.db, self.drop)
        waiting = {f.name for f in self.drop.list("in", f"{self.kind}_*.csv")}
        found = {}
        for key, file_name, ref in rows.select("idempotency_key", "file_name", "order_ref").iter_rows():
            if (file_name, ref) in acks:
                found[key] = f"{file_name} acknowledged in {acks[(file_name, ref)]}"
            elif file_name in waiting:
                found[key] = f"{file_name} waiting in in/"
        return found

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Up to `ORDERS_PER_FILE` orders per file."""
        return rows.iter_slices(ORDERS_PER_FILE)

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Name the file in the ledger, then upload it (temporary name + rename)."""
        keys = rows["idempotency_key"].to_list()
        name = order_file_name(now_utc(), self.files, self.kind).removesuffix(".csv") + f"_{self.run_tag}.csv"
        self.files += 1
        with self.db.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {SCHEMA}.{self.table} SET file_name = :f WHERE idempotency_key = :k"),
                [{"f": name, "k": k} for k in keys],
            )
        lines = [line for payload in rows["payload"] for line in json.loads(payload)]
        frame = pl.DataFrame(lines, schema={c: pl.String for c in self.columns}, orient="row")
        payload = render_csv(frame, self.columns)
        try:
            self.drop.write_atomic("in", name, payload)
        except OSError as exc:  # the rename may or may not have happened: the next run asks first
            yield keys, Outcome(SENDING, error=f"upload of {name} failed: {exc}")
            return
        yield keys, Outcome(SENT, result=f"{name} sha256:{hashlib.sha256(payload).hexdigest()[:16]}")
