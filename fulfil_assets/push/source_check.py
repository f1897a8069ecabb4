"""The last look before an order leaves: is it still open, paid and not on hold in its own order system?

Ingest may have read an order as open seconds before the customer cancelled it. Right before an order is sent,
its source is asked again (one call per 100 Linnworks orders); an order that is no longer sendable is held with
the source's own reason, and goes out by itself if it becomes sendable again.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from resources.linnworks import LinnworksClient

LOOKUP_CHUNK = 100
Recheck = Callable[[pl.DataFrame], dict[str, str]]


def linnworks_reasons(order: dict | None) -> str | None:
    """Why a Linnworks order (as `Orders/GetOrdersById` returns it) must not be sent now, or None."""
    if order is None:
        return "not found in Linnworks any more"
    info = order.get("GeneralInfo") or {}
    if order.get("Processed"):
        return "already processed in Linnworks"
    if info.get("HoldOrCancel"):
        return "cancelled or put on hold in Linnworks just before the send"
    if info.get("Status") != 1:
        return "no longer paid in Linnworks"
    return None


def linnworks_recheck(client: LinnworksClient) -> Recheck:
    """A recheck for ledger rows of Linnworks orders: idempotency key -> reason, for each order Linnworks says
    must not be sent now. Rows of other systems pass."""

    def recheck(rows: pl.DataFrame) -> dict[str, str]:
        mine = rows.filter(pl.col("order_key").str.starts_with("linnworks:")).select(
            "idempotency_key", pl.col("order_key").str.strip_prefix("linnworks:").alias("order_id")
        )
        ids = mine["order_id"].unique().to_list()
        seen: dict[str, dict] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            for order in client.orders_by_id(ids[start : start + LOOKUP_CHUNK]):
                seen[str(order.get("OrderId"))] = order
        found = {}
        for key, order_id in mine.iter_rows():
            reason = linnworks_reasons(seen.get(order_id))
            if reason:
                found[key] = reason
        return found

    return recheck
