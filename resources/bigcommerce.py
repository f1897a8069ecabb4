"""BigCommerce client (shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from resources.http import ApiClient

_QUOTA: dict[str, tuple[int, int, float, float]] = {}  # store URL -> (quota, left, reset s, when seen)
_LOCK = threading.Lock()
STANDARD_QUOTA = 150  # requests per 30 s window on a Standard plan (larger plans have more: the headers say)


class BigCommerceClient(ApiClient):
    """`X-Auth-Token`; paced by the store's own headers (`X-Rate-Limit-Requests-Left` and
    `X-Rate-Limit-Time-Reset-Ms`): once this client's share of the window's quota is used it waits for the
    window to reset, because the quota is shared with every other app on the store."""

    system = "BigCommerce"

    def __init__(
        self,
        base_url: str,
        access_token: str,
        budget_share: float = 0.5,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
    ) -> None:
        super().__init__(base_url.rstrip("/") + "/", timeout_s, max_attempts)
        self._token = access_token
        self.budget_share = budget_share

    @property
    def calls_per_minute(self) -> float:
        """This client's share of the store's quota a minute: the quota the store's headers gave in this process,
        or, before its first call (a run sizing its reads), a Standard plan's."""
        with _LOCK:
            quota = _QUOTA.get(self.base_url, (STANDARD_QUOTA,))[0]
        return quota * 2 * self.budget_share

    def auth_headers(self) -> dict[str, str]:
        """The store token and JSON."""
        return {"X-Auth-Token": self._token, "Accept": "application/json"}

    def _pace(self) -> None:
        with _LOCK:
            quota, left, reset_s, seen = _QUOTA.get(self.base_url, (0, 0, 0.0, 0.0))
        if not quota:
            return
        remaining_wait = reset_s - (time.monotonic() - seen)
        if quota - left >= quota * self.budget_share and remaining_wait > 0:
            self.stats.budget_wait_s += remaining_wait
            time.sleep(remaining_wait)
            with _LOCK:
                _QUOTA.pop(self.base_url, None)

    def check_body(self, call: str, response: httpx.Response) -> None:
        """Remember what the store said of its quota."""
        h = response.headers
        if "x-rate-limit-requests-quota" in h and "x-rate-limit-requests-left" in h:
            with _LOCK:
                _QUOTA[self.base_url] = (
                    int(h["x-rate-limit-requests-quota"]),
                    int(h["x-rate-limit-requests-left"]),
                    int(h.get("x-rate-limit-time-reset-ms", "0")) / 1000,
                    time.monotonic(),
                )

    def get(self, path: str, **params: Any) -> Any:
        """GET a v2/v3 path under the store."""
        self._pace()
        return self.request(
            "GET", self.base_url + path, path.split("?")[0], params={k: v for k, v in params.items() if v is not None}
        )

    def orders(self, modified_since: str, limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """v2 orders modified since `modified_since`, oldest first; an empty page (204) ends the list."""
        page = 1
        while True:
            rows = self.get(
                "v2/orders", min_date_modified=modified_since, sort="date_modified:asc", page=page, limit=limit
            )
            if not rows:
                return
            yield rows
            if len(rows) < limit:
                return
            page += 1

    def set_inventory(self, items: list[dict[str, Any]], reason: str) -> dict[str, Any]:
        """v3 absolute inventory adjustment (at most 2,000 items of `{location_id, sku, quantity}`)."""
        self._pace()
        path = "v3/inventory/adjustments/absolute"
        body = {"reason": reason, "items": items}
        return self.request("PUT", self.base_url + path, path, json=body, effect=True) or {}

    def order_products(self, order_id: int) -> list[dict[str, Any]]:
        """An order's lines."""
        return self.get(f"v2/orders/{order_id}/products") or []

    def create_shipment(self, order_id: int | str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a shipment (one ship-to address, its items and one tracking number) to an order."""
        self._pace()
        path = f"v2/orders/{order_id}/shipments"
        return self.request("POST", self.base_url + path, "v2/orders/{id}/shipments", json=body, effect=True) or {}

    def shipments(self, order_id: int | str) -> list[dict[str, Any]]:
        """An order's shipments so far (an empty list when it has none)."""
        return self.get(f"v2/orders/{order_id}/shipments") or []

    def order_shipping_addresses(self, order_id: int) -> list[dict[str, Any]]:
        """An order's ship-to addresses (with the shipping method chosen)."""
        return self.get(f"v2/orders/{order_id}/shipping_addresses") or []

    def catalog_products(self, limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """v3 catalog products with their `inventory_tracking` (how their stock must be set)."""
        page = 1
        while True:
            body = self.get("v3/catalog/products", page=page, limit=limit, include_fields="sku,inventory_tracking")
            if body.get("data"):
                yield body["data"]
            if page >= int(body.get("meta", {}).get("pagination", {}).get("total_pages") or 0):
                return
            page += 1

    def inventory_items(self, limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """v3 inventory per SKU with its locations, paged by `meta.pagination`."""
        page = 1
        while True:
            body = self.get("v3/inventory/items", page=page, limit=limit)
            if body.get("data"):
                yield body["data"]
            if page >= int(body.get("meta", {}).get("pagination", {}).get("total_pages") or 0):
                return
            page += 1


class BigCommerceResource(dg.ConfigurableResource):
    """BigCommerce store URL, token (from an environment variable) and share of the store's quota."""

    base_url: str = Field(description="https://api.bigcommerce.com/stores/{store_hash}/")
    access_token: str
    budget_share: float = 0.5

    def get_client(self) -> BigCommerceClient:
        """A client for one run."""
        return BigCommerceClient(self.base_url, self.access_token, self.budget_share)
