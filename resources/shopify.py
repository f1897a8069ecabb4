"""Shopify Admin REST client (shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from resources.http import SEND_RESERVE, ApiClient, DataError, RateBudget, TransientError, shared_budget

_BUCKETS: dict[str, tuple[float, float]] = {}  # base URL -> (calls in the bucket, when seen)
_LOCK = threading.Lock()
_COSTS: dict[str, tuple[float, float, float, float]] = {}  # GraphQL: base URL -> (available, maximum, restore/s, seen)
SET_QUANTITIES = """mutation inventorySetQuantities($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { reason }
    userErrors { field message code }
  }
}"""
MAX_QUANTITIES = 250  # per inventorySetQuantities call


class ShopifyClient(ApiClient):
    """`X-Shopify-Access-Token`, `Link` cursor paging, and pacing two ways: every fulfil process draws its REST
    calls from one window of `budget_share` of the bucket's leak (a budget file), and waits on the store's own
    signal (`X-Shopify-Shop-Api-Call-Limit: used/40` leaking `leak_per_s`) for the other apps' calls, instead
    of running into 429s."""

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

    @property
    def calls_per_minute(self) -> float:
        """This client's share of the REST bucket's leak, a minute."""
        return self.leak_per_s * 60 * self.budget_share

    def budget_for(self, call: str) -> RateBudget | None:
        """REST calls: `budget_share` of the bucket as a window every fulfil process shares (each process sees
        the store's reported level only after its own calls, so runs side by side would each take the whole
        share), a part kept for tracking posts; GraphQL is paced by its own cost bucket."""
        if call.startswith("graphql"):
            return None
        limit = max(1, int(self.capacity * self.budget_share) - 1)
        window_s = limit / (self.leak_per_s * self.budget_share)
        return shared_budget(self.system, self.base_url, "rest", limit, window_s, send_reserve=SEND_RESERVE)

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

    def pages(
        self, path: str, key: str, params: dict[str, Any], for_send: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page, following `Link: rel="next"` (which carries only `limit` and `page_info`); `for_send`: read
        for a send (see `ApiClient.request`)."""
        url: str | None = self.base_url + path
        query: dict[str, Any] | None = params
        while url:
            self._pace()
            body, response = self.exchange("GET", url, path, params=query, for_send=for_send)
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

    def fulfillment_orders(self, order_id: int, for_send: bool = False) -> list[dict[str, Any]]:
        """An order's fulfillment orders: what is still to ship, per location and line."""
        path = f"orders/{order_id}/fulfillment_orders.json"
        return [row for page in self.pages(path, "fulfillment_orders", {}, for_send) for row in page]

    def create_fulfillment(self, fulfillment: dict[str, Any]) -> dict[str, Any]:
        """POST `fulfillments.json`: fulfil fulfillment-order lines with tracking; Shopify's fulfillment back."""
        self._pace()
        path = "fulfillments.json"
        body = self.request("POST", self.base_url + path, path, json={"fulfillment": fulfillment}, effect=True)
        return (body or {}).get("fulfillment") or {}

    def order_fulfillments(self, order_id: int | str, for_send: bool = False) -> list[dict[str, Any]]:
        """An order's fulfillments so far (tracking numbers included)."""
        path = f"orders/{order_id}/fulfillments.json"
        return [row for page in self.pages(path, "fulfillments", {}, for_send) for row in page]

    def inventory_levels(self, location_ids: list[int], limit: int = 250) -> Iterator[list[dict[str, Any]]]:
        """Available levels at the given locations."""
        return self.pages(
            "inventory_levels.json",
            "inventory_levels",
            {"location_ids": ",".join(str(i) for i in location_ids), "limit": limit},
        )

    def _pace_cost(self, cost: float) -> None:
        """Wait until the GraphQL cost bucket (as last reported, restored since) holds `cost` points while
        leaving the rest of the store's apps their share."""
        with _LOCK:
            seen = _COSTS.get(self.base_url)
        if seen is None:
            return
        available, maximum, rate, at = seen
        now = min(maximum, available + (time.monotonic() - at) * rate)
        reserve = maximum * (1 - self.budget_share)
        if now - cost < reserve and rate > 0:
            pause = min((cost + reserve - now) / rate, maximum / rate)
            self.stats.budget_wait_s += pause
            time.sleep(pause)

    def set_quantities(self, quantities: list[dict[str, Any]], reason: str = "correction") -> dict[str, Any]:
        """GraphQL `inventorySetQuantities` of `available` (at most 250 `{inventoryItemId, locationId,
        quantity}`), paced by the cost bucket each answer reports (`throttleStatus`); a THROTTLED answer was not
        applied and is asked again once the points it lacked are back. Returns the mutation's payload."""
        body = {
            "query": SET_QUANTITIES,
            "variables": {
                "input": {
                    "name": "available",
                    "reason": reason,
                    "ignoreCompareQuantity": True,
                    "quantities": quantities,
                }
            },
        }
        cost = 10.0 + len(quantities)
        call = "graphql inventorySetQuantities"
        for _ in range(self.max_attempts * 5):
            self._pace_cost(cost)
            answer = self.request("POST", self.base_url + "graphql.json", call, json=body, effect=True) or {}
            status = ((answer.get("extensions") or {}).get("cost") or {}).get("throttleStatus") or {}
            if status:
                with _LOCK:
                    _COSTS[self.base_url] = (
                        float(status.get("currentlyAvailable") or 0),
                        float(status.get("maximumAvailable") or 1000),
                        float(status.get("restoreRate") or 50),
                        time.monotonic(),
                    )
            errors = answer.get("errors") or []
            if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
                self.stats.throttled += 1
                continue
            if errors:
                raise DataError(self.system, call, "; ".join(str(e.get("message")) for e in errors))
            return (answer.get("data") or {}).get("inventorySetQuantities") or {}
        raise TransientError(self.system, call, "still THROTTLED after repeated waits", maybe_applied=False)


class ShopifyResource(dg.ConfigurableResource):
    """Shopify store URL, access token (from an environment variable) and share of the call bucket."""

    base_url: str = Field(description="https://{shop}.myshopify.com/admin/api/{version}/")
    access_token: str
    budget_share: float = 0.5
    leak_per_s: float = Field(default=2.0, description="2/s Standard, 4/s Advanced, 20/s Plus")

    def get_client(self) -> ShopifyClient:
        """A client for one run."""
        return ShopifyClient(self.base_url, self.access_token, self.budget_share, self.leak_per_s)
