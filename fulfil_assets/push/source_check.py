"""The last look before an order leaves: is it still open, paid and not on hold in its own order system?

Ingest may have read an order as open seconds before the customer cancelled it. Right before an order is sent,
its source is asked again: Linnworks by id (one call per 100 orders); Cin7 Core, BigCommerce and Shopify for the
orders changed since the oldest version ingest read of the batch (their own "modified since" lists: a page or two,
not one call per order). An order that is no longer sendable is held with the source's own reason, and goes out
by itself if it becomes sendable again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from resources.bigcommerce import BigCommerceClient
from resources.cin7 import AUTHORISED, VOIDED, Cin7Client
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient

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


MARGIN = timedelta(minutes=2)  # clocks and cursors differ a little: ask a little further back
BC_NOT_SENDABLE = {0: "incomplete", 4: "refunded", 5: "cancelled", 6: "declined", 7: "awaiting payment"}
SHOPIFY_PAID = ("paid", "partially_refunded")


def cin7_reasons(sale: Mapping[str, Any]) -> str | None:
    """Why a Cin7 Core sale (a `saleList` row) must not be sent now, or None."""
    if sale.get("Status") == VOIDED:
        return "voided in Cin7 Core just before the send"
    if sale.get("OrderStatus") not in (None, AUTHORISED):
        return f"no longer authorised in Cin7 Core ({sale.get('OrderStatus')}) just before the send"
    return None


def bigcommerce_reasons(order: Mapping[str, Any]) -> str | None:
    """Why a BigCommerce order (a v2 order) must not be sent now, or None."""
    status = BC_NOT_SENDABLE.get(int(order.get("status_id") or 0))
    return f"{status} in BigCommerce just before the send" if status else None


def shopify_reasons(order: Mapping[str, Any]) -> str | None:
    """Why a Shopify order must not be sent now, or None."""
    if order.get("cancelled_at"):
        return "cancelled in Shopify just before the send"
    if order.get("financial_status") not in SHOPIFY_PAID:
        return f"no longer paid in Shopify ({order.get('financial_status')})"
    return None


def changed_since_recheck(
    system: str,
    changed: Callable[[str], Iterable[list[dict[str, Any]]]],
    order_id: str,
    reasons: Callable[[Mapping[str, Any]], str | None],
    read_at: Mapping[str, datetime],
) -> Recheck:
    """A recheck for ledger rows of `system`'s orders: the system's orders changed since the oldest version
    ingest read of the batch (`read_at`: order key -> that order's `updated_at`), and for each of the batch's
    orders among them, the reason it must not be sent now. An order unchanged since ingest passes."""
    prefix = f"{system}:"

    def recheck(rows: pl.DataFrame) -> dict[str, str]:
        mine = rows.filter(pl.col("order_key").str.starts_with(prefix)).select("idempotency_key", "order_key")
        if mine.is_empty():
            return {}
        times = [read_at[k] for k in mine["order_key"] if read_at.get(k) is not None]
        since = (min(times) if times else datetime.now().astimezone() - timedelta(days=1)) - MARGIN
        latest = {str(o.get(order_id)): o for page in changed(since.isoformat()) for o in page}
        found = {}
        for key, order_key in mine.iter_rows():
            order = latest.get(order_key.removeprefix(prefix))
            reason = reasons(order) if order is not None else None
            if reason:
                found[key] = reason
        return found

    return recheck


def cin7_recheck(client: Cin7Client, read_at: Mapping[str, datetime]) -> Recheck:
    """Cin7 Core sales changed since ingest read them (`saleList?UpdatedSince`)."""
    return changed_since_recheck("cin7", client.sales, "SaleID", cin7_reasons, read_at)


def bigcommerce_recheck(client: BigCommerceClient, read_at: Mapping[str, datetime]) -> Recheck:
    """BigCommerce orders modified since ingest read them (`v2/orders?min_date_modified`)."""
    return changed_since_recheck("bigcommerce", client.orders, "id", bigcommerce_reasons, read_at)


def shopify_recheck(client: ShopifyClient, read_at: Mapping[str, datetime]) -> Recheck:
    """Shopify orders updated since ingest read them (`orders.json?updated_at_min&status=any`)."""
    return changed_since_recheck("shopify", client.orders, "id", shopify_reasons, read_at)


def combined(rechecks: list[Recheck]) -> Recheck | None:
    """One recheck asking every source in turn (each looks only at its own system's rows)."""
    if not rechecks:
        return None

    def recheck(rows: pl.DataFrame) -> dict[str, str]:
        found: dict[str, str] = {}
        for one in rechecks:
            found |= one(rows)
        return found

    return recheck
