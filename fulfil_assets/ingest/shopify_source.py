"""dlt source for Shopify: orders (incremental on `updated_at`), the fulfillment orders of those still to ship,
products with their variants (SKU -> inventory item), locations, inventory levels per location.
No Dagster here: it runs on its own with any dlt pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.columns import declare
from fulfil_assets.ingest.cursors import LOOKBACK_S, DetailsRead, iso, up_to_reads
from resources.shopify import ShopifyClient

EPOCH = "2000-01-01T00:00:00Z"


def still_to_ship(order: dict[str, Any]) -> bool:
    """Paid (or partly paid), not cancelled, not fully fulfilled: its fulfillment orders matter."""
    return (
        order.get("cancelled_at") is None
        and order.get("fulfillment_status") != "fulfilled"
        and order.get("financial_status") in ("paid", "partially_paid", "partially_refunded")
    )


def to_read(read: DetailsRead, order: dict[str, Any]) -> bool:
    """Whether a listed order's fulfillment orders must be read: still to ship, and changed since they last were."""
    return still_to_ship(order) and not read.unchanged(order["id"], order.get("updated_at"))


@dlt.source(name="shopify", max_table_nesting=2)
def shopify_source(
    client: ShopifyClient | None = None,
    page_size: int = 250,
    levels_page_size: int = 250,
    max_details: int | None = None,
) -> list[DltResource]:
    """Shopify through the shared client (paced by the store's call bucket, retries on 429); a run reads the
    fulfillment orders of at most `max_details` orders (None: all), the next going on from there."""

    @dlt.resource(name="orders", primary_key="id", write_disposition="merge")
    def orders(
        updated: dlt.sources.incremental[str] = dlt.sources.incremental(
            "updated_at", initial_value=EPOCH, lag=LOOKBACK_S
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        """Orders of any status changed since the last run, oldest change first, merged on id, up to the
        `max_details`-th whose fulfillment orders must be read (the cursor keeps the place of the rest)."""
        assert client is not None, "shopify_source needs a client"
        read = DetailsRead("fulfillment_orders")
        yield from up_to_reads(
            client.orders(iso(updated.last_value), page_size), lambda row: to_read(read, row), max_details
        )

    @dlt.transformer(data_from=orders, name="fulfillment_orders", primary_key="id", write_disposition="merge")
    def fulfillment_orders(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """What is still to ship of each changed order that is paid, not cancelled and not fully fulfilled
        (the ids a fulfilment must name); one call per such order, not again for one the lookback lists again
        unchanged."""
        assert client is not None
        read = DetailsRead()
        for row in rows:
            if to_read(read, row):
                yield client.fulfillment_orders(row["id"])
                read.done(row["id"], row.get("updated_at"))
        read.prune()

    @dlt.resource(name="products", primary_key="id", write_disposition="merge")
    def products() -> Iterator[list[dict[str, Any]]]:
        """The catalogue; `products__variants` maps each SKU to its variant and inventory item."""
        assert client is not None
        yield from client.products(page_size)

    @dlt.resource(name="locations", primary_key="id", write_disposition="merge")
    def locations() -> Iterator[list[dict[str, Any]]]:
        """The store's locations."""
        assert client is not None
        yield client.locations()

    @dlt.resource(name="inventory_levels", primary_key=("inventory_item_id", "location_id"), write_disposition="merge")
    def inventory_levels() -> Iterator[list[dict[str, Any]]]:
        """Available stock per inventory item and location."""
        assert client is not None
        ids = [loc["id"] for loc in client.locations()]
        if ids:
            yield from client.inventory_levels(ids, levels_page_size)

    return declare("shopify", [orders, fulfillment_orders, products, locations, inventory_levels])
