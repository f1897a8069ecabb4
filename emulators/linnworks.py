"""Linnworks v1 API emulator: auth by application, raw token header, JSON or form bodies, per-method limits."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.core import EmulatedSystem, SlidingWindow, paginate
from emulators.swagger import Swagger
from emulators.world import Address, Order, OrderLine, World

# Linnworks' own Swagger files (LinnSystems/PublicApiSpecs 1.0, saved copies): the shape of every answer and the
# check on every request body.
SPEC_FILES = ("auth", "orders", "openorders", "processedorders", "stock", "postalservices", "inventory", "locations")
SPEC = Swagger([Path(__file__).parent / "specs" / "linnworks" / f"{name}.json" for name in SPEC_FILES])
DEFAULT_LOCATION = "00000000-0000-0000-0000-000000000000"
WHISTL_LOCATION = "6f1c2a9e-3b7d-4e15-9a0c-2d8f5b4e7a31"
PEOPLEVOX_LOCATION = "b2d4e6f8-1a3c-4e5f-8a9b-0c1d2e3f4a5b"
LOCATION_NAMES = {DEFAULT_LOCATION: "Default", WHISTL_LOCATION: "Whistl", PEOPLEVOX_LOCATION: "Peoplevox"}
_UNLINKED = type("Unlinked", (), {"stock_item_id": None, "title": "", "barcode": "", "weight_g": 0})()
POSTAL_SERVICES = ("Standard Delivery", "Express Delivery", "Next Day", "Royal Mail 48", "International Tracked")


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else None


def _parse_date(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _address(d: dict[str, Any], country_code: str) -> Address:
    """An address from Linnworks' address fields (a ChannelOrder's DeliveryAddress, a CustomerAddress)."""
    fields = ("FullName", "Company", "Address1", "Address2", "Address3", "Town", "Region", "PostCode")
    name, company, a1, a2, a3, town, region, postcode = (d.get(f) or "" for f in fields)
    return Address(
        name,
        company,
        a1,
        a2,
        a3,
        town,
        region,
        postcode,
        country_code,
        d.get("PhoneNumber") or "",
        d.get("EmailAddress") or "",
    )


class Linnworks(EmulatedSystem):
    """Linnworks with the world's `linnworks` orders open, fulfilment locations (Whistl, and Peoplevox for a
    `peoplevox_share` of the orders), orders created through `Orders/CreateOrders`, postal services."""

    name = "linnworks"

    def __init__(
        self,
        world: World,
        n_orders: int = 300,
        application_id: str = "lw-app-id",
        application_secret: str = "lw-app-secret",
        install_token: str = "lw-install-token",
        rate_scale: float = 1.0,
    ) -> None:
        super().__init__(rate_scale, world.seed)
        self.world = world
        self.credentials = (application_id, application_secret, install_token)
        self.sessions: dict[str, datetime] = {}
        self.base_url = ""  # set by the runner once the port is known
        # Per-method limits (calls per minute) as each operation of the Swagger states them.
        served = [*self._handlers(), "Auth/AuthorizeByApplication"]
        self.limits = {m: self.window(SPEC.rate_limit(m) or 150, 60.0) for m in served}
        self.orders: dict[str, Order] = {}
        self.processed: dict[str, datetime] = {}
        self.cancelled: dict[str, datetime] = {}
        self.shipping_info: dict[str, list[dict[str, Any]]] = {}
        self.postal_services = {
            name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"linnworks/postal/{name}")) for name in POSTAL_SERVICES
        }
        self.stock: dict[tuple[str, str], int] = {}
        for p in world.products:
            if not p.is_bundle:
                for location in LOCATION_NAMES:
                    self.stock[(p.sku, location)] = 0
        self.stock_writes: list[dict[str, Any]] = []
        self.peoplevox_share = 0.0  # orders whose fulfilment location is the Peoplevox warehouse
        # Orders saved by `CreateOrders`: OrderId -> Source, SubSource, ReferenceNum, ExternalReferenceNum, Location.
        self.created: dict[str, dict[str, str]] = {}
        self.create_calls: list[list[str]] = []  # the ReferenceNumbers of each CreateOrders call
        self.customer_edits: list[str] = []  # the order of each SetOrderCustomerInfo applied
        self.next_number = 900_000  # NumOrderId of created orders (seeded ones count from 100,000)
        self.spawn(n_orders, world.start - timedelta(days=1), world.start)

    # -- state changes --------------------------------------------------------------------------
    def spawn(self, n: int, start: datetime, end: datetime) -> list[str]:
        """Open `n` new orders received between `start` and `end`; return their ids."""
        new = self.world.make_orders(self.name, n, start, end)
        for order in new:
            self.orders[order.uid] = order
        self.placed([o.uid for o in new])
        return [o.uid for o in new]

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """`spawn {n}`, `cancel {order_id}`, `edit_address {order_id}`, `edit_lines {order_id, change}`,
        `pay {order_id}`."""
        now = datetime.now(UTC)
        if action == "spawn":
            return {"order_ids": self.spawn(int(body.get("n", 10)), now - timedelta(seconds=1), now)}
        order = self.orders[body["order_id"]]
        if action == "cancel":
            order.status, order.updated_at = "cancelled", now
            self.cancelled[order.uid] = now
        elif action == "edit_address":
            self.world.edit_address(order, now)
        elif action == "edit_lines":
            self.world.edit_lines(order, now, body.get("change", "quantity"))
        elif action == "pay":
            order.paid, order.updated_at = True, now
        else:
            return super().control(action, body)
        return self.render_open(order)

    def expire_sessions(self) -> None:
        """Forget every session token (the next call gets 401)."""
        self.sessions.clear()

    def timeline_orders(self) -> list[dict[str, Any]]:
        """Every order held; `order_ref` is `LW<NumOrderId>`, the reference fulfil gives a Linnworks order at a
        warehouse. An order saved through `CreateOrders` also names the reference it was created under
        (`source_ref`, e.g. a storefront's order ref); the world's own orders have `source_ref` None."""
        return [
            {
                "oms": self.name,
                "order_id": uid,
                "order_ref": f"LW{order.number}",
                "placed_at": self.placed_at.get(uid),
                "source_ref": self.created[uid]["ReferenceNum"] if uid in self.created else None,
                **self.world.order_truth(order, self.target_of(order), uid in self.cancelled),
            }
            for uid, order in self.orders.items()
        ]

    def inspect(self) -> dict[str, Any]:
        """Tracking set per order, processed orders, orders created (by reference, with their lines), stock
        writes and levels."""
        return {
            "shipping_info": self.shipping_info,
            "created_orders": {
                r["ReferenceNum"]: {
                    "order_id": uid,
                    "external_reference": r["ExternalReferenceNum"],
                    "location": r["Location"],
                    "lines": [(li.sku, li.quantity) for li in self.orders[uid].lines],
                }
                for uid, r in self.created.items()
            },
            "processed": {k: _iso(v) for k, v in self.processed.items()},
            "cancelled": {k: _iso(v) for k, v in self.cancelled.items()},
            "open_orders": sum(1 for o in self.orders.values() if self._is_open(o)),
            "stock_writes": self.stock_writes[-1000:],
            "stock": {f"{sku}@{loc}": lvl for (sku, loc), lvl in self.stock.items() if lvl},
        }

    # -- rendering --------------------------------------------------------------------------------
    def location_of(self, order: Order) -> str:
        """The order's fulfilment location: as created, or Peoplevox for a fixed share of the seeded orders."""
        if order.uid in self.created:
            return self.created[order.uid]["Location"]
        return PEOPLEVOX_LOCATION if uuid.UUID(order.uid).int % 1000 < self.peoplevox_share * 1000 else WHISTL_LOCATION

    def target_of(self, order: Order) -> str:
        """The warehouse the order's fulfilment location is."""
        return "peoplevox" if self.location_of(order) == PEOPLEVOX_LOCATION else "whistl"

    def _references(self, order: Order) -> dict[str, str]:
        made = self.created.get(order.uid)
        if made is not None:
            return made
        return {
            "ReferenceNum": f"{order.channel[:3].upper()}-{order.number}",
            "ExternalReferenceNum": str(order.number),
            "Source": order.channel.upper().split()[0],
            "SubSource": order.channel,
        }

    def _product(self, sku: str) -> Any:
        """The inventory item of a SKU; an unlinked line (a SKU Linnworks does not stock) has an empty one."""
        return self.world.by_sku.get(sku) or _UNLINKED

    def _is_open(self, order: Order) -> bool:
        return order.uid not in self.processed and order.uid not in self.cancelled

    def render_open(self, order: Order) -> dict[str, Any]:
        """The OpenOrder / OrderDetails shape."""
        a = order.address
        address = {
            "EmailAddress": a.email,
            "Address1": a.address1,
            "Address2": a.address2,
            "Address3": a.address3,
            "Town": a.town,
            "Region": a.region,
            "PostCode": a.postcode,
            "Country": a.country,
            "Continent": "Europe",
            "FullName": a.name,
            "Company": a.company,
            "PhoneNumber": a.phone,
            "CountryId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"country/{a.country_code}")),
        }
        tracking = self.shipping_info.get(order.uid, [])
        postal_name = order.shipping_method
        refs = self._references(order)
        return {
            "OrderId": order.uid,
            "NumOrderId": order.number,
            "Processed": order.uid in self.processed,
            "ProcessedDateTime": _iso(self.processed.get(order.uid)),
            "PaidDateTime": _iso(order.created_at) if order.paid else None,
            "FulfilmentLocationId": self.location_of(order),
            "GeneralInfo": {
                "Status": 1 if order.paid else 0,
                "ReferenceNum": refs["ReferenceNum"],
                "SecondaryReference": None,
                "ExternalReferenceNum": refs["ExternalReferenceNum"],
                "ReceivedDate": _iso(order.created_at),
                "Source": refs["Source"],
                "SubSource": refs["SubSource"],
                "HoldOrCancel": order.uid in self.cancelled,
                "DespatchByDate": _iso(order.created_at + timedelta(days=1)),
                "Location": self.location_of(order),
                "NumItems": sum(line.quantity for line in order.lines),
                "PartShipped": order.status == "part_despatched",
                "IsParked": False,
                "LabelPrinted": False,
                "Identifiers": [],
                "StockAllocationType": "Full",
            },
            "ShippingInfo": {
                "Vendor": "Whistl",
                "PostalServiceId": self.postal_services.get(postal_name, str(uuid.UUID(int=0))),
                "PostalServiceName": postal_name,
                "TotalWeight": sum(self._product(li.sku).weight_g * li.quantity for li in order.lines) / 1000,
                "ItemWeight": 0,
                "PackageCategory": "Default",
                "PackageType": "Default",
                "PostageCost": 3.99,
                "TrackingNumber": tracking[-1]["TrackingNumber"] if tracking else "",
                "ManualAdjust": False,
            },
            "CustomerInfo": {"ChannelBuyerName": a.name, "Address": address, "BillingAddress": address},
            "TotalsInfo": {
                "Subtotal": order.total,
                "PostageCost": 3.99,
                "Tax": round(order.total / 6, 2),
                "TotalCharge": round(order.total + 3.99, 2),
                "PaymentMethod": "Default",
                "TotalDiscount": 0,
                "Currency": order.currency,
            },
            "FolderName": [],
            "Items": [
                {
                    "ItemId": self._product(li.sku).stock_item_id,
                    "ItemNumber": li.sku,
                    "SKU": li.sku,
                    "Title": self._product(li.sku).title,
                    "Quantity": li.quantity,
                    "PricePerUnit": li.unit_price,
                    "UnitCost": li.unit_price,
                    "TaxRate": 20,
                    "CostIncTax": round(li.unit_price * li.quantity, 2),
                    "ChannelSKU": li.sku,
                    "BarcodeNumber": self._product(li.sku).barcode,
                    "PartShipped": False,
                    "PartShippedQty": 0,
                    "CompositeSubItems": [],
                    "RowId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{order.uid}/{li.line_no}")),
                    "StockItemId": self._product(li.sku).stock_item_id,
                }
                for li in order.lines
            ],
            "ExtendedProperties": [],
            "Notes": [],
        }

    def render_processed(self, order: Order) -> dict[str, Any]:
        """The ProcessedOrderWeb shape (real Hungarian prefixes; the rest of the spec's fields at their empty
        value when shaped)."""
        tracking = self.shipping_info.get(order.uid, [])
        refs = self._references(order)
        a = order.address
        address = ", ".join(x for x in (a.address1, a.address2, a.address3, a.town, a.region, a.postcode) if x)
        tax = round(order.total / 6, 2)
        return {
            "pkOrderID": order.uid,
            "nOrderId": order.number,
            "dReceivedDate": _iso(order.created_at),
            "dProcessedOn": _iso(self.processed.get(order.uid)),
            "dCancelledOn": _iso(self.cancelled.get(order.uid)),
            "dPaidOn": _iso(order.created_at) if order.paid else None,
            "nStatus": 1 if order.paid else 0,
            "cCurrency": order.currency,
            "fPostageCost": 3.99,
            "PostageCostExTax": 3.33,
            "Subtotal": order.total,
            "fTax": tax,
            "TotalDiscount": 0,
            "fTotalCharge": round(order.total + 3.99, 2),
            "PostalTrackingNumber": tracking[-1]["TrackingNumber"] if tracking else "",
            "PostalServiceName": order.shipping_method,
            "PostalServiceCode": "",
            "Vendor": "Whistl",
            "ReferenceNum": refs["ReferenceNum"],
            "ExternalReference": refs["ExternalReferenceNum"],
            "Source": refs["Source"],
            "SubSource": refs["SubSource"],
            "ChannelBuyerName": a.name,
            "cFullName": a.name,
            "cEmailAddress": a.email,
            "BillingEmailAddress": a.email,
            "Company": a.company,
            "Address1": a.address1,
            "Address2": a.address2,
            "Address3": a.address3,
            "Town": a.town,
            "Region": a.region,
            "cPostCode": a.postcode,
            "cCountry": a.country,
            "cShippingAddress": address,
            "cBillingAddress": address,
            "BillingName": a.name,
            "BillingCompany": a.company,
            "BillingAddress1": a.address1,
            "BillingAddress2": a.address2,
            "BillingAddress3": a.address3,
            "BillingTown": a.town,
            "BillingRegion": a.region,
            "BillingPostCode": a.postcode,
            "BillingCountryName": a.country,
            "BillingPhoneNumber": a.phone,
            "BuyerPhoneNumber": a.phone,
            "TotalWeight": sum(self._product(li.sku).weight_g * li.quantity for li in order.lines) / 1000,
            "HoldOrCancel": order.uid in self.cancelled,
            "IsResend": False,
            "IsExchange": False,
            "FulfilmentLocationName": LOCATION_NAMES[self.location_of(order)],
        }

    # -- protocol ---------------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Response:
        """Linnworks v1 error body `{Code, Message}`."""
        return JSONResponse({"Code": "-", "Message": message}, status)

    def throttled(self, request: Request, retry_after: float) -> Response:
        """429 + Retry-After per method bucket (inferred behaviour)."""
        return JSONResponse(
            {"Code": "429", "Message": "Too many requests for this method, please retry later."},
            429,
            {"Retry-After": str(max(1, round(retry_after)))},
        )

    def check_rate(self, request: Request) -> Response | None:
        """Per-method, per-minute budget keyed by session token."""
        method = request.url.path.removeprefix("/api/")
        window: SlidingWindow | None = self.limits.get(method)
        if window is None:
            return None
        ok, retry, _ = window.take(request.headers.get("authorization", "anon"))
        return None if ok else self.throttled(request, retry)

    async def params(self, request: Request) -> dict[str, Any]:
        """Request parameters from a JSON body, a form body of JSON-encoded fields, or `request=<json>`."""
        raw = (await request.body()).decode()
        if not raw:
            return dict(request.query_params)
        ctype = request.headers.get("content-type", "")
        if "json" in ctype or raw.lstrip().startswith(("{", "[")):
            data = json.loads(raw)
            return data if isinstance(data, dict) else {"_list": data}
        out: dict[str, Any] = {}
        for key, value in parse_qsl(raw, keep_blank_values=True):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        return out

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization", "") in self.sessions

    def routes(self) -> list[Route]:
        """The v1 endpoints fulfil uses."""
        return [
            Route("/api/Auth/AuthorizeByApplication", self.auth, methods=["POST"]),
            Route("/api/{controller}/{method}", self.dispatch, methods=["GET", "POST"]),
        ]

    async def auth(self, request: Request) -> Response:
        """Issue a session token for good application credentials."""
        try:
            p = {k.lower(): v for k, v in (await self.params(request)).items()}
        except ValueError:
            return self.error_body(400, "Invalid request body")
        if (p.get("applicationid"), p.get("applicationsecret"), p.get("token")) != self.credentials:
            return self.error_body(401, "Invalid application credentials or token")
        token = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.sessions[token] = datetime.now(UTC)
        return JSONResponse(
            {
                "Id": str(uuid.uuid4()),
                "Token": token,
                "Server": self.base_url,
                "TTL": 1800,
                "Locality": "EU",
                "UserId": "7d3d2c1e-0000-4000-8000-000000000001",
                "Email": "ops@brand.example",
                "UserName": "ops",
                "Status": {"Status": "OK"},
            }
        )

    async def dispatch(self, request: Request) -> Response:
        """Route `/api/{Controller}/{Method}` after checking the token."""
        if not self._authorised(request):
            return self.error_body(401, "Token is wrong.")
        name = f"{request.path_params['controller']}/{request.path_params['method']}"
        handler = self._handlers().get(name)
        if handler is None:
            return self.error_body(404, f"No method {name}")
        try:
            params = await self.params(request)
        except ValueError:
            return self.error_body(400, "Request body is not valid JSON or form data")
        problem = SPEC.request_problem(name, params)
        if problem:
            return self.error_body(400, f"Invalid request: {problem}")
        if isinstance(params.get("request"), dict):
            params = {**params, **params["request"]}
        try:
            with self.lock:
                result = handler(params)
        except (KeyError, TypeError, ValueError) as exc:
            return self.error_body(400, f"Invalid parameters: {exc}")
        return result if isinstance(result, Response) else JSONResponse(SPEC.shape(name, result))

    def _handlers(self) -> dict[str, Any]:
        return {
            "Orders/GetOpenOrders": self.get_open_orders,
            "OpenOrders/GetOpenOrders": self.get_open_orders,
            "OpenOrders/GetOpenOrdersDetails": self.get_details,
            "Orders/GetOrdersById": self.get_by_id,
            "ProcessedOrders/SearchProcessedOrders": self.search_processed,
            "Stock/GetStockItemsFull": self.stock_items,
            "Stock/SetStockLevel": self.set_stock,
            "Stock/UpdateStockLevelsBySKU": self.change_stock,
            "Orders/SetOrderShippingInfo": self.set_shipping_info,
            "Orders/ProcessOrder": self.process_order,
            "Orders/CancelOrder": self.cancel_order,
            "Orders/SetOrderCustomerInfo": self.set_customer_info,
            "Orders/CreateOrders": self.create_orders,
            "Orders/GetOrderDetailsByReferenceId": self.by_reference,
            "PostalServices/GetPostalServices": self.get_postal_services,
            "Inventory/GetStockLocations": self.get_stock_locations,
            "Locations/GetLocation": self.get_location,
        }

    def _stock_location(self, location: str) -> dict[str, Any]:
        """One stock location as `Inventory/GetStockLocations` and `Locations/GetLocation` describe it."""
        return {
            "StockLocationId": location,
            "StockLocationIntId": list(LOCATION_NAMES).index(location) + 1,
            "LocationName": LOCATION_NAMES[location],
            "IsFulfillmentCenter": location != DEFAULT_LOCATION,  # the 3PLs' locations
            "IsWarehouseManaged": False,
            "IsNotTrackable": False,
            "CountInOrderUntilAcknowledgement": location != DEFAULT_LOCATION,
            "FulfilmentCenterDeductStockWhenProcessed": location != DEFAULT_LOCATION,
            "LocationTag": "",
            "Country": "United Kingdom",
        }

    def get_stock_locations(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Every stock location of the account (`GET Inventory/GetStockLocations`)."""
        return [self._stock_location(location) for location in LOCATION_NAMES]

    def get_location(self, p: dict[str, Any]) -> dict[str, Any]:
        """One location by `pkStockLocationId` (`GET Locations/GetLocation`); an unknown id is a 400."""
        location = str(p.get("pkStockLocationId") or "")
        if location not in LOCATION_NAMES:
            raise ValueError(f"Location {location!r} does not exist")
        return self._stock_location(location)

    def get_open_orders(self, p: dict[str, Any]) -> dict[str, Any]:
        """Paged open orders, oldest received first, with optional received-date range filter."""
        per_page = int(p.get("entriesPerPage") or p.get("EntriesPerPage") or 100)
        page = int(p.get("pageNumber") or p.get("PageNumber") or 1)
        if not 1 <= per_page <= 200:
            raise ValueError("entriesPerPage must be between 1 and 200")
        orders = [o for o in self.orders.values() if self._is_open(o)]
        for f in (p.get("filters") or {}).get("DateFields") or []:
            if f.get("FieldCode") == "GENERAL_INFO_DATE" and f.get("Type", "Range") == "Range":
                lo = _parse_date(f["DateFrom"]) if f.get("DateFrom") else None
                hi = _parse_date(f["DateTo"]) if f.get("DateTo") else None
                orders = [
                    o for o in orders if (lo is None or o.created_at >= lo) and (hi is None or o.created_at <= hi)
                ]
        orders.sort(key=lambda o: (o.created_at, o.number))
        total = len(orders)
        return {
            "PageNumber": page,
            "EntriesPerPage": per_page,
            "TotalEntries": total,
            "TotalPages": (total + per_page - 1) // per_page,
            "Data": [self.render_open(o) for o in paginate(orders, page, per_page)],
        }

    def get_details(self, p: dict[str, Any]) -> dict[str, Any]:
        """OrderDetails for the given ids."""
        return {"Orders": [self.render_open(self.orders[i]) for i in p.get("OrderIds", []) if i in self.orders]}

    def get_by_id(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """OrderDetails by `pkOrderIds`."""
        return [self.render_open(self.orders[i]) for i in p.get("pkOrderIds", []) if i in self.orders]

    def search_processed(self, p: dict[str, Any]) -> dict[str, Any]:
        """Processed (and cancelled) orders in a date window, paged."""
        field = (p.get("DateField") or "processed").lower()
        lo = _parse_date(p["FromDate"]) if p.get("FromDate") else None
        hi = _parse_date(p["ToDate"]) if p.get("ToDate") else None
        rows = []
        for uid in set(self.processed) | set(self.cancelled):
            order = self.orders[uid]
            when = {
                "processed": self.processed.get(uid),
                "cancelled": self.cancelled.get(uid),
                "received": order.created_at,
                "payment": order.created_at,
            }.get(field)
            if when is None or (lo and when < lo) or (hi and when > hi):
                continue
            rows.append((when, order))
        rows.sort(key=lambda r: (r[0], r[1].number))
        per_page, page = int(p.get("ResultsPerPage") or 200), int(p.get("PageNumber") or 1)
        total = len(rows)
        return {
            "ProcessedOrders": {
                "PageNumber": page,
                "EntriesPerPage": per_page,
                "TotalEntries": total,
                "TotalPages": (total + per_page - 1) // per_page,
                "Data": [self.render_processed(o) for _, o in paginate(rows, page, per_page)],
            }
        }

    def stock_items(self, p: dict[str, Any]) -> Response | list[dict[str, Any]]:
        """Bare list of StockItemFull; no totals; 400 past the last page (clients stop on a short page)."""
        per_page, page = int(p.get("entriesPerPage") or 100), int(p.get("pageNumber") or 1)
        keyword = (p.get("keyword") or "").lower()
        items = [x for x in self.world.products if not x.is_bundle and keyword in x.sku.lower()]
        chunk = paginate(items, page, per_page)
        if not chunk and page > 1:
            return self.error_body(400, "Page number is out of range")
        with_levels = "StockLevels" in (p.get("dataRequirements") or ["StockLevels"])
        return [
            {
                "ItemNumber": x.sku,
                "ItemTitle": x.title,
                "BarcodeNumber": x.barcode,
                "PurchasePrice": round(x.price * 0.4, 2),
                "RetailPrice": x.price,
                "TaxRate": 20,
                "Weight": x.weight_g / 1000,
                "CreationDate": _iso(self.world.start - timedelta(days=365)),
                "InventoryTrackingType": 0,
                "StockItemId": x.stock_item_id,
                "StockLevels": [self._level(x.sku, loc) for loc in LOCATION_NAMES] if with_levels else [],
            }
            for x in chunk
        ]

    def _level(self, sku: str, location: str) -> dict[str, Any]:
        level = self.stock.get((sku, location), 0)
        return {
            "Location": {
                "StockLocationId": location,
                "LocationName": LOCATION_NAMES.get(location, "Default"),
                "BinRack": "",
            },
            "StockLevel": level,
            "Available": level,
            "InOrderBook": 0,
            "Due": 0,
            "MinimumLevel": 0,
            "SKU": sku,
            "LastUpdateDate": _iso(datetime.now(UTC)),
            "StockItemId": self.world.by_sku[sku].stock_item_id if sku in self.world.by_sku else None,
        }

    def _write_stock(self, p: dict[str, Any], delta: bool) -> list[dict[str, Any]]:
        out = []
        for row in p.get("stockLevels") or []:
            sku, loc, level = row["SKU"], row.get("LocationId") or DEFAULT_LOCATION, int(row["Level"])
            if (sku, loc) not in self.stock:
                raise ValueError(f"SKU {sku} at location {loc} not found")
            self.stock[(sku, loc)] = self.stock[(sku, loc)] + level if delta else level
            self.stock_writes.append(
                {"sku": sku, "location": loc, "level": level, "delta": delta, "source": p.get("changeSource")}
            )
            out.append(self._level(sku, loc))
        return out

    def set_stock(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Absolute stock levels."""
        return self._write_stock(p, delta=False)

    def change_stock(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Stock level deltas."""
        return self._write_stock(p, delta=True)

    def set_shipping_info(self, p: dict[str, Any]) -> Response | dict[str, Any]:
        """Record tracking on an order."""
        order = self.orders.get(p.get("orderId", ""))
        if order is None:
            return self.error_body(400, "Order not found")
        info = p.get("info") or {}
        self.shipping_info.setdefault(order.uid, []).append(info)
        if isinstance(info, dict) and info.get("TrackingNumber"):
            self.tracking_held(order.uid)
        rendered = self.render_open(order)
        return {"TotalsInfo": rendered["TotalsInfo"], "ShippingInfo": rendered["ShippingInfo"]}

    def process_order(self, p: dict[str, Any]) -> dict[str, Any]:
        """Mark an open order processed (despatched)."""
        uid = p.get("orderId", "")
        order = self.orders.get(uid)
        if order is None:
            return {"OrderId": uid, "Processed": False, "Error": "Order not found"}
        if not self._is_open(order):
            return {"OrderId": uid, "Processed": False, "Error": "Order is already processed or cancelled"}
        self.processed[uid] = datetime.now(UTC)
        order.status, order.updated_at = "despatched", self.processed[uid]
        return {"OrderId": uid, "Processed": True, "Error": None}

    def create_orders(self, p: dict[str, Any]) -> list[str]:
        """Save channel orders; return the ids of those saved. An order whose Source, SubSource and
        ReferenceNumber Linnworks already holds is skipped, not saved twice (the Swagger: "once an order is paid
        it will be skipped on save"). Lines link to stock items by SKU; a SKU Linnworks does not stock stays
        unlinked on the order."""
        location = p.get("location") or DEFAULT_LOCATION
        if location not in LOCATION_NAMES:
            raise ValueError(f"location {location} not found")
        held = {(r["Source"], r["SubSource"], r["ReferenceNum"]): uid for uid, r in self.created.items()}
        saved: list[str] = []
        self.create_calls.append([o.get("ReferenceNumber") or "" for o in p.get("orders") or []])
        now = datetime.now(UTC)
        for o in p.get("orders") or []:
            ref, source = o.get("ReferenceNumber") or "", o.get("Source") or ""
            if not ref or not source:
                raise ValueError("every order needs ReferenceNumber and Source")
            if (source, o.get("SubSource") or "", ref) in held:
                continue
            d = o.get("DeliveryAddress") or {}
            address = _address(d, d.get("MatchCountryCode") or d.get("Country") or "")
            lines = [
                OrderLine(
                    n,
                    item.get("ChannelSKU") or "",
                    int(item.get("Qty") or 0),
                    float(item.get("PricePerUnit") or 0),
                    self.world.variant_ids.get(item.get("ChannelSKU") or "", 0),
                )
                for n, item in enumerate(o.get("OrderItems") or [], start=1)
            ]
            uid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            self.next_number += 1
            self.orders[uid] = Order(
                number=self.next_number,
                uid=uid,
                channel=o.get("SubSource") or source,
                created_at=_parse_date(o["ReceivedDate"]) if o.get("ReceivedDate") else now,
                updated_at=now,
                paid=o.get("PaymentStatus") == "Paid",
                address=address,
                shipping_method=o.get("PostalServiceName") or "",
                currency=o.get("Currency") or "GBP",
                lines=lines,
            )
            self.created[uid] = {
                "Source": source,
                "SubSource": o.get("SubSource") or "",
                "ReferenceNum": ref,
                "ExternalReferenceNum": o.get("ExternalReference") or "",
                "Location": location,
            }
            held[(source, o.get("SubSource") or "", ref)] = uid
            saved.append(uid)
        self.placed(saved)
        return saved

    def by_reference(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """OrderDetails of the orders (at most 50) whose reference or external reference is `ReferenceId`."""
        ref = p.get("ReferenceId") or ""
        found = [
            o
            for o in self.orders.values()
            if ref and ref in (self._references(o)["ReferenceNum"], self._references(o)["ExternalReferenceNum"])
        ]
        return [self.render_open(o) for o in found[:50]]

    def set_customer_info(self, p: dict[str, Any]) -> dict[str, Any]:
        """Replace an open order's delivery address; a processed or cancelled order cannot be changed."""
        order = self.orders.get(p.get("orderId", ""))
        if order is None:
            raise ValueError("Order not found")
        if order.uid in self.processed or order.uid in self.cancelled:
            raise ValueError("Order is processed or cancelled and cannot be changed")
        d = (p.get("info") or {}).get("Address") or {}
        country = d.get("Country") or ""
        order.address = _address(d, country if len(country) == 2 else order.address.country_code)
        order.updated_at = datetime.now(UTC)
        self.customer_edits.append(order.uid)
        return self.render_open(order)["TotalsInfo"]

    def cancel_order(self, p: dict[str, Any]) -> str:
        """Cancel an open order (a processed one has left the warehouse: refused)."""
        order = self.orders.get(p.get("orderId", ""))
        if order is None:
            raise ValueError("Order not found")
        if order.uid in self.processed:
            raise ValueError("Order is processed and cannot be cancelled")
        self.cancelled[order.uid] = datetime.now(UTC)
        order.status = "cancelled"
        return "Order cancelled"

    def get_postal_services(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """The account's postal services."""
        return [
            {
                "pkPostalServiceId": sid,
                "PostalServiceName": name,
                "PostalServiceCode": name.upper().replace(" ", "_"),
                "Vendor": "Whistl",
                "ServiceCountry": "GB",
                "TrackingNumberRequired": True,
                "Channels": [],
                "ShippingServices": [],
            }
            for name, sid in self.postal_services.items()
        ]
