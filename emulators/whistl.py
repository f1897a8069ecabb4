"""Whistl 3PL emulator: a flat-file WMS on a drop folder (served over SFTP by the runner).

Orders arrive as `in/ord_*.csv` (row per line) and cancellations as `in/can_*.csv`; the warehouse takes each
file out of `in/` as it reads it (as real 3PLs do) and acknowledges every order file with `out/ack_*.csv` (one
row per order: ACCEPTED or REJECTED, or one FILE_MALFORMED row), then answers with `out/shp_*.csv` despatch
confirmations (row per line per parcel, partials included), `out/err_*.csv` rejections and `out/inv_*.csv` full
stock snapshots. Each `step()` moves every order one stage along
received -> picking -> packed -> despatched, as a shift would.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.world import World

ORDER_COLUMNS = (
    "order_reference",
    "order_date",
    "service_code",
    "ship_name",
    "ship_address1",
    "ship_address2",
    "ship_address3",
    "ship_city",
    "ship_postcode",
    "ship_country",
    "ship_phone",
    "ship_email",
    "line_number",
    "sku",
    "quantity",
)
DESPATCH_COLUMNS = (
    "order_reference",
    "despatch_reference",
    "line_number",
    "sku",
    "quantity_ordered",
    "quantity_despatched",
    "carrier",
    "service_code",
    "tracking_number",
    "tracking_url",
    "parcel_number",
    "despatched_at",
    "partial_flag",
    "reason",
)
STOCK_COLUMNS = ("sku", "description", "on_hand", "allocated", "available", "quarantine", "snapshot_at")
REJECT_COLUMNS = ("order_reference", "reason_code", "detail", "source_file")
ACK_COLUMNS = ("file_name", "order_reference", "status", "reason_code", "received_at")
CANCEL_COLUMNS = ("order_reference", "reason")
SERVICE_CODES = {"WHISTL-T24": True, "WHISTL-T48": True, "WHISTL-INTL": True, "WHISTL-RM48": False}
STAGES = ("received", "picking", "packed", "despatched")


@dataclass
class WmsOrder:
    """An order the warehouse accepted."""

    reference: str
    service_code: str
    lines: dict[int, tuple[str, int]]
    source_file: str
    stage: str = "received"
    shipped: dict[int, int] = field(default_factory=dict)
    despatches: int = 0
    cancelled: bool = False
    ship_to: dict[str, str] = field(default_factory=dict)  # the ship_* cells as received (or last amended)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


class Whistl:
    """The warehouse: catalogue, stock, accepted orders and the file exchange on `root`."""

    name = "whistl"

    def __init__(
        self,
        world: World,
        root: Path,
        sku_pattern: str = r"[A-Za-z0-9]{1,30}",
        partial_share: float = 0.1,
        multi_parcel_share: float = 0.1,
    ) -> None:
        self.world = world
        self.root = Path(root)
        self.inbox, self.outbox = self.root / "in", self.root / "out"
        for folder in (self.inbox, self.outbox):
            folder.mkdir(parents=True, exist_ok=True)
        self.sku_re = re.compile(rf"^{sku_pattern}$")
        self.partial_share, self.multi_parcel_share = partial_share, multi_parcel_share
        self.short_share = 0.0  # share of lines the warehouse cannot find: despatched as 0 with a reason
        self.rng = random.Random(f"{world.seed}:whistl")
        self.catalogue = {s: world.by_sku[s].title for s in world.wms_catalogue}
        self.on_hand: dict[str, int] = dict(world.initial_stock)
        self.allocated: Counter[str] = Counter()
        self.quarantined: Counter[str] = Counter()  # damaged or on hold: reported, not sellable
        self.orders: dict[str, WmsOrder] = {}
        self.receipts: Counter[str] = Counter()  # order_reference -> times an order file carried it
        self.rejections: list[dict[str, str]] = []
        self.cancel_results: dict[str, str] = {}
        self.amendments: dict[str, list[str]] = {}  # order_reference -> the result of each amendment received
        self.seen_files: set[str] = set()
        self.received_dir = self.root / ".wms" / "received"  # where consumed inbox files go (not served)
        self.files_written: list[str] = []
        self.despatch_rows: list[dict[str, Any]] = []  # every despatch row written, for inspection
        self.received_at: dict[str, float] = {}  # reference -> mtime of the order file it was first accepted from
        self.despatch_log: list[dict[str, Any]] = []  # one entry per despatch per shp_ file, with when it was written
        self._seq = 0
        self.lock = threading.RLock()

    # -- file exchange ----------------------------------------------------------------------------
    def _write(self, prefix: str, columns: tuple[str, ...], rows: list[dict[str, Any]], now: datetime) -> str:
        self._seq += 1
        name = f"{prefix}_{_stamp(now)}_{self._seq:05d}.csv"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = self.outbox / f".{name}.tmp"
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.outbox / name)
        self.files_written.append(name)
        return name

    def _new_files(self, prefix: str) -> list[tuple[str, bytes, float]]:
        """Take new files of `prefix` out of the inbox: (name, bytes, mtime) each, the file moved out of `in/`; the
        mtime is when the file arrived (the warehouse reads `in/` only on its tick)."""
        found = sorted(p for p in self.inbox.glob(f"{prefix}_*.csv") if p.name not in self.seen_files)
        self.seen_files.update(p.name for p in found)
        self.received_dir.mkdir(parents=True, exist_ok=True)
        taken = []
        for path in found:
            arrived = path.stat().st_mtime
            taken.append((path.name, path.read_bytes(), arrived))
            os.replace(path, self.received_dir / path.name)
        return taken

    def _reject(self, ref: str, code: str, detail: str, source: str, out: list[dict[str, str]]) -> None:
        row = {"order_reference": ref, "reason_code": code, "detail": detail, "source_file": source}
        self.rejections.append(row)
        out.append(row)

    def receive_orders(self, now: datetime) -> list[dict[str, str]]:
        """Read new order files, accept or reject each order; return the rejections."""
        rejected: list[dict[str, str]] = []
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for name, data, arrived in self._new_files("ord"):
            acks: list[dict[str, str]] = []
            try:
                rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
                if not rows or set(ORDER_COLUMNS) - set(rows[0]):
                    raise ValueError(f"missing columns {sorted(set(ORDER_COLUMNS) - set(rows[0] if rows else {}))}")
            except (ValueError, UnicodeDecodeError, csv.Error) as exc:
                self._reject("", "FILE_MALFORMED", str(exc), name, rejected)
                acks.append(self._ack(name, "", "REJECTED", "FILE_MALFORMED", stamp))
                self._write("ack", ACK_COLUMNS, acks, now)
                continue
            by_ref: dict[str, list[dict[str, str]]] = {}
            for row in rows:
                by_ref.setdefault(row["order_reference"], []).append(row)
            for ref, lines in by_ref.items():
                self.receipts[ref] += 1
                problem = self._check(ref, lines)
                if problem:
                    self._reject(ref, problem[0], problem[1], name, rejected)
                    acks.append(self._ack(name, ref, "REJECTED", problem[0], stamp))
                    continue
                order = WmsOrder(
                    ref,
                    lines[0]["service_code"],
                    {int(r["line_number"]): (r["sku"], int(r["quantity"])) for r in lines},
                    name,
                    ship_to={k: v for k, v in lines[0].items() if k.startswith("ship_")},
                )
                self.orders[ref] = order
                self.received_at.setdefault(ref, arrived)
                for sku, qty in order.lines.values():
                    self.allocated[sku] += qty
                acks.append(self._ack(name, ref, "ACCEPTED", "", stamp))
            self._write("ack", ACK_COLUMNS, acks, now)
        if rejected:
            self._write("err", REJECT_COLUMNS, rejected, now)
        return rejected

    @staticmethod
    def _ack(file_name: str, ref: str, status: str, code: str, stamp: str) -> dict[str, str]:
        return {
            "file_name": file_name,
            "order_reference": ref,
            "status": status,
            "reason_code": code,
            "received_at": stamp,
        }

    def _check(self, ref: str, lines: list[dict[str, str]]) -> tuple[str, str] | None:
        """What a real WMS rejects: duplicates, bad service, missing phone/postcode, bad or unknown SKU."""
        if ref in self.orders:
            return "DUPLICATE_ORDER", f"order {ref} was already received"
        return self._content_problem(lines)

    def _content_problem(self, lines: list[dict[str, str]]) -> tuple[str, str] | None:
        """What a real WMS rejects in an order's rows (a new order's, or an amendment's)."""
        head = lines[0]
        service = head["service_code"]
        if service not in SERVICE_CODES:
            return "SERVICE_CODE_INVALID", f"unknown service code {service!r}"
        phone = re.sub(r"[\s+]", "", head["ship_phone"] or "")
        if SERVICE_CODES[service] and not phone.isdigit():
            return "PHONE_REQUIRED", "tracked service needs a phone number of digits only"
        if head["ship_country"] == "GB" and not head["ship_postcode"].strip():
            return "POSTCODE_REQUIRED", "GB orders need a postcode"
        for row in lines:
            sku = row["sku"]
            if not self.sku_re.match(sku):
                return "SKU_INVALID", f"line {row['line_number']}: SKU {sku!r} has characters the WMS refuses"
            if sku not in self.catalogue:
                return "SKU_UNKNOWN", f"line {row['line_number']}: SKU {sku!r} is not set up at the warehouse"
            if not row["quantity"].isdigit() or int(row["quantity"]) < 1:
                return "QUANTITY_INVALID", f"line {row['line_number']}: quantity {row['quantity']!r}"
        return None

    def receive_amendments(self, now: datetime) -> dict[str, str]:
        """Apply amendment files (`in/amd_*.csv`, the order's rows in full, as in an order file) to orders not yet
        picking; refuse the rest (AMEND_TOO_LATE). Each file is acknowledged per order (`ack_*.csv`: AMENDED, or
        REJECTED with AMEND_TOO_LATE / UNKNOWN_ORDER)."""
        results: dict[str, str] = {}
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for name, data, _ in self._new_files("amd"):
            acks: list[dict[str, str]] = []
            by_ref: dict[str, list[dict[str, str]]] = {}
            for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
                by_ref.setdefault(row.get("order_reference", ""), []).append(row)
            for ref, lines in by_ref.items():
                order = self.orders.get(ref)
                if order is None or order.cancelled:
                    result = "UNKNOWN_ORDER"
                elif order.stage != "received":
                    result = "AMEND_TOO_LATE"
                elif problem := self._content_problem(lines):
                    result = problem[0]
                else:  # the order in full: its service, address and lines as the file now has them
                    order.service_code = lines[0]["service_code"]
                    order.ship_to = {k: v for k, v in lines[0].items() if k.startswith("ship_")}
                    for sku, qty in order.lines.values():
                        self.allocated[sku] -= qty
                    order.lines = {int(r["line_number"]): (r["sku"], int(r["quantity"])) for r in lines}
                    for sku, qty in order.lines.values():
                        self.allocated[sku] += qty
                    result = "AMENDED"
                results[ref] = result
                self.amendments.setdefault(ref, []).append(result)
                status, code = ("AMENDED", "") if result == "AMENDED" else ("REJECTED", result)
                acks.append(self._ack(name, ref, status, code, stamp))
            self._write("ack", ACK_COLUMNS, acks, now)
        return results

    def receive_cancellations(self, now: datetime) -> dict[str, str]:
        """Cancel orders not yet picking; refuse the rest (the picking cut-off). Each cancellation file is
        acknowledged per order (`ack_*.csv`: CANCELLED, or REJECTED with CANCEL_TOO_LATE / UNKNOWN_ORDER), and
        the too-late ones are reported in `err_*.csv` as well."""
        results: dict[str, str] = {}
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for name, data, _ in self._new_files("can"):
            acks: list[dict[str, str]] = []
            for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
                ref = row.get("order_reference", "")
                order = self.orders.get(ref)
                if order is None:
                    result = "UNKNOWN_ORDER"
                elif order.cancelled:
                    result = "CANCELLED"
                elif order.stage == "received":
                    order.cancelled = True
                    for sku, qty in order.lines.values():
                        self.allocated[sku] -= qty
                    result = "CANCELLED"
                else:
                    result = "CANCEL_TOO_LATE"
                results[ref] = result
                if result == "CANCELLED":
                    acks.append(self._ack(name, ref, "CANCELLED", "", stamp))
                else:
                    acks.append(self._ack(name, ref, "REJECTED", result, stamp))
            self._write("ack", ACK_COLUMNS, acks, now)
        rejected = [
            {
                "order_reference": r,
                "reason_code": res,
                "detail": "picking already started",
                "source_file": "cancellation",
            }
            for r, res in results.items()
            if res == "CANCEL_TOO_LATE"
        ]
        if rejected:
            self._write("err", REJECT_COLUMNS, rejected, now)
        self.cancel_results.update(results)
        return results

    def _tracking(self) -> str:
        return f"WHL{self.rng.randint(1, 9)}{self.rng.randint(10**13, 10**14 - 1)}"

    def despatch(self, order: WmsOrder, now: datetime) -> list[dict[str, Any]]:
        """Confirm a despatch: everything left, or (sometimes, first time) only part of it."""
        order.despatches += 1
        remaining = {n: qty - order.shipped.get(n, 0) for n, (_, qty) in order.lines.items()}
        remaining = {n: q for n, q in remaining.items() if q > 0}
        partial = (
            order.despatches == 1
            and self.rng.random() < self.partial_share
            and (len(remaining) > 1 or any(q > 1 for q in remaining.values()))
        )
        if partial:
            first = min(remaining)
            take = {first: max(1, remaining[first] // 2)} if len(remaining) == 1 else {first: remaining[first]}
        else:
            take = remaining
        parcels = 2 if self.rng.random() < self.multi_parcel_share and sum(take.values()) > 1 else 1
        tracking = [self._tracking() for _ in range(parcels)]
        rows: list[dict[str, Any]] = []

        def row(n: int, quantity: int, number: str, parcel: int, partial_flag: str, reason: str) -> dict[str, Any]:
            return {
                "order_reference": order.reference,
                "despatch_reference": f"D{order.reference}-{order.despatches}",
                "line_number": n,
                "sku": order.lines[n][0],
                "quantity_ordered": order.lines[n][1],
                "quantity_despatched": quantity,
                "carrier": "Whistl",
                "service_code": order.service_code,
                "tracking_number": number,
                "tracking_url": f"https://track.whistl.co.uk/{number}" if number else "",
                "parcel_number": parcel + 1,
                "despatched_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "partial_flag": partial_flag,
                "reason": reason,
            }

        short = {n for n in take if len(take) > 1 and self.rng.random() < self.short_share}
        for n in sorted(short):
            sku, ordered = order.lines[n]
            rows.append(row(n, 0, "", 0, "Y", "OUT_OF_STOCK: not found at its pick face"))
            order.shipped[n] = ordered  # never shipped, and never will be: the order is done at the warehouse
            self.allocated[sku] -= take.pop(n)
        for i, (n, qty) in enumerate(sorted(take.items())):
            sku = order.lines[n][0]
            split = [qty] if parcels == 1 or qty == 1 else [qty - qty // 2, qty // 2]
            for p, part in enumerate(split):
                parcel = p if len(split) > 1 else i % parcels
                rows.append(row(n, part, tracking[parcel], parcel, "Y" if partial else "N", ""))
            order.shipped[n] = order.shipped.get(n, 0) + qty
            self.on_hand[sku] = self.on_hand.get(sku, 0) - qty
            self.allocated[sku] -= qty
        if not partial:
            order.stage = "despatched"
        return rows

    def intake(self, now: datetime | None = None) -> tuple[list[dict[str, str]], dict[str, str], dict[str, str]]:
        """Take in the order, amendment and cancellation files waiting in `in/` (the warehouse's import runs
        around the clock, shift or not): what was rejected, amended and cancelled."""
        now = now or datetime.now(UTC)
        with self.lock:
            return self.receive_orders(now), self.receive_amendments(now), self.receive_cancellations(now)

    def step(self, now: datetime | None = None) -> dict[str, Any]:
        """One shift tick: take in files, move each open order a stage on, write what despatched."""
        now = now or datetime.now(UTC)
        with self.lock:
            rejected, amends, cancels = self.intake(now)
            despatched: list[dict[str, Any]] = []
            for order in self.orders.values():
                if order.cancelled or order.stage == "despatched":
                    continue
                if order.stage == "packed":
                    despatched += self.despatch(order, now)
                else:
                    order.stage = STAGES[STAGES.index(order.stage) + 1]
            if despatched:
                self._write("shp", DESPATCH_COLUMNS, despatched, now)
                written = time.time()
                self.despatch_rows += despatched
                for ref, number in dict.fromkeys((r["order_reference"], r["despatch_reference"]) for r in despatched):
                    entry = {"wms": self.name, "order_ref": ref, "despatch_ref": number, "at": written}
                    self.despatch_log.append(entry)
            return {
                "rejected": len(rejected),
                "amendments": amends,
                "cancellations": cancels,
                "despatch_rows": len(despatched),
            }

    def adjust(self, sku: str, delta: int) -> None:
        """A cycle-count or damage adjustment."""
        with self.lock:
            self.on_hand[sku] = max(0, self.on_hand.get(sku, 0) + delta)

    def snapshot(self, now: datetime | None = None) -> str:
        """Write a full stock snapshot file; return its name."""
        now = now or datetime.now(UTC)
        with self.lock:
            rows = [
                {
                    "sku": sku,
                    "description": self.catalogue[sku],
                    "on_hand": self.on_hand[sku],
                    "allocated": self.allocated[sku],
                    "available": max(0, self.on_hand[sku] - self.allocated[sku]),
                    "quarantine": self.quarantined[sku],
                    "snapshot_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for sku in sorted(self.catalogue)
            ]
            return self._write("inv", STOCK_COLUMNS, rows, now)

    def wms_timeline(self) -> dict[str, Any]:
        """A copy, under the lock, of when each reference was first held (`received`: the mtime of the order file
        it was accepted from) and of each despatch (`despatches`: when its shp_ file was written)."""
        with self.lock:
            return {"received": dict(self.received_at), "despatches": [dict(d) for d in self.despatch_log]}

    def inspect(self) -> dict[str, Any]:
        """Receipts per order, stages, lines held, rejections, cancellations and files written."""
        with self.lock:
            return {
                "receipts": dict(self.receipts),
                "lines": {r: {n: [sku, qty] for n, (sku, qty) in o.lines.items()} for r, o in self.orders.items()},
                "stages": {r: ("cancelled" if o.cancelled else o.stage) for r, o in self.orders.items()},
                "shipped": {r: o.shipped for r, o in self.orders.items()},
                "rejections": list(self.rejections),
                "cancel_results": dict(self.cancel_results),
                "amendments": {r: list(v) for r, v in self.amendments.items()},
                "ship_to": {r: dict(o.ship_to) for r, o in self.orders.items() if o.ship_to},
                "files_written": list(self.files_written),
                "despatch_rows": list(self.despatch_rows),
            }
