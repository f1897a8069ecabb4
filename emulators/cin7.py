"""Cin7 Core (DEAR) API v2 emulator: two auth headers, Page/Limit/Total, 60 calls/min (429 or old 503)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.core import EmulatedSystem, paginate
from emulators.world import Order, World

LOCATION = "Main Warehouse"
CARRIERS = ("Whistl", "Royal Mail", "DPD")


SALE_STATUSES = (
    "DRAFT",
    "VOIDED",
    "ESTIMATING",
    "ESTIMATED",
    "ORDERING",
    "ORDERED",
    "BACKORDERED",
    "PICKING",
    "PICKED",
    "PACKING",
    "PACKED",
    "SHIPPING",
    "INVOICING",
    "INVOICED",
    "CREDITED",
    "COMPLETED",
)
SHIP_STATUSES = ("DRAFT", "PARTIALLY AUTHORISED", "AUTHORISED")


def _dear(dt: datetime | None) -> str | None:
    """Cin7's UTC timestamp `yyyy-MM-ddTHH:mm:ss.fff`."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] if dt else None


def _parse(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Cin7(EmulatedSystem):
    """Cin7 Core with the world's `cin7` sales, product availability at one location, adjustments."""

    name = "cin7"

    def __init__(
        self,
        world: World,
        n_orders: int = 300,
        account_id: str = "cin7-account",
        application_key: str = "cin7-key",
        rate_scale: float = 1.0,
    ) -> None:
        super().__init__(rate_scale, world.seed)
        self.world = world
        self.credentials = (account_id, application_key)
        self.limit = self.window(60, 60.0)
        self.sales: dict[str, Order] = {}
        self.sale_status: dict[str, str] = {}
        self.shipments: dict[str, list[dict[str, Any]]] = {}  # every ship call, as posted (for inspection)
        self.ship_state: dict[str, dict[str, Any]] = {}  # per sale: the shipment's Status and Lines
        self.adjustments: list[dict[str, Any]] = []
        self.product_ids = {p.sku: str(uuid.uuid5(uuid.NAMESPACE_URL, f"cin7/{p.sku}")) for p in world.products}
        self.available: dict[str, int] = {s: 0 for s in world.wms_catalogue}
        self.spawn(n_orders, world.start - timedelta(days=1), world.start)

    def spawn(self, n: int, start: datetime, end: datetime) -> list[str]:
        """Create `n` sales (AUTHORISED when paid, DRAFT otherwise)."""
        ids = []
        for order in self.world.make_orders(self.name, n, start, end):
            self.sales[order.uid] = order
            self.sale_status[order.uid] = "ORDERED" if order.paid else "DRAFT"
            ids.append(order.uid)
        self.placed(ids)
        return ids

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """`spawn {n}`, `void {sale_id}`, `edit_address {sale_id}`, `authorise {sale_id}` (a draft paid),
        `draft {sale_id}` (authorisation undone: the sale order back to DRAFT)."""
        now = datetime.now(UTC)
        if action == "spawn":
            return {"sale_ids": self.spawn(int(body.get("n", 10)), now - timedelta(seconds=1), now)}
        sale = self.sales[body["sale_id"]]
        if action == "void":
            self.sale_status[sale.uid], sale.updated_at = "VOIDED", now
        elif action == "edit_address":
            self.world.edit_address(sale, now)
        elif action == "authorise":
            sale.paid, sale.updated_at = True, now
            if self.sale_status[sale.uid] == "DRAFT":
                self.sale_status[sale.uid] = "ORDERED"
        elif action == "draft":
            sale.paid, sale.updated_at, self.sale_status[sale.uid] = False, now, "DRAFT"
        else:
            return super().control(action, body)
        return self.render_sale(sale)

    def timeline_orders(self) -> list[dict[str, Any]]:
        """Every sale held; `order_ref` is the sale's `SaleOrderNumber` (`SO-<n>`), what a warehouse sees."""
        return [
            {
                "oms": self.name,
                "order_id": uid,
                "order_ref": f"SO-{sale.number}",
                "placed_at": self.placed_at.get(uid),
                **self.world.order_truth(sale, "whistl", self.sale_status.get(uid) == "VOIDED"),
            }
            for uid, sale in self.sales.items()
        ]

    def inspect(self) -> dict[str, Any]:
        """Shipments per sale, statuses, adjustments, availability."""
        return {
            "shipments": self.shipments,
            "status": self.sale_status,
            "adjustments": self.adjustments[-1000:],
            "available": {k: v for k, v in self.available.items() if v},
        }

    # -- protocol -----------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Response:
        """`{"ErrorCode": n, "Exception": "msg"}` inside a list, as Cin7 often answers."""
        return JSONResponse([{"ErrorCode": status, "Exception": message}], status)

    def throttled(self, request: Request, retry_after: float) -> Response:
        """429 + Retry-After by default; the old 503 (no Retry-After) when `throttle_503` is on."""
        if self.faults.throttle_503:
            return JSONResponse([{"ErrorCode": 503, "Exception": "You reached 60 calls per minute API limit"}], 503)
        return JSONResponse(
            [{"ErrorCode": 429, "Exception": "You reached 60 calls per minute API limit"}],
            429,
            {"Retry-After": str(max(1, round(retry_after)))},
        )

    def check_rate(self, request: Request) -> Response | None:
        """60 calls per minute per application key."""
        ok, retry, _ = self.limit.take(request.headers.get("api-auth-applicationkey", ""))
        return None if ok else self.throttled(request, retry)

    def routes(self) -> list[Route]:
        """All of `/ExternalApi/v2/...`, matched case-insensitively like the real service."""
        return [
            Route("/ExternalApi/v2/{rest:path}", self.dispatch, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/externalapi/v2/{rest:path}", self.dispatch, methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    async def dispatch(self, request: Request) -> Response:
        """Check the two auth headers, then route by lower-cased path and verb."""
        creds = (request.headers.get("api-auth-accountid"), request.headers.get("api-auth-applicationkey"))
        if creds != self.credentials:
            return self.error_body(403, "Incorrect credentials!")
        if self.faults.error_in_200_next > 0:
            self.faults.error_in_200_next -= 1
            return JSONResponse([{"ErrorCode": 500, "Exception": "Object reference not set (injected)"}], 200)
        key = (request.method, request.path_params["rest"].lower().strip("/"))
        routes = {
            ("GET", "me"): self.me,
            ("GET", "salelist"): self.sale_list,
            ("GET", "sale"): self.get_sale,
            ("DELETE", "sale"): self.delete_sale,
            ("POST", "sale/fulfilment/ship"): self.ship,
            ("PUT", "sale/fulfilment/ship"): self.ship,
            ("GET", "product"): self.products,
            ("GET", "ref/productavailability"): self.availability,
            ("POST", "stockadjustment"): self.stock_adjustment,
            ("GET", "stockadjustmentlist"): self.adjustment_list,
            ("GET", "ref/carrier"): self.carriers,
        }
        handler = routes.get(key)
        if handler is None:
            if any(path == key[1] for _, path in routes):
                return self.error_body(405, "Method not allowed")
            return self.error_body(404, f"Unknown endpoint {request.path_params['rest']}")
        try:
            body = await request.json() if request.method in ("POST", "PUT") else {}
        except ValueError:
            return self.error_body(400, "Body is not valid JSON")
        q = {k.lower(): v for k, v in request.query_params.items()}
        try:
            with self.lock:
                result = handler(q, body)
        except (KeyError, ValueError, TypeError) as exc:
            return self.error_body(400, f"Validation error: {exc}")
        return result if isinstance(result, Response) else JSONResponse(result)

    def _page(self, q: dict[str, str]) -> tuple[int, int]:
        page, limit = int(q.get("page", 1)), int(q.get("limit", 100))
        if not 1 <= limit <= 1000:
            raise ValueError("Limit must be between 1 and 1000")
        if page < 1:
            raise ValueError("Page must be 1 or more")
        return page, limit

    @staticmethod
    def _required(source: dict[str, Any], *names: str) -> None:
        """Refuse a call missing a parameter Cin7 requires (400 with an ErrorCode body, via `dispatch`)."""
        missing = [n for n in names if source.get(n) in (None, "")]
        if missing:
            raise ValueError(f"{', '.join(missing)} is required")

    def me(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """Connectivity test."""
        return {"Company": "Brand Ltd", "Currency": "GBP", "TimeZone": "GMT Standard Time"}

    def render_row(self, sale: Order) -> dict[str, Any]:
        """A SaleList row."""
        status = self.sale_status[sale.uid]
        ship = self.ship_state.get(sale.uid) or {"Status": "", "Lines": []}
        shipping = (
            "VOIDED"
            if status == "VOIDED"
            else "SHIPPED"
            if ship["Status"] == "AUTHORISED"
            else ("PARTIALLY SHIPPED" if ship["Lines"] else "NOT SHIPPED")
        )
        return {
            "SaleID": sale.uid,
            "OrderNumber": f"SO-{sale.number}",
            "Status": status,
            "OrderDate": _dear(sale.created_at),
            "Customer": sale.address.name,
            "CustomerReference": str(sale.number),
            "ShipBy": _dear(sale.created_at + timedelta(days=1)),
            "Updated": _dear(sale.updated_at),
            "OrderStatus": "AUTHORISED" if sale.paid else "DRAFT",
            "CombinedPickingStatus": "NOT PICKED",
            "CombinedPackingStatus": "NOT PACKED",
            "CombinedShippingStatus": shipping,
            "FulFilmentStatus": "FULFILLED" if shipping == "SHIPPED" else "NOT FULFILLED",
            "CombinedInvoiceStatus": "INVOICED",
            "Type": "Simple Sale",
            "CombinedTrackingNumbers": ",".join(line.get("TrackingNumber") or "" for line in ship["Lines"]),
            "SourceChannel": sale.channel,
            "ExternalID": str(sale.number),
            "OrderLocationID": LOCATION,
        }

    def render_sale(self, sale: Order) -> dict[str, Any]:
        """The Sale detail shape."""
        a = sale.address
        return {
            "ID": sale.uid,
            "Customer": a.name,
            "Contact": a.name,
            "Phone": a.phone,
            "Email": a.email,
            "ShippingAddress": {
                "DisplayAddressLine1": a.address1,
                "DisplayAddressLine2": a.address2,
                "Line1": a.address1,
                "Line2": a.address2,
                "City": a.town,
                "State": a.region,
                "Postcode": a.postcode,
                "Country": a.country,
                "Company": a.company,
                "Contact": a.name,
                "ShipToOther": False,
            },
            "ShippingNotes": "",
            "Carrier": sale.shipping_method,
            "Location": LOCATION,
            "ShipBy": _dear(sale.created_at + timedelta(days=1)),
            "LastModifiedOn": _dear(sale.updated_at),
            "Status": self.sale_status[sale.uid],
            "CurrencyRate": 1,
            "SaleOrderDate": _dear(sale.created_at),
            "Order": {
                "SaleOrderNumber": f"SO-{sale.number}",
                "Status": "AUTHORISED" if sale.paid else "DRAFT",
                "Total": sale.total,
                "Lines": [
                    {
                        "ProductID": self.product_ids[li.sku],
                        "SKU": li.sku,
                        "Name": self.world.by_sku[li.sku].title,
                        "Quantity": li.quantity,
                        "Price": li.unit_price,
                        "Discount": 0,
                        "Tax": 0,
                        "TaxRule": "20% (VAT on Income)",
                        "Total": round(li.quantity * li.unit_price, 2),
                    }
                    for li in sale.lines
                ],
            },
            "Fulfilments": [
                {
                    "TaskID": sale.uid,
                    "FulfillmentNumber": 1,
                    "FulFilmentStatus": "FULFILLED" if ship["Status"] == "AUTHORISED" else "NOT FULFILLED",
                    "Ship": {"Status": ship["Status"], "Lines": ship["Lines"]},
                }
                for ship in ([self.ship_state[sale.uid]] if sale.uid in self.ship_state else [])
            ],
            "Invoices": [],
        }

    def sale_list(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """Sales, oldest update first, filtered by `UpdatedSince` / `CreatedSince` / `Status`."""
        page, limit = self._page(q)
        rows = list(self.sales.values())
        if q.get("updatedsince"):
            since = _parse(q["updatedsince"])
            rows = [s for s in rows if s.updated_at > since]
        if q.get("createdsince"):
            since = _parse(q["createdsince"])
            rows = [s for s in rows if s.created_at > since]
        if q.get("status"):
            if q["status"].upper() not in SALE_STATUSES:
                raise ValueError(f"Status {q['status']!r} is not one of {', '.join(SALE_STATUSES)}")
            rows = [s for s in rows if self.sale_status[s.uid] == q["status"].upper()]
        rows.sort(key=lambda s: (s.updated_at, s.number))
        return {"Total": len(rows), "Page": page, "SaleList": [self.render_row(s) for s in paginate(rows, page, limit)]}

    def get_sale(self, q: dict[str, str], body: Any) -> Response | dict[str, Any]:
        """One sale by `ID`."""
        self._required(q, "id")
        sale = self.sales.get(q.get("id", ""))
        return self.render_sale(sale) if sale else self.error_body(404, "Sale not found")

    def delete_sale(self, q: dict[str, str], body: Any) -> Response | dict[str, Any]:
        """`Void=true` voids; without it the sale is undone to DRAFT."""
        self._required(q, "id")
        sale = self.sales.get(q.get("id", ""))
        if sale is None:
            return self.error_body(404, "Sale not found")
        self.sale_status[sale.uid] = "VOIDED" if q.get("void", "").lower() == "true" else "DRAFT"
        sale.updated_at = datetime.now(UTC)
        return {"ID": sale.uid, "Status": self.sale_status[sale.uid]}

    def ship(self, q: dict[str, str], body: dict[str, Any]) -> Response | dict[str, Any]:
        """Authorise shipping lines with tracking (TaskID is the sale's fulfilment task)."""
        self._required(body, "TaskID", "Status", "Lines")
        if body["Status"] not in SHIP_STATUSES:
            raise ValueError(f"Status must be one of {', '.join(SHIP_STATUSES)}")
        for n, line in enumerate(body["Lines"]):
            self._required(line, "ShipmentDate", "Carrier")
            if not isinstance(line.get("IsShipped", True), bool):
                raise ValueError(f"Lines[{n}].IsShipped must be true or false")
        sale = self.sales.get(body.get("TaskID", ""))
        if sale is None:
            return self.error_body(400, "TaskID not found")
        if self.sale_status[sale.uid] == "VOIDED":
            return self.error_body(400, "Sale is VOIDED: it cannot be shipped")
        ship = self.ship_state.setdefault(sale.uid, {"Status": "NOT AVAILABLE", "Lines": []})
        if ship["Status"] == "AUTHORISED" and not body.get("AddTrackingNumbers"):
            return self.error_body(400, "Ship is already authorised; send AddTrackingNumbers to change tracking")
        lines = [{**line, "ID": str(uuid.uuid4())} for line in body.get("Lines", [])]
        # AddTrackingNumbers adds lines to the shipment; without it the posted lines are the shipment's lines.
        ship["Lines"] = ship["Lines"] + lines if body.get("AddTrackingNumbers") else lines
        if ship["Status"] != "AUTHORISED":  # tracking added to an authorised shipment leaves it authorised
            ship["Status"] = body["Status"]
        self.shipments.setdefault(sale.uid, []).append({"Status": body["Status"], "Lines": lines})
        if any(line.get("TrackingNumber") for line in lines):
            self.tracking_held(sale.uid)
        self.sale_status[sale.uid] = "SHIPPED" if ship["Status"] == "AUTHORISED" else "SHIPPING"
        sale.updated_at = datetime.now(UTC)
        return {"TaskID": sale.uid, "Status": ship["Status"], "Boxes": [], "Lines": ship["Lines"]}

    def products(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """Catalogue, paged."""
        page, limit = self._page(q)
        items = [p for p in self.world.products if not q.get("sku") or p.sku == q["sku"]]
        return {
            "Total": len(items),
            "Page": page,
            "Products": [
                {
                    "ID": self.product_ids[p.sku],
                    "SKU": p.sku,
                    "Name": p.title,
                    "Barcode": p.barcode,
                    "PriceTier1": p.price,
                    "Weight": p.weight_g / 1000,
                    "Type": "Kit" if p.is_bundle else "Stock",
                    "BillOfMaterialsProducts": [
                        {"ComponentProductID": self.product_ids[c], "ProductCode": c, "Quantity": n}
                        for c, n in p.components
                    ],
                }
                for p in paginate(items, page, limit)
            ],
        }

    def availability(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """ProductAvailability rows (one per product x location)."""
        page, limit = self._page(q)
        skus = sorted(self.available)
        if q.get("sku"):
            skus = [s for s in skus if s == q["sku"]]
        return {
            "Total": len(skus),
            "Page": page,
            "ProductAvailabilityList": [
                {
                    "ID": self.product_ids[s],
                    "SKU": s,
                    "Name": self.world.by_sku[s].title,
                    "Barcode": self.world.by_sku[s].barcode,
                    "Location": LOCATION,
                    "Bin": None,
                    "Batch": None,
                    "ExpiryDate": None,
                    "OnHand": self.available[s],
                    "Allocated": 0,
                    "Available": self.available[s],
                    "OnOrder": 0,
                    "StockOnHand": self.available[s],
                    "InTransit": 0,
                    "NextDeliveryDate": None,
                }
                for s in paginate(skus, page, limit)
            ],
        }

    def stock_adjustment(self, q: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """A stock adjustment whose line `Quantity` is the target level."""
        self._required(body, "EffectiveDate", "Status", "Lines")
        if body["Status"] not in ("DRAFT", "COMPLETED"):
            raise ValueError("Status must be DRAFT or COMPLETED")
        _parse(body["EffectiveDate"])
        existing = []
        for line in body["Lines"]:
            if not (line.get("ProductID") or line.get("SKU")):
                raise ValueError("each line needs ProductID or SKU")
            self._required(line, "Quantity")
            sku = line["SKU"]
            if sku not in self.available:
                raise ValueError(f"Product {sku} not found")
            before = self.available[sku]
            if body.get("Status", "DRAFT") == "COMPLETED":
                self.available[sku] = int(line["Quantity"])
            existing.append({"SKU": sku, "QuantityOnHand": before, "Adjustment": int(line["Quantity"]) - before})
        task = str(uuid.uuid4())
        self.adjustments.append(
            {
                "TaskID": task,
                "Status": body.get("Status", "DRAFT"),
                "Reference": body.get("Reference"),
                "Lines": body.get("Lines", []),
            }
        )
        return {"TaskID": task, "Status": body.get("Status", "DRAFT"), "ExistingStockLines": existing}

    def adjustment_list(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """Stock adjustments, paged."""
        page, limit = self._page(q)
        rows = [a for a in self.adjustments if not q.get("status") or a["Status"] == q["status"].upper()]
        return {
            "Total": len(rows),
            "Page": page,
            "StockAdjustmentList": [
                {"TaskID": a["TaskID"], "Status": a["Status"], "Reference": a["Reference"]}
                for a in paginate(rows, page, limit)
            ],
        }

    def carriers(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        """Carrier reference list."""
        return {
            "CarrierList": [{"CarrierID": str(uuid.uuid5(uuid.NAMESPACE_URL, c)), "Description": c} for c in CARRIERS]
        }
