"""Shopify Admin REST client (shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from resources.http import ApiClient

_BUCKETS: dict[str, tuple[float, float]] = {}  # base URL -> (calls in the bucket, when seen)
_LOCK = threading.Lock()


class ShopifyClient(ApiClient):
    """`X-Shopify-Access-Token`, `Link` cursor paging, and pacing by the store's own bucket signal:
    `X-Shopify-Shop-Api-Call-Limit: used/40` leaks `leak_per_s`; this client keeps its calls within
    `budget_share` of the bucket instead of running into 429s."""

    system = "Shopify"

    def __init__(
        self,
        base_url: str,
        access_token: str,
        budget_share: float = 0.5,
        leak_per_s: float = 2.0,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
    ) -> None:
        super().__init__(base_url.rstrip("/") + "/", timeout_s, max_attempts)
        self._token = access_token
        self.budget_share, self.leak_per_s = budget_share, leak_per_s
        self.capacity = 40.0

    def auth_headers(self) -> dict[str, str]:
        """The access token on every call."""
        return {"X-Shopify-Access-Token": self._token}

    def _pace(self) -> None:
        """Wait until the bucket (as last reported, leaked since) has room within our share."""
        with _LOCK:
            used, seen = _BUCKETS.get(self.base_url, (0.0, time.monotonic()))
        level = max(0.0, used - (time.monotonic() - seen) * self.leak_per_s)
        # One slot short of our share: the header is rounded and the call takes time to arrive, so filling the
        # bucket to the brim trips 429s (each costing Retry-After: 2 s).
        room = self.capacity * self.budget_share - 1
        if level + 1 > room:
            pause = (level + 1 - room) / self.leak_per_s
            self.stats.budget_wait_s += pause
            time.sleep(pause)

    def check_body(self, call: str, response: httpx.Response) -> None:
        """Record the bucket level Shopify reported."""
        header = response.headers.get("x-shopify-shop-api-call-limit")
        if header and "/" in header:
            used, capacity = header.split("/", 1)
            self.capacity = float(capacity)
            with _LOCK:
                _BUCKETS[self.base_url] = (float(used), time.monotonic())

    def pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Every page, following `Link: rel="next"` (which carries only `limit` and `page_info`)."""
        url: str | None = self.base_url + path
        query: dict[str, Any] | None = params
        while url:
            self._pace()
            body, response = self.exchange("GET", url, path, params=query)
            rows = (body or {}).get(key) or []
            if rows:
                yield rows
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries its own query (httpx would replace it with an empty one)

    def orders(self, updated_at_min: str, limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """Orders of any status updated since `updated_at_min`, oldest update first."""
        return self.pages(
            "orders.json",
            "orders",
            {"status": "any", "limit": limit, "order": "updated_at asc", "updated_at_min": updated_at_min},
        )

    def locations(self) -> list[dict[str, Any]]:
        """The store's locations."""
        return [row for page in self.pages("locations.json", "locations", {}) for row in page]

    def products(self, limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """The catalogue, with each variant's SKU and `inventory_item_id` (the key of inventory levels)."""
        return self.pages("products.json", "products", {"limit": limit})

    def fulfillment_orders(self, order_id: int) -> list[dict[str, Any]]:
        """An order's fulfillment orders: what is still to ship, per location and line."""
        return [
            row
            for page in self.pages(f"orders/{order_id}/fulfillment_orders.json", "fulfillment_orders", {})
            for row in page
        ]

    def inventory_levels(self, location_ids: list[int], limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """Available levels at the given locations."""
        return self.pages(
            "inventory_levels.json",
            "inventory_levels",
            {"location_ids": ",".join(str(i) for i in location_ids), "limit": limit},
        )


class ShopifyResource(dg.ConfigurableResource):
    """Shopify store URL, access token (from an environment variable) and share of the call bucket."""

    base_url: str = Field(description="https://{shop}.myshopify.com/admin/api/{version}/")
    access_token: str
    budget_share: float = 0.5
    leak_per_s: float = Field(default=2.0, description="2/s Standard, 4/s Advanced, 20/s Plus")

    def get_client(self) -> ShopifyClient:
        """A client for one run."""
        return ShopifyClient(self.base_url, self.access_token, self.budget_share, self.leak_per_s)
