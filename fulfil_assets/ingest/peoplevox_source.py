"""dlt source for Peoplevox: item types (catalogue), available stock, sales order status, despatches
(incremental by despatch date through a search clause). No Dagster here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from fulfil_assets.ingest.columns import declare
from fulfil_assets.ingest.cursors import iso
from resources.peoplevox import PeoplevoxClient

EPOCH = "2000-01-01T00:00:00+00:00"


def date_clause(field: str, since: str) -> str:
    """`Field >= DateTime(...)`: changed since (dlt drops the rows at the boundary it already has)."""
    dt = datetime.fromisoformat(iso(since))
    return f"{field} >= DateTime({dt.year},{dt.month},{dt.day},{dt.hour},{dt.minute},{dt.second})"


@dlt.source(name="peoplevox")
def peoplevox_source(client: PeoplevoxClient | None = None, page_size: int = 1000) -> list[DltResource]:
    """Peoplevox through the shared SOAP client (session renewal, `ResponseId=-1` errors). `GetData` answers CSV:
    cells stay text (no timestamp detection), so a blank date cell lands beside the others."""
    dlt.current.source_schema().remove_type_detection("iso_timestamp")

    @dlt.resource(name="item_types", primary_key="ItemCode", write_disposition="merge")
    def item_types() -> Iterator[list[dict[str, Any]]]:
        """The warehouse's item catalogue."""
        assert client is not None, "peoplevox_source needs a client"
        yield from client.get_data("Item types", per_page=page_size)

    @dlt.resource(name="available", primary_key=("ItemCode", "SiteReference"), write_disposition="merge")
    def available() -> Iterator[list[dict[str, Any]]]:
        """Available stock per item and site."""
        assert client is not None
        yield from client.get_data("Available", per_page=page_size)

    @dlt.resource(name="sales_orders", primary_key="SalesOrderNumber", write_disposition="merge")
    def sales_orders() -> Iterator[list[dict[str, Any]]]:
        """Sales orders the warehouse holds, with their status."""
        assert client is not None
        yield from client.get_data("Sales orders", per_page=page_size)

    @dlt.resource(name="despatches", primary_key=("DespatchNumber", "ItemCode"), write_disposition="merge")
    def despatches(
        when: dlt.sources.incremental[str] = dlt.sources.incremental("DespatchDate", initial_value=EPOCH),
    ) -> Iterator[list[dict[str, Any]]]:
        """Despatch lines since the last run (`DespatchDate > DateTime(...)`)."""
        assert client is not None
        yield from client.get_data("Despatches", date_clause("DespatchDate", when.last_value), page_size)

    @dlt.resource(name="service_types", primary_key="Name", write_disposition="replace")
    def service_types() -> Iterator[list[dict[str, Any]]]:
        """The account's carrier services: what a sales order's `ServiceType` may be (replaced whole, so a
        service the account dropped is gone)."""
        assert client is not None
        yield from client.get_data("Service types", per_page=page_size)

    return declare("peoplevox", [item_types, available, sales_orders, despatches, service_types])
