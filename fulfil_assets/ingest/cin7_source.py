"""dlt source for Cin7 Core: sales (incremental on `Updated`, detail fan-out), product availability, stock
adjustments and carriers.
No Dagster here: it runs on its own with any dlt pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.columns import declare
from fulfil_assets.ingest.cursors import LOOKBACK_S, DetailsRead, iso, stamp_time, up_to_reads
from resources.cin7 import AUTHORISED, VOIDED, Cin7Client
from resources.http import DataError

EPOCH = "2000-01-01T00:00:00+00:00"
# A sale whose every line has shipped: what changes on it from then on (the tracking fulfil posts itself, the sale
# moving to SHIPPED) is all in its list row; its lines and address no longer matter to anyone downstream.
SHIPPED_IN_FULL = "SHIPPED"


def updated_since(last_value: str, earlier_cursor: str | None) -> str:
    """Cin7's `UpdatedSince` (its own zone-less UTC form) for the cursor's (lagged) last value. A deployment that
    read with the earlier cursor on `Updated` and has no `_updated_at` position yet goes on from where that one got
    to, less the lookback, instead of listing every sale again (one detail call each at 60 calls a minute)."""
    at = stamp_time(last_value)
    if earlier_cursor and at <= stamp_time(EPOCH):
        at = stamp_time(earlier_cursor) - timedelta(seconds=LOOKBACK_S)
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def to_read(read: DetailsRead, row: dict[str, Any]) -> bool:
    """Whether a listed sale must be read in detail: changed since it last was, authorised, not voided and not
    shipped in full. At 60 calls a minute each detail is a call a sale to send or a parcel's tracking waits for;
    what the others need (paid or not, voided, shipped) is in the list row, which staging takes it from. A draft is
    read once authorised: authorising it changes its `Updated`, so the list shows it again then."""
    return (
        row.get("OrderStatus") == AUTHORISED
        and row.get("Status") != VOIDED
        and row.get("CombinedShippingStatus") != SHIPPED_IN_FULL
        and not read.unchanged(row["SaleID"], row.get("Updated"))
    )


@dlt.source(name="cin7", max_table_nesting=2)
def cin7_source(
    client: Cin7Client | None = None,
    page_size: int = 1000,
    availability_page_size: int = 1000,
    max_details: int | None = None,
) -> list[DltResource]:
    """Cin7 Core through the shared client (its 60/min budget, retries and error bodies); a run reads at most
    `max_details` sales in detail (None: all), the next going on from there."""

    @dlt.resource(name="sale_list", primary_key="SaleID", write_disposition="merge")
    def sale_list(
        updated: dlt.sources.incremental[str] = dlt.sources.incremental(
            "_updated_at", initial_value=EPOCH, lag=LOOKBACK_S
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        """Sales changed since the last run (Cin7's `UpdatedSince`), merged on SaleID. The cursor is `Updated` as
        explicit UTC (`_updated_at`): Cin7's own `yyyy-MM-ddTHH:mm:ss.fff` carries no zone, which dlt's lookback
        cannot step back from. The list stops at the `max_details`-th sale to read in detail: the cursor keeps
        the place of the rest for the next run."""
        assert client is not None, "cin7_source needs a client"
        earlier = dlt.current.resource_state().get("incremental", {}).get("Updated", {}).get("last_value")
        since = updated_since(iso(updated.last_value), earlier)
        read = DetailsRead("sales")
        # Cin7 promises no order for the list: sorted here, so that a cut leaves only newer changes for later.
        rows = sorted(
            (
                {**row, "_updated_at": stamp_time(row["Updated"]).isoformat()}
                for p in client.sales(since, page_size)
                for row in p
            ),
            key=lambda row: row["_updated_at"],
        )
        yield from up_to_reads([rows] if rows else [], lambda row: to_read(read, row), max_details)

    @dlt.transformer(data_from=sale_list, name="sales", primary_key="ID", write_disposition="merge")
    def sales(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Each changed sale in full: ship-to address, lines, fulfilments (one call per sale). A sale Cin7 will not
        return (its detail answers a 4xx) goes to `unreadable_sales` with Cin7's words, alone: the other sales go
        on, and staging opens an exception for it (read again when Cin7 next lists it as changed). A sale the
        lookback lists again unchanged is not read again, nor is a draft, a voided one or one shipped in full
        (`to_read`): at 60 calls a minute, the read after each of fulfil's own tracking posts would cost as much as
        the post."""
        assert client is not None
        read = DetailsRead()
        for row in rows:
            if not to_read(read, row):
                read.done(row["SaleID"], row.get("Updated"))
                continue
            try:
                yield client.sale(row["SaleID"])
                read.done(row["SaleID"], row.get("Updated"))
            except DataError as exc:  # not read again until Cin7 lists it changed: a cut never stalls on it
                read.done(row["SaleID"], row.get("Updated"))
                yield dlt.mark.with_table_name(
                    {
                        "ID": row["SaleID"],
                        "OrderNumber": row.get("OrderNumber"),
                        "Updated": row.get("Updated"),
                        "Reason": str(exc),
                        "SeenAt": datetime.now(UTC).isoformat(),
                    },
                    "unreadable_sales",
                )
        read.prune()

    @dlt.resource(name="product_availability", primary_key=("ID", "Location"), write_disposition="merge")
    def product_availability() -> Iterator[list[dict[str, Any]]]:
        """Stock per product and location as Cin7 holds it."""
        assert client is not None
        yield from client.availability(availability_page_size)

    @dlt.resource(name="stock_adjustments", primary_key="TaskID", write_disposition="merge")
    def stock_adjustments() -> Iterator[list[dict[str, Any]]]:
        """Stock adjustment tasks and their status (fulfil's own pushes among them)."""
        assert client is not None
        yield from client.stock_adjustments(availability_page_size)

    @dlt.resource(name="carriers", primary_key="CarrierID", write_disposition="merge")
    def carriers() -> Iterator[list[dict[str, Any]]]:
        """Carriers known to the account."""
        assert client is not None
        yield client.carriers()

    return declare("cin7", [sale_list, sales, product_availability, stock_adjustments, carriers])
