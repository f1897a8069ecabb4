"""dlt source for Shopify: orders (incremental on `updated_at`), locations, inventory levels per location.
No Dagster here: it runs on its own with any dlt pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.cursors import iso
from resources.shopify import ShopifyClient

EPOCH = "2000-01-01T00:00:00Z"


@dlt.source(name="shopify", max_table_nesting=2)
def shopify_source(
    client: ShopifyClient | None = None, page_size: int = 250, levels_page_size: int = 250
) -> list[DltResource]:
    """Shopify through the shared client (paced by the store's call bucket, retries on 429)."""

    @dlt.resource(name="orders", primary_key="id", write_disposition="merge")
    def orders(
        updated: dlt.sources.incremental[str] = dlt.sources.incremental("updated_at", initial_value=EPOCH),
    ) -> Iterator[list[dict[str, Any]]]:
        """Orders of any status changed since the last run, oldest change first, merged on id."""
        assert client is not None, "shopify_source needs a client"
        yield from client.orders(iso(updated.last_value), page_size)

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

    return [orders, locations, inventory_levels]
