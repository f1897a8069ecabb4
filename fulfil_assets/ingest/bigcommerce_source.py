"""dlt source for BigCommerce: v2 orders (incremental on modification), their lines and ship-to addresses,
v3 inventory per SKU and location. No Dagster here: it runs on its own with any dlt pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.columns import declare
from fulfil_assets.ingest.cursors import LOOKBACK_S, DetailsRead, iso, up_to_reads
from resources.bigcommerce import BigCommerceClient

EPOCH = "2000-01-01T00:00:00+00:00"
SHIPPED_IN_FULL = (2, 10)  # `status_id` Shipped, Completed


def _modified_at(order: dict[str, Any]) -> str:
    """The order's RFC-2822 `date_modified` as sortable ISO (the incremental cursor)."""
    return parsedate_to_datetime(order["date_modified"]).isoformat()


def to_read(read: DetailsRead, order: dict[str, Any]) -> bool:
    """Whether a listed order's lines and address must be read: changed since they last were, unless it is shipped
    in full and they were read before (its list row gives staging its new status): each of fulfil's own shipments
    changes the order, and reading its lines and address again after the last would cost two calls per order
    shipped. An order first listed shipped (history, or shipped by someone else) is read once."""
    if order.get("status_id") in SHIPPED_IN_FULL and read.seen(order["id"]):
        return False
    return not read.unchanged(order["id"], order["_modified_at"])


@dlt.source(name="bigcommerce", max_table_nesting=2)
def bigcommerce_source(
    client: BigCommerceClient | None = None, page_size: int = 250, max_details: int | None = None
) -> list[DltResource]:
    """BigCommerce through the shared client (paced by the store's quota headers); a run reads the lines and
    addresses of at most `max_details` orders (None: all), the next going on from there."""

    @dlt.resource(name="orders", primary_key="id", write_disposition="merge")
    def orders(
        modified: dlt.sources.incremental[str] = dlt.sources.incremental(
            "_modified_at", initial_value=EPOCH, lag=LOOKBACK_S
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        """Orders modified since the last run, merged on id, up to the `max_details`-th whose lines and address
        must be read (the cursor keeps the place of the rest for the next run)."""
        assert client is not None, "bigcommerce_source needs a client"
        read = DetailsRead("order_products")
        pages = (
            [{**o, "_modified_at": _modified_at(o)} for o in page]
            for page in client.orders(iso(modified.last_value), page_size)
        )
        yield from up_to_reads(pages, lambda row: to_read(read, row), max_details)

    @dlt.transformer(data_from=orders, name="order_products", primary_key="id", write_disposition="merge")
    def order_products(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Lines of each changed order (not again for one the lookback lists again unchanged)."""
        assert client is not None
        read = DetailsRead()
        for row in rows:
            if to_read(read, row):
                yield client.order_products(row["id"])
                read.done(row["id"], row["_modified_at"])
        read.prune()

    @dlt.transformer(data_from=orders, name="order_shipping_addresses", primary_key="id", write_disposition="merge")
    def order_shipping_addresses(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Ship-to address and shipping method of each changed order (not again for one listed again unchanged)."""
        assert client is not None
        read = DetailsRead()
        for row in rows:
            if to_read(read, row):
                yield [{**a, "order_id": row["id"]} for a in client.order_shipping_addresses(row["id"])]
                read.done(row["id"], row["_modified_at"])
        read.prune()

    @dlt.resource(name="inventory_levels", primary_key=("sku", "location_id"), write_disposition="merge")
    def inventory_levels() -> Iterator[list[dict[str, Any]]]:
        """Available to sell per SKU and location."""
        assert client is not None
        for page in client.inventory_items(page_size):
            yield [
                {
                    "sku": item["identity"]["sku"],
                    "variant_id": item["identity"].get("variant_id"),
                    "product_id": item["identity"].get("product_id"),
                    **loc,
                }
                for item in page
                for loc in item.get("locations", [])
            ]

    @dlt.resource(name="products", primary_key="id", write_disposition="merge")
    def products() -> Iterator[list[dict[str, Any]]]:
        """Catalog products with `inventory_tracking`: a product tracked as a whole takes stock by its id."""
        assert client is not None
        yield from client.catalog_products(page_size)

    return declare("bigcommerce", [orders, order_products, order_shipping_addresses, inventory_levels, products])
