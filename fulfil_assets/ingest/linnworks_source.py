"""dlt source for Linnworks: open orders (the whole open set each run) and processed/cancelled orders
(incremental on when they left the open set). No Dagster here: it runs on its own with any dlt pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.columns import declare
from fulfil_assets.ingest.cursors import iso
from resources.linnworks import LinnworksClient

EPOCH = "2000-01-01T00:00:00+00:00"


@dlt.source(name="linnworks", max_table_nesting=2)
def linnworks_source(client: LinnworksClient | None = None, page_size: int = 200) -> list[DltResource]:
    """Linnworks orders through the shared client (its rate budget, retries and re-auth)."""

    @dlt.resource(name="open_orders", primary_key="OrderId", write_disposition="merge")
    def open_orders() -> Iterator[list[dict[str, Any]]]:
        """Every open order with items, shipping info and address. Linnworks has no modified-since filter for
        open orders, so the open set is read whole (it is bounded by what is open) and merged on OrderId;
        `_fulfil_seen_at` tells staging which orders have since left the open set."""
        assert client is not None, "linnworks_source needs a client"
        seen_at = datetime.now(UTC).isoformat()
        for page in client.open_orders(page_size):
            yield [{**order, "_fulfil_seen_at": seen_at} for order in page]

    @dlt.resource(name="processed_orders", primary_key="pkOrderID", write_disposition="merge")
    def processed_orders(
        changed: dlt.sources.incremental[str] = dlt.sources.incremental("_changed_at", initial_value=EPOCH),
    ) -> Iterator[list[dict[str, Any]]]:
        """Orders processed or cancelled since the last run (their status for staging)."""
        assert client is not None, "linnworks_source needs a client"
        since, until = iso(changed.last_value), datetime.now(UTC).isoformat()
        for date_field in ("processed", "cancelled"):
            for page in client.processed_orders(date_field, since, until, page_size):
                yield [
                    {**row, "_changed_at": max(x for x in (row.get("dProcessedOn"), row.get("dCancelledOn")) if x)}
                    for row in page
                ]

    @dlt.resource(name="stock_items", primary_key="StockItemId", write_disposition="merge")
    def stock_items() -> Iterator[list[dict[str, Any]]]:
        """Stock items with their level per location (the OMS side of stock reconciliation)."""
        assert client is not None
        yield from client.stock_items(page_size)

    @dlt.resource(name="postal_services", primary_key="pkPostalServiceId", write_disposition="merge")
    def postal_services() -> Iterator[list[dict[str, Any]]]:
        """Postal services and their ids."""
        assert client is not None
        yield client.postal_services()

    return declare("linnworks", [open_orders, processed_orders, stock_items, postal_services])
