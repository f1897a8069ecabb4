"""Incremental cursors as the systems want them back, and the lookback that keeps a late record from being missed.

A modified-since cursor moves to the newest stamp read. A record saved with an older stamp that becomes visible
only afterwards (a slow commit, a replica behind) would then never be read: each such cursor reads `LOOKBACK_S`
seconds further back than the newest stamp (dlt's `lag`), and `DetailsRead` remembers, in the resource's own
state, which records' details were read at which stamp, so that a record the lookback lists again unchanged costs
no second detail call (Cin7's per-sale read, BigCommerce's lines and addresses, Shopify's fulfillment orders)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt

LOOKBACK_S = 300.0
READ_MINUTES = 2.0  # a run reads at most this many minutes' worth of its share of a system's calls in details
CANCELLATION_READ_MINUTES = 0.25  # a cancellation run's: it sends no orders, so it holds the system's pool briefly


def iso(value: Any) -> str:
    """A cursor's last value as ISO 8601 text (dlt may hand it back as a datetime or as the string it stored)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def stamp_time(stamp: str) -> datetime:
    """A record's modification stamp (ISO 8601, `Z` or an offset, or none: UTC) as a UTC datetime."""
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class DetailsRead:
    """Per record, the stamp its details were last read at, kept in the current resource's dlt state (saved with
    the load, so a run that fails before loading reads them again). Entries older than twice the lookback behind
    the newest are dropped: the cursor will never list those records again unless they change."""

    def __init__(self, resource: str | None = None) -> None:
        state = dlt.current.resource_state(resource) if resource else dlt.current.resource_state()
        self.read: dict[str, str] = state.setdefault("details_read", {})

    def unchanged(self, record_id: Any, stamp: str | None) -> bool:
        """Whether this record's details were already read at this very stamp."""
        return stamp is not None and self.read.get(str(record_id)) == stamp

    def seen(self, record_id: Any) -> bool:
        """Whether this record's details were read at some stamp the lookback still covers."""
        return str(record_id) in self.read

    def done(self, record_id: Any, stamp: str | None) -> None:
        """Note that the record's details were read at `stamp`."""
        if stamp is not None:
            self.read[str(record_id)] = stamp

    def prune(self) -> None:
        """Forget the records the lookback has passed (once a page: the state stays small and cheap to keep)."""
        if len(self.read) > 1000:
            newest = max(stamp_time(s) for s in self.read.values())
            cutoff = newest - timedelta(seconds=2 * LOOKBACK_S)
            for key in [k for k, s in self.read.items() if stamp_time(s) < cutoff]:
                del self.read[key]


def details_per_run(calls_per_minute: float, calls_per_record: float = 1.0, minutes: float = READ_MINUTES) -> int:
    """How many records one run reads in detail: `minutes` of the client's share of the system's calls. A backlog
    (a first sync, a day's orders after an outage) then goes in runs of a few minutes, each sending what it read,
    instead of one run that holds the system's pipeline (and every job waiting on it) while it lasts."""
    return max(1, int(calls_per_minute * minutes / calls_per_record))


def up_to_reads(
    pages: Iterable[list[dict[str, Any]]], needs_read: Callable[[dict[str, Any]], bool], limit: int | None
) -> Iterator[list[dict[str, Any]]]:
    """List pages (oldest change first) cut after the `limit`-th row whose details must be read (None: no cut).
    The cursor moves only as far as the rows yielded, so the next run lists the rest and goes on from there;
    rows the lookback lists again unchanged count for nothing, so each run gets further."""
    left = limit
    for page in pages:
        if left is None:
            yield page
            continue
        taken: list[dict[str, Any]] = []
        for row in page:
            taken.append(row)
            if needs_read(row):
                left -= 1
                if left == 0:
                    break
        if taken:
            yield taken
        if left == 0:
            return
