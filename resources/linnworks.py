"""Linnworks client (shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from resources.http import ApiClient, AuthError, DataError, RateBudget, shared_budget

# Calls per minute per method, from Linnworks' official Swagger.
METHOD_LIMITS = {
    "Orders/GetOpenOrders": 250,
    "ProcessedOrders/SearchProcessedOrders": 150,
    "Stock/GetStockItemsFull": 150,
    "Stock/SetStockLevel": 250,
    "Stock/UpdateStockLevelsBySKU": 150,
    "Orders/ProcessOrder": 250,
    "Orders/SetOrderShippingInfo": 250,
    "Orders/CancelOrder": 150,
    "Orders/GetOrdersById": 250,
    "Orders/CreateOrders": 150,
    "Orders/GetOrderDetailsByReferenceId": 250,
    "PostalServices/GetPostalServices": 150,
    "Auth/AuthorizeByApplication": 150,
}
SESSION_TTL_S = 1800.0


class LinnworksClient(ApiClient):
    """Authorises by application, then calls `{Server}/api/{Controller}/{Method}` with the raw token header.

    Each method draws on its own per-minute budget, scaled to this client's `budget_share`.
    """

    system = "Linnworks"

    def __init__(
        self,
        base_url: str,
        application_id: str,
        application_secret: str,
        token: str,
        budget_share: float = 0.5,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
    ) -> None:
        super().__init__(base_url.rstrip("/"), timeout_s, max_attempts)
        self._secret = (application_id, application_secret, token)
        self.budget_share = budget_share
        self._session: tuple[str, str, float] | None = None  # token, server, issued at
        self._auth_lock = threading.Lock()

    def budget_for(self, call: str) -> RateBudget | None:
        """The method's per-minute budget, times `budget_share`."""
        limit = METHOD_LIMITS.get(call, 150)
        return shared_budget(self.system, self.base_url, call, max(1, int(limit * self.budget_share)), 60.0)

    def _authorise(self) -> tuple[str, str, float]:
        app_id, secret, token = self._secret
        self._session = None
        body = self.request(
            "POST",
            f"{self.base_url}/api/Auth/AuthorizeByApplication",
            "Auth/AuthorizeByApplication",
            json={"ApplicationId": app_id, "ApplicationSecret": secret, "Token": token},
        )
        if not isinstance(body, dict) or not body.get("Token") or not body.get("Server"):
            raise AuthError(self.system, "Auth/AuthorizeByApplication", "no session token in the answer")
        self._session = (body["Token"], body["Server"].rstrip("/"), time.monotonic())
        return self._session

    def session(self) -> tuple[str, str]:
        """A live (token, server), re-authorising every ~30 minutes as Linnworks expects."""
        with self._auth_lock:
            if self._session is None or time.monotonic() - self._session[2] > SESSION_TTL_S - 60:
                self._authorise()
            assert self._session is not None
            return self._session[0], self._session[1]

    def auth_headers(self) -> dict[str, str]:
        """The raw session token (no Bearer), once a session exists."""
        return {"Authorization": self._session[0]} if self._session else {}

    def reauthenticate(self) -> bool:
        """A 401 on a call means the session expired: authorise again once."""
        if self._session is None:
            return False
        with self._auth_lock:
            self._authorise()
        return True

    def call(self, method: str, params: dict[str, Any], *, effect: bool = False) -> Any:
        """POST a v1 method with a JSON body (`effect`: it changes something; see `ApiClient.request`)."""
        _, server = self.session()
        return self.request("POST", f"{server}/api/{method}", method, json=params, effect=effect)

    def _pages(self, method: str, params: Any, unwrap: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of a 1-based paged method until `TotalPages` (or an empty page); `params(page)` builds the body."""
        page = 1
        while True:
            body = self.call(method, params(page))
            result = body.get(unwrap) or {} if unwrap else body
            data = result.get("Data") or []
            if data:
                yield data
            if page >= int(result.get("TotalPages") or 0) or not data:
                return
            page += 1

    def open_orders(self, page_size: int = 200) -> Iterator[list[dict[str, Any]]]:
        """Every open order, page by page, oldest received first."""
        sorting = [{"FieldCode": "GENERAL_INFO_DATE", "Direction": "Ascending", "Order": 0}]
        return self._pages(
            "Orders/GetOpenOrders", lambda page: {"entriesPerPage": page_size, "pageNumber": page, "sorting": sorting}
        )

    def processed_orders(
        self, date_field: str, from_iso: str, to_iso: str, page_size: int = 200
    ) -> Iterator[list[dict[str, Any]]]:
        """Processed or cancelled orders whose `date_field` falls in the window, page by page."""
        return self._pages(
            "ProcessedOrders/SearchProcessedOrders",
            lambda page: {
                "request": {
                    "DateField": date_field,
                    "FromDate": from_iso,
                    "ToDate": to_iso,
                    "PageNumber": page,
                    "ResultsPerPage": page_size,
                    "SearchSorting": {"SortField": "dProcessedOn", "SortDirection": "ASC"},
                }
            },
            unwrap="ProcessedOrders",
        )

    def stock_items(self, page_size: int = 200) -> Iterator[list[dict[str, Any]]]:
        """Stock items with their levels per location. The method gives no totals: stop on a short page, and
        take a 400 for a page past the end (the item count was a multiple of the page size) as the end."""
        page = 1
        while True:
            try:
                rows = (
                    self.call(
                        "Stock/GetStockItemsFull",
                        {
                            "keyword": "",
                            "loadCompositeParents": False,
                            "loadVariationParents": False,
                            "entriesPerPage": page_size,
                            "pageNumber": page,
                            "dataRequirements": ["StockLevels"],
                            "searchTypes": ["SKU"],
                        },
                    )
                    or []
                )
            except DataError as exc:
                if exc.status == 400 and page > 1:
                    return
                raise
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            page += 1

    def postal_services(self) -> list[dict[str, Any]]:
        """The account's postal services (ids for tracking posts)."""
        return (
            self.request(
                "GET", f"{self.session()[1]}/api/PostalServices/GetPostalServices", "PostalServices/GetPostalServices"
            )
            or []
        )

    def set_shipping_info(self, order_id: str, tracking_number: str, postal_service_id: str | None = None) -> Any:
        """Record tracking on an order."""
        info: dict[str, Any] = {"TrackingNumber": tracking_number, "ManualAdjust": False}
        if postal_service_id:
            info["PostalServiceId"] = postal_service_id
        return self.call("Orders/SetOrderShippingInfo", {"orderId": order_id, "info": info}, effect=True)

    def process_order(self, order_id: str, location_id: str | None = None) -> dict[str, Any]:
        """Mark an order processed (despatched in full)."""
        params: dict[str, Any] = {"orderId": order_id, "scanPerformed": False, "context": {"Module": "fulfil"}}
        if location_id:
            params["locationId"] = location_id
        return self.call("Orders/ProcessOrder", params, effect=True)

    def create_orders(self, orders: list[dict[str, Any]], location_id: str) -> list[str]:
        """Save channel orders at a fulfilment location; the ids of those Linnworks saved (an order it already
        holds by Source, SubSource and ReferenceNumber is skipped)."""
        return self.call("Orders/CreateOrders", {"orders": orders, "location": location_id}, effect=True) or []

    def set_stock_levels(self, levels: list[dict[str, Any]], change_source: str) -> list[dict[str, Any]]:
        """Set absolute stock levels (`{SKU, LocationId, Level}`); Linnworks answers each item's new level."""
        params = {"stockLevels": levels, "changeSource": change_source}
        return self.call("Stock/SetStockLevel", params, effect=True) or []

    def cancel_order(self, order_id: str, location_id: str, note: str) -> Any:
        """Cancel an open order (nothing refunded: the order system the customer paid in refunds)."""
        params = {"orderId": order_id, "fulfilmentCenter": location_id, "refund": 0, "note": note}
        return self.call("Orders/CancelOrder", params, effect=True)

    def set_customer_info(self, order_id: str, name: str, address: dict[str, Any]) -> Any:
        """Replace an open order's delivery address (`Orders/SetOrderCustomerInfo`, CustomerAddress fields)."""
        info = {"ChannelBuyerName": name, "Address": address, "BillingAddress": address}
        params = {"orderId": order_id, "info": info, "saveToCrm": False}
        return self.call("Orders/SetOrderCustomerInfo", params, effect=True)

    def orders_by_reference(self, reference: str) -> list[dict[str, Any]]:
        """Order details (at most 50) whose reference number is `reference`."""
        method = "Orders/GetOrderDetailsByReferenceId"
        return self.request("GET", f"{self.session()[1]}/api/{method}", method, params={"ReferenceId": reference}) or []

    def orders_by_id(self, order_ids: list[str]) -> list[dict[str, Any]]:
        """Order details (tracking, processed flag) of open and processed orders, by `pkOrderId`."""
        return self.call("Orders/GetOrdersById", {"pkOrderIds": order_ids}) or []


class LinnworksResource(dg.ConfigurableResource):
    """Linnworks credentials (from environment variables) and this client's share of the rate budget."""

    base_url: str = Field(description="Auth host, e.g. https://api.linnworks.net")
    application_id: str
    application_secret: str
    token: str
    budget_share: float = Field(default=0.5, description="share of each per-method limit fulfil may use")
    timeout_s: float = 30.0
    max_attempts: int = 6

    def get_client(self) -> LinnworksClient:
        """A client for one run."""
        return LinnworksClient(
            self.base_url,
            self.application_id,
            self.application_secret,
            self.token,
            self.budget_share,
            self.timeout_s,
            self.max_attempts,
        )
