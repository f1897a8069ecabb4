"""Cin7 Core client (shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from resources.http import SEND_RESERVE, ApiClient, AuthError, DataError, RateBudget, TransientError, shared_budget

CALLS_PER_MINUTE = 60  # per API application, shared with every other app the brand runs
MAX_PAGE = 1000
# Cin7's sale vocabulary. A sale order AUTHORISED is the paid order a warehouse may get (a draft is a quote or an
# order awaiting payment); a sale with `Status` VOIDED is cancelled; a shipment is DRAFT or AUTHORISED (complete).
AUTHORISED = "AUTHORISED"
DRAFT = "DRAFT"
VOIDED = "VOIDED"


class Cin7Client(ApiClient):
    """`api-auth-*` headers, `Page`/`Limit`/`Total` paging, this client's share of the 60 calls a minute, and
    Cin7's habit of reporting errors as `{"ErrorCode", "Exception"}` bodies, sometimes with HTTP 200."""

    system = "Cin7 Core"

    def __init__(
        self,
        base_url: str,
        account_id: str,
        application_key: str,
        budget_share: float = 0.5,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
    ) -> None:
        super().__init__(base_url.rstrip("/") + "/", timeout_s, max_attempts)
        self._headers = {"api-auth-accountid": account_id, "api-auth-applicationkey": application_key}
        self.budget_share = budget_share

    @property
    def calls_per_minute(self) -> float:
        """This client's share of the account's calls a minute."""
        return CALLS_PER_MINUTE * self.budget_share

    def budget_for(self, call: str) -> RateBudget | None:
        """One budget per account: `budget_share` of 60 calls a minute."""
        limit = max(1, int(CALLS_PER_MINUTE * self.budget_share))
        return shared_budget(self.system, self.base_url, "account", limit, 60.0, send_reserve=SEND_RESERVE)

    def auth_headers(self) -> dict[str, str]:
        """The two credential headers on every call."""
        return self._headers

    def check_body(self, call: str, response: httpx.Response) -> None:
        """An `ErrorCode` body is an error whatever the HTTP status said."""
        if not response.content or response.content[:1] not in (b"[", b"{"):
            return
        try:
            body = response.json()
        except ValueError:
            raise ValueError("body is not valid JSON") from None
        first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else body
        if isinstance(first, dict) and "ErrorCode" in first and "Exception" in first and len(first) <= 3:
            code, message = int(first.get("ErrorCode") or 0), str(first.get("Exception"))
            if code in (401, 403):
                raise AuthError(self.system, call, f"credentials rejected by {self.system}: {message}", code)
            if code >= 500 or code == 429:
                raise TransientError(
                    self.system, call, f"ErrorCode {code} in HTTP {response.status_code}: {message}", code
                )
            raise DataError(self.system, call, f"ErrorCode {code}: {message}", code)

    def get(self, path: str, for_send: bool = False, **params: Any) -> Any:
        """GET a v2 endpoint (`for_send`: read for a send, see `ApiClient.request`)."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", self.base_url + path, path, params=query, for_send=for_send)

    def pages(self, path: str, list_key: str, limit: int = MAX_PAGE, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list endpoint, until `Page * Limit >= Total`."""
        page = 1
        while True:
            body = self.get(path, Page=page, Limit=limit, **params)
            rows = body.get(list_key) or []
            if rows:
                yield rows
            if not rows or page * limit >= int(body.get("Total") or 0):
                return
            page += 1

    def sales(self, updated_since: str | None = None, limit: int = MAX_PAGE) -> Iterator[list[dict[str, Any]]]:
        """Sale list rows changed since `updated_since`, oldest change first."""
        return self.pages("saleList", "SaleList", limit, UpdatedSince=updated_since)

    def sale(self, sale_id: str, for_send: bool = False) -> dict[str, Any]:
        """One sale with address, lines and fulfilments."""
        return self.get("sale", for_send, ID=sale_id)

    def availability(self, limit: int = MAX_PAGE) -> Iterator[list[dict[str, Any]]]:
        """Product availability per product x location (x bin x batch)."""
        return self.pages("ref/productavailability", "ProductAvailabilityList", limit)

    def stock_adjustments(self, limit: int = MAX_PAGE) -> Iterator[list[dict[str, Any]]]:
        """Stock adjustment tasks with their status (the list has no modified-since filter)."""
        return self.pages("stockadjustmentList", "StockAdjustmentList", limit)

    def adjust_stock(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a stock adjustment (`Lines[].Quantity` is the level to set); returns its `TaskID`."""
        return self.request("POST", self.base_url + "stockadjustment", "stockadjustment", json=body, effect=True) or {}

    def ship(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the shipping lines of a sale's fulfilment task (`sale/fulfilment/ship`): carrier, box, tracking
        number and URL per parcel, with `Status` DRAFT, or AUTHORISED to complete the shipment."""
        path = "sale/fulfilment/ship"
        return self.request("POST", self.base_url + path, path, json=body, effect=True) or {}

    def carriers(self) -> list[dict[str, Any]]:
        """The account's carriers (what a shipment's `Carrier` must name)."""
        return list(self.get("ref/carrier").get("CarrierList") or [])


class Cin7Resource(dg.ConfigurableResource):
    """Cin7 Core credentials (from environment variables) and this client's share of the 60 calls a minute."""

    base_url: str = Field(default="https://inventory.dearsystems.com/ExternalApi/v2/")
    account_id: str
    application_key: str
    budget_share: float = Field(default=0.5, description="share of the account's 60 calls/min fulfil may use")
    timeout_s: float = 30.0
    max_attempts: int = 6

    def get_client(self) -> Cin7Client:
        """A client for one run."""
        return Cin7Client(
            self.base_url, self.account_id, self.application_key, self.budget_share, self.timeout_s, self.max_attempts
        )
