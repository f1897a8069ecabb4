"""BigCommerce emulator: v2 orders/products/shipping addresses/shipments, v3 inventory, the 30 s store quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.core import EmulatedSystem, paginate
from emulators.world import Address, Order, World

LOCATIONS = {1: "WHISTL", 2: "STUDIO"}
PROBLEM_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"


def _problem(status: int, title: str) -> JSONResponse:
    """BigCommerce's v3 error shape (`application/problem+json`)."""
    body = {"status": status, "title": title, "type": PROBLEM_TYPE, "errors": {}}
    return JSONResponse(body, status, media_type="application/problem+json")


def _v3_paging(q: Any) -> tuple[int, int, datetime | None] | Response:
    """A v3 list's `limit` (1-250), `page` and `date_modified:min`, or the 422 for a bad one."""
    try:
        limit, page = int(q.get("limit", 50)), int(q.get("page", 1))
        since = _parse_iso8601(q["date_modified:min"]) if q.get("date_modified:min") else None
    except ValueError as exc:
        return _problem(422, f"Invalid query: {exc}")
    if not 1 <= limit <= 250 or page < 1:
        return _problem(422, "limit must be between 1 and 250 and page at least 1")
    return limit, page, since


def _v3_page(data: list[dict[str, Any]], total: int, limit: int, page: int) -> JSONResponse:
    """One page of a v3 list with its `meta.pagination`."""
    pagination = {"total": total, "count": len(data), "per_page": limit, "current_page": page}
    return JSONResponse(
        {"data": data, "meta": {"pagination": {**pagination, "total_pages": (total + limit - 1) // limit}}}
    )


def _ids(value: str | None) -> set[int] | None:
    """A comma-separated `:in` list of ids (None when absent); ValueError when one is not a number."""
    return None if not value else {int(x) for x in value.split(",") if x.strip()}


STATUS = {
    0: "Incomplete",
    1: "Pending",
    2: "Shipped",
    3: "Partially Shipped",
    4: "Refunded",
    5: "Cancelled",
    6: "Declined",
    7: "Awaiting Payment",
    8: "Awaiting Pickup",
    9: "Awaiting Shipment",
    10: "Completed",
    11: "Awaiting Fulfillment",
    12: "Manual Verification Required",
    13: "Disputed",
    14: "Partially Refunded",
}


def _rfc2822(dt: datetime | None) -> str:
    return format_datetime(dt.astimezone(UTC)) if dt else ""


def _iso8601(dt: datetime) -> str:
    """A v3 time (`2026-12-06T10:00:00+00:00`)."""
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def _parse_iso8601(value: str) -> datetime:
    """A v3 filter time: ISO 8601 (a `Z` or an offset; UTC when neither) or a Unix timestamp."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _address(a: Address) -> dict[str, str]:
    """An address in BigCommerce's v2 shape."""
    first, _, last = a.name.partition(" ")
    return {
        "first_name": first,
        "last_name": last,
        "company": a.company,
        "street_1": a.address1,
        "street_2": a.address2,
        "city": a.town,
        "state": a.region,
        "zip": a.postcode,
        "country": a.country,
        "country_iso2": a.country_code,
        "phone": a.phone,
        "email": a.email,
    }


class BigCommerce(EmulatedSystem):
    """A store `store_hash` with the world's `bigcommerce` orders and inventory at two locations."""

    name = "bigcommerce"

    def __init__(
        self,
        world: World,
        n_orders: int = 300,
        store_hash: str = "abc123",
        access_token: str = "bc-token",
        quota: int = 150,
        rate_scale: float = 1.0,
    ) -> None:
        super().__init__(rate_scale, world.seed)
        self.world = world
        self.store_hash, self.access_token, self.quota = store_hash, access_token, quota
        self.limit = self.window(quota, 30.0)
        self.orders: dict[int, Order] = {}
        self.status: dict[int, int] = {}
        self.shipped: dict[int, dict[int, int]] = {}
        self.shipments: list[dict[str, Any]] = []
        self.inventory: dict[tuple[str, int], int] = {(s, loc): 0 for s in world.wms_catalogue for loc in LOCATIONS}
        self.adjustments: list[dict[str, Any]] = []
        self.product_skus: dict[int, list[str]] = {}
        self.sku_by_variant = {v: s for s, v in world.variant_ids.items()}
        for sku in sorted({s for s, _ in self.inventory}):
            self.product_skus.setdefault(world.variant_ids[sku] // 10, []).append(sku)
        self.product_modified: dict[int, datetime] = dict.fromkeys(self.product_skus, world.start)
        self.product_of = {sku: pid for pid, skus in self.product_skus.items() for sku in skus}
        self.spawn(n_orders, world.start - timedelta(days=1), world.start)

    def spawn(self, n: int, start: datetime, end: datetime) -> list[int]:
        """Create `n` orders (Awaiting Fulfillment when paid, Awaiting Payment otherwise)."""
        ids = []
        for order in self.world.make_orders(self.name, n, start, end):
            oid = order.number
            self.orders[oid] = order
            self.status[oid] = 11 if order.paid else 7
            self.shipped[oid] = {li.line_no: 0 for li in order.lines}
            ids.append(oid)
        self.placed([str(i) for i in ids])
        return ids

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """`spawn {n}`."""
        if action == "spawn":
            now = datetime.now(UTC)
            return {"order_ids": self.spawn(int(body.get("n", 10)), now - timedelta(seconds=1), now)}
        return super().control(action, body)

    def timeline_orders(self) -> list[dict[str, Any]]:
        """Every order held; `order_ref` is `BC<id>`, the reference fulfil gives a BigCommerce order."""
        return [
            {
                "oms": self.name,
                "order_id": str(oid),
                "order_ref": f"BC{oid}",
                "placed_at": self.placed_at.get(str(oid)),
                **self.world.order_truth(order, "whistl", self.status[oid] == 5),
            }
            for oid, order in self.orders.items()
        ]

    def inspect(self) -> dict[str, Any]:
        """Shipments, statuses and inventory adjustments."""
        return {
            "shipments": self.shipments,
            "status": {str(k): v for k, v in self.status.items()},
            "adjustments": self.adjustments[-1000:],
            "inventory": {f"{sku}@{loc}": v for (sku, loc), v in self.inventory.items() if v},
        }

    # -- protocol -----------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Response:
        """The v2 error list."""
        return JSONResponse([{"status": status, "message": message}], status)

    def _headers(self, key: str) -> dict[str, str]:
        reset_ms = int(self.limit.reset_in(key) * 1000)
        left = self.limit.remaining(key)
        return {
            "X-Rate-Limit-Time-Window-Ms": str(int(self.limit.window_s * 1000)),
            "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
            "X-Rate-Limit-Requests-Quota": str(self.quota),
            "X-Rate-Limit-Requests-Left": str(left),
        }

    def throttled(self, request: Request, retry_after: float) -> Response:
        """429 with the quota headers and `X-Retry-After`."""
        headers = self._headers(self.store_hash)
        headers["X-Rate-Limit-Time-Reset-Ms"] = str(max(int(retry_after * 1000), 1))
        headers["X-Retry-After"] = str(max(1, round(retry_after)))
        return JSONResponse({"status": 429, "title": "Too many requests"}, 429, headers)

    def check_rate(self, request: Request) -> Response | None:
        """The store-wide quota per 30 s window; `bare_429_next` answers 429 without any rate-limit header
        (platform overload)."""
        if self.faults.bare_429_next > 0:
            self.faults.bare_429_next -= 1
            return JSONResponse({"status": 429, "title": "Too many requests"}, 429)
        ok, retry, _ = self.limit.take(self.store_hash)
        return None if ok else self.throttled(request, retry)

    def add_headers(self, request: Request, response: Response) -> None:
        """The `X-Rate-Limit-*` headers on every answer."""
        for k, v in self._headers(self.store_hash).items():
            response.raw_headers.append((k.lower().encode(), v.encode()))

    def routes(self) -> list[Route]:
        """The store's v2 and v3 endpoints."""
        base = "/stores/{store_hash}"
        return [
            Route(f"{base}/v2/orders", self.list_orders),
            Route(f"{base}/v2/orders/count", self.count),
            Route(f"{base}/v2/orders/{{oid:int}}", self.order, methods=["GET", "PUT"]),
            Route(f"{base}/v2/orders/{{oid:int}}/products", self.products),
            Route(f"{base}/v2/orders/{{oid:int}}/shipping_addresses", self.addresses),
            Route(f"{base}/v2/orders/{{oid:int}}/shipments", self.shipments_route, methods=["GET", "POST"]),
            Route(f"{base}/v3/inventory/items", self.inventory_items),
            Route(f"{base}/v3/catalog/products", self.catalog_products),
            Route(f"{base}/v3/inventory/adjustments/absolute", self.adjust_absolute, methods=["PUT"]),
            Route(f"{base}/v3/inventory/adjustments/relative", self.adjust_relative, methods=["POST"]),
            Route(f"{base}/v3/customers", self.customers),
            Route("/{path:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        if request.path_params.get("store_hash") != self.store_hash:
            return self.error_body(404, "The requested resource was not found.")
        if request.headers.get("x-auth-token") != self.access_token:
            return self.error_body(401, "You are not authorized to access this resource.")
        return None

    def _order(self, request: Request) -> tuple[int, Response | None]:
        """The order id of an order route, or the answer for bad auth or an unknown order."""
        oid = request.path_params["oid"]
        denied = self._auth(request)
        if denied is None and oid not in self.orders:
            denied = self.error_body(404, "The requested resource was not found.")
        return oid, denied

    def render(self, oid: int) -> dict[str, Any]:
        """The v2 order shape (sub-resources as links)."""
        o, a = self.orders[oid], self.orders[oid].address
        base = f"https://api.bigcommerce.com/stores/{self.store_hash}/v2/orders/{oid}"
        return {
            "id": oid,
            "status_id": self.status[oid],
            "status": STATUS[self.status[oid]],
            "date_created": _rfc2822(o.created_at),
            "date_modified": _rfc2822(o.updated_at),
            "date_shipped": "",
            "customer_id": 0,
            "channel_id": 1,
            "external_id": None,
            "external_order_id": "",
            "payment_status": "captured" if o.paid else "pending",
            "items_total": sum(li.quantity for li in o.lines),
            "items_shipped": sum(self.shipped[oid].values()),
            "subtotal_ex_tax": f"{o.total / 1.2:.4f}",
            "total_inc_tax": f"{o.total:.4f}",
            "currency_code": o.currency,
            "customer_message": "",
            "staff_notes": "",
            "billing_address": _address(a),
            "products": {"url": f"{base}/products", "resource": f"/orders/{oid}/products"},
            "shipping_addresses": {
                "url": f"{base}/shipping_addresses",
                "resource": f"/orders/{oid}/shipping_addresses",
            },
        }

    async def list_orders(self, request: Request) -> Response:
        """Bare array; an empty page is a 204 with no body."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = request.query_params
        limit, page = int(q.get("limit", 50)), int(q.get("page", 1))
        if not 1 <= limit <= 250:
            return self.error_body(400, "limit must be between 1 and 250")
        with self.lock:
            ids = list(self.orders)
            for key, cmp in (("min_date_modified", 1), ("max_date_modified", -1)):
                if key in q:
                    raw = q[key]
                    bound = parsedate_to_datetime(raw) if "," in raw else datetime.fromisoformat(raw)
                    bound = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
                    ids = [i for i in ids if (self.orders[i].updated_at - bound).total_seconds() * cmp >= 0]
            if "status_id" in q:
                ids = [i for i in ids if self.status[i] == int(q["status_id"])]
            field, _, direction = q.get("sort", "id:asc").partition(":")
            key = (lambda i: (self.orders[i].updated_at, i)) if field == "date_modified" else (lambda i: i)
            ids.sort(key=key, reverse=direction == "desc")
            rows = [self.render(i) for i in paginate(ids, page, limit)]
        return JSONResponse(rows) if rows else Response(status_code=204)

    async def count(self, request: Request) -> Response:
        """`{count}` of all orders."""
        if (denied := self._auth(request)) is not None:
            return denied
        return JSONResponse({"count": len(self.orders)})

    async def order(self, request: Request) -> Response:
        """GET an order; PUT `{"status_id": n}` (5 cancels)."""
        oid, denied = self._order(request)
        if denied is not None:
            return denied
        if request.method == "PUT":
            body = await request.json()
            with self.lock:
                if int(body.get("status_id", -1)) not in STATUS:
                    return self.error_body(400, "The field 'status_id' is invalid.")
                self.status[oid] = int(body["status_id"])
                self.orders[oid].updated_at = datetime.now(UTC)
        return JSONResponse(self.render(oid))

    async def products(self, request: Request) -> Response:
        """Order lines."""
        oid, denied = self._order(request)
        if denied is not None:
            return denied
        o = self.orders[oid]
        return JSONResponse(
            [
                {
                    "id": oid * 10 + li.line_no,
                    "order_id": oid,
                    "product_id": li.variant_id // 10,
                    "variant_id": li.variant_id,
                    "order_address_id": oid * 10,
                    "name": self.world.by_sku[li.sku].title,
                    "sku": li.sku,
                    "quantity": li.quantity,
                    "quantity_shipped": self.shipped[oid][li.line_no],
                    "base_price": f"{li.unit_price:.4f}",
                    "price_inc_tax": f"{li.unit_price:.4f}",
                    "total_inc_tax": f"{li.unit_price * li.quantity:.4f}",
                    "is_refunded": False,
                    "quantity_refunded": 0,
                    "product_options": [],
                    "upc": self.world.by_sku[li.sku].barcode,
                }
                for li in o.lines
            ]
        )

    async def addresses(self, request: Request) -> Response:
        """The order's ship-to address (one)."""
        oid, denied = self._order(request)
        if denied is not None:
            return denied
        o, a = self.orders[oid], self.orders[oid].address
        return JSONResponse(
            [
                {
                    "id": oid * 10,
                    **_address(a),
                    "items_total": sum(li.quantity for li in o.lines),
                    "items_shipped": sum(self.shipped[oid].values()),
                    "shipping_method": o.shipping_method,
                }
            ]
        )

    async def shipments_route(self, request: Request) -> Response:
        """List shipments, or create one (status moves 11 -> 3 -> 2)."""
        oid, denied = self._order(request)
        if denied is not None:
            return denied
        if request.method == "GET":
            return JSONResponse([s for s in self.shipments if s["order_id"] == oid] or [])
        body = await request.json()
        o = self.orders[oid]
        if body.get("order_address_id") != oid * 10 or not body.get("items"):
            return self.error_body(400, "The required field 'order_address_id' or 'items' is missing or invalid.")
        with self.lock:
            by_id = {oid * 10 + li.line_no: li for li in o.lines}
            for item in body["items"]:
                li = by_id.get(int(item["order_product_id"]))
                if li is None or self.shipped[oid][li.line_no] + int(item["quantity"]) > li.quantity:
                    return self.error_body(400, f"Item {item['order_product_id']} cannot ship that quantity.")
            for item in body["items"]:
                self.shipped[oid][by_id[int(item["order_product_id"])].line_no] += int(item["quantity"])
            done = all(self.shipped[oid][li.line_no] == li.quantity for li in o.lines)
            self.status[oid] = 2 if done else 3
            o.updated_at = datetime.now(UTC)
            shipment = {
                "id": len(self.shipments) + 1,
                "order_id": oid,
                "date_created": _rfc2822(o.updated_at),
                "tracking_number": body.get("tracking_number", ""),
                "tracking_carrier": body.get("tracking_carrier", ""),
                "shipping_provider": body.get("shipping_provider", ""),
                "order_address_id": oid * 10,
                "items": [
                    {
                        "order_product_id": int(i["order_product_id"]),
                        "product_id": by_id[int(i["order_product_id"])].variant_id // 10,
                        "quantity": int(i["quantity"]),
                    }
                    for i in body["items"]
                ],
                "generated_tracking_link": "",
            }
            self.shipments.append(shipment)
            if shipment["tracking_number"]:
                self.tracking_held(str(oid))
        return JSONResponse(shipment, 201)

    def tracked_by_product(self, sku: str) -> bool:
        """Whether a product keeps one stock figure for the whole product rather than per variant (a fixed share of
        products, as stores mix both): such stock moves by `product_id` only (held on its first SKU here), the
        rest by variant or SKU."""
        return (self.world.variant_ids[sku] // 10) % 7 == 0

    async def inventory_items(self, request: Request) -> Response:
        """v3 inventory per SKU and location with `meta.pagination` (links as query strings) and the spec's
        `sku:in`, `variant_id:in`, `product_id:in`, `location_id:in` and `location_code:in` filters."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = request.query_params
        try:
            limit, page = int(q.get("limit", 50)), int(q.get("page", 1))
            variants, products, locations = (
                _ids(q.get(k)) for k in ("variant_id:in", "product_id:in", "location_id:in")
            )
        except ValueError:
            return _problem(422, "The filter values must be comma-separated integers")
        if not 1 <= limit <= 1000 or page < 1:
            return _problem(422, "limit must be between 1 and 1000 and page at least 1")
        skus = sorted({s for s, _ in self.inventory})
        if q.get("sku:in"):
            wanted = set(q["sku:in"].split(","))
            skus = [s for s in skus if s in wanted]
        if variants is not None:
            skus = [s for s in skus if self.world.variant_ids[s] in variants]
        if products is not None:
            skus = [s for s in skus if self.world.variant_ids[s] // 10 in products]
        codes = set(q["location_code:in"].split(",")) if q.get("location_code:in") else None
        shown = {
            loc: code
            for loc, code in LOCATIONS.items()
            if (locations is None or loc in locations) and (codes is None or code in codes)
        }
        chunk = paginate(skus, page, limit)
        data = [
            {
                "identity": {
                    "sku": s,
                    "variant_id": self.world.variant_ids[s],
                    "product_id": self.world.variant_ids[s] // 10,
                    "sku_id": self.world.variant_ids[s],
                },
                "locations": [
                    {
                        "location_id": loc,
                        "location_code": code,
                        "available_to_sell": self.inventory[(s, loc)],
                        "total_inventory_onhand": self.inventory[(s, loc)],
                        "settings": {
                            "safety_stock": 0,
                            "is_in_stock": self.inventory[(s, loc)] > 0,
                            "warning_level": 0,
                            "bin_picking_number": "",
                        },
                    }
                    for loc, code in shown.items()
                ],
            }
            for s in chunk
        ]
        pages = (len(skus) + limit - 1) // limit
        links = {"current": f"?page={page}&limit={limit}"}
        if page > 1:
            links["previous"] = f"?page={page - 1}&limit={limit}"
        if page < pages:
            links["next"] = f"?page={page + 1}&limit={limit}"
        return JSONResponse(
            {
                "data": data,
                "meta": {
                    "pagination": {
                        "total": len(skus),
                        "count": len(data),
                        "per_page": limit,
                        "current_page": page,
                        "total_pages": pages,
                        "links": links,
                    }
                },
            }
        )

    def _product(self, pid: int, with_variants: bool) -> dict[str, Any]:
        """A v3 catalog product (the published Product model's common fields; `variants` when asked for)."""
        skus = self.product_skus[pid]
        first = self.world.by_sku[skus[0]]
        modified = _iso8601(self.product_modified[pid])
        product: dict[str, Any] = {
            "id": pid,
            "name": first.title,
            "type": "physical",
            "sku": skus[0],
            "price": first.price,
            "weight": round(first.weight_g / 1000, 3),
            "inventory_level": sum(self.inventory.get((sku, loc), 0) for sku in skus for loc in LOCATIONS),
            "inventory_warning_level": 0,
            "inventory_tracking": "product" if self.tracked_by_product(skus[0]) else "variant",
            "is_visible": True,
            "availability": "available",
            "date_created": _iso8601(self.world.start - timedelta(days=30)),
            "date_modified": modified,
            "base_variant_id": self.world.variant_ids[skus[0]],
        }
        if with_variants:
            product["variants"] = [
                {
                    "id": self.world.variant_ids[sku],
                    "product_id": pid,
                    "sku": sku,
                    "price": self.world.by_sku[sku].price,
                    "inventory_level": sum(self.inventory.get((sku, loc), 0) for loc in LOCATIONS),
                }
                for sku in skus
            ]
        return product

    async def catalog_products(self, request: Request) -> Response:
        """v3 catalog products (`GET /v3/catalog/products`): `date_modified:min`, `sort` (`id`, `name`, `price`,
        `date_modified`, with `direction`), `include=variants`, `include_fields` / `exclude_fields`, paged by
        `meta.pagination`; `inventory_tracking`
        says whether a product keeps one figure (`product`) or one per variant."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = request.query_params
        paging = _v3_paging(q)
        if isinstance(paging, Response):
            return paging
        limit, page, since = paging
        sort, direction = q.get("sort", "id"), q.get("direction", "asc")
        keys = {
            "id": lambda pid: pid,
            "name": lambda pid: self.world.by_sku[self.product_skus[pid][0]].title,
            "price": lambda pid: self.world.by_sku[self.product_skus[pid][0]].price,
            "date_modified": lambda pid: (self.product_modified[pid], pid),
        }
        if sort not in keys or direction not in ("asc", "desc"):
            return _problem(422, f"sort must be one of {sorted(keys)} and direction asc or desc")
        ids = [pid for pid in self.product_skus if since is None or self.product_modified[pid] >= since]
        ids.sort(key=keys[sort], reverse=direction == "desc")
        with_variants = "variants" in q.get("include", "").split(",")
        data = [self._product(pid, with_variants) for pid in paginate(ids, page, limit)]
        if q.get("include_fields"):  # the product's id and the fields named (sub-resources asked for stay)
            keep = {"id", "variants", *q["include_fields"].split(",")}
            data = [{k: v for k, v in d.items() if k in keep} for d in data]
        if q.get("exclude_fields"):
            drop = set(q["exclude_fields"].split(",")) - {"id"}
            data = [{k: v for k, v in d.items() if k not in drop} for d in data]
        return _v3_page(data, len(ids), limit, page)

    def _customers(self) -> list[dict[str, Any]]:
        """The store's customers: one per e-mail address its orders carry, numbered by first order."""
        found: dict[str, dict[str, Any]] = {}
        for oid in sorted(self.orders):
            o = self.orders[oid]
            email = o.address.email.strip().lower()
            if not email:
                continue
            first, _, last = o.address.name.partition(" ")
            known = found.setdefault(
                email,
                {
                    "id": len(found) + 1,
                    "email": email,
                    "first_name": first,
                    "last_name": last,
                    "company": o.address.company,
                    "phone": o.address.phone,
                    "customer_group_id": 0,
                    "notes": "",
                    "tax_exempt_category": "",
                    "accepts_product_review_abandoned_cart_emails": False,
                    "registration_ip_address": "",
                    "_created": o.created_at,
                    "_modified": o.updated_at,
                },
            )
            known["_modified"] = max(known["_modified"], o.updated_at)
        return list(found.values())

    async def customers(self, request: Request) -> Response:
        """v3 customers (`GET /v3/customers`): `date_modified:min`, `sort` (`date_created:asc|desc`,
        `last_name:asc|desc`, `date_modified:asc|desc`), paged by `meta.pagination`."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = request.query_params
        paging = _v3_paging(q)
        if isinstance(paging, Response):
            return paging
        limit, page, since = paging
        field, _, direction = q.get("sort", "date_created:asc").partition(":")
        keys = {"date_created": "_created", "date_modified": "_modified", "last_name": "last_name"}
        if field not in keys or direction not in ("asc", "desc"):
            return _problem(422, f"sort must be one of {sorted(keys)} with :asc or :desc")
        with self.lock:
            rows = [c for c in self._customers() if since is None or c["_modified"] >= since]
        rows.sort(key=lambda c: (c[keys[field]], c["id"]), reverse=direction == "desc")
        data = [
            {
                **{k: v for k, v in c.items() if not k.startswith("_")},
                "date_created": _iso8601(c["_created"]),
                "date_modified": _iso8601(c["_modified"]),
            }
            for c in paginate(rows, page, limit)
        ]
        return _v3_page(data, len(rows), limit, page)

    async def not_found(self, request: Request) -> Response:
        """A route the store does not have: BigCommerce's JSON error (v2's list, v3's problem), never plain text."""
        if "/v2/" in request.url.path:
            return self.error_body(404, "The requested resource was not found.")
        return _problem(404, "The requested resource was not found.")

    def _item_sku(self, item: dict[str, Any]) -> tuple[str | None, str | None]:
        """The SKU an adjustment item names by `sku`, `variant_id` or `product_id` (exactly one), or why not."""
        named = [k for k in ("sku", "variant_id", "product_id") if item.get(k) is not None]
        if len(named) != 1:
            return None, "each item names exactly one of sku, variant_id or product_id"
        by_variant = self.sku_by_variant
        key = named[0]
        try:
            if key == "sku":
                sku = str(item["sku"])
            elif key == "variant_id":
                sku = by_variant.get(int(item["variant_id"]))
            else:
                skus = self.product_skus.get(int(item["product_id"]), [])
                sku = skus[0] if skus else None
        except (TypeError, ValueError):
            return None, f"{key} must be an integer"
        if sku is None or all((sku, loc) not in self.inventory for loc in LOCATIONS):
            return None, f"Unknown {key} {item[key]}"
        # The wording of the spec's own example (inventory.v3.yml, "Item has another tracking mode error").
        if key == "product_id" and not self.tracked_by_product(sku):
            return None, f"[Item with product_id {item[key]} is tracked by variant, please update stock by variant id]"
        if key != "product_id" and self.tracked_by_product(sku):
            return None, f"[Item with {key} {item[key]} is tracked by product, please update stock by product id]"
        return sku, None

    async def _adjust(self, request: Request, relative: bool) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        items = body.get("items") or []
        if not items or len(items) > 2000:
            return _problem(422, "items must hold 1 to 2000 entries")
        with self.lock:
            keys = []
            for n, item in enumerate(items):
                sku, problem = self._item_sku(item)
                if problem is None and not isinstance(item.get("quantity"), int):
                    problem = "quantity must be an integer"
                key = (sku, int(item.get("location_id") or 0))
                if problem is None and key not in self.inventory:
                    problem = f"Unknown location {key[1]} for {sku}"
                if problem:
                    return _problem(422, problem if problem.startswith("[") else f"items.{n}: {problem}")
                keys.append((key, int(item["quantity"])))
            now = datetime.now(UTC)
            for key, quantity in keys:
                self.inventory[key] = self.inventory[key] + quantity if relative else quantity
                self.product_modified[self.product_of[key[0]]] = now  # the product's stock changed: it is modified
            self.adjustments.append({"relative": relative, "reason": body.get("reason"), "items": items})
            return JSONResponse({"transaction_id": f"tx-{len(self.adjustments)}"})

    async def adjust_absolute(self, request: Request) -> Response:
        """Set absolute levels."""
        return await self._adjust(request, relative=False)

    async def adjust_relative(self, request: Request) -> Response:
        """Apply deltas."""
        return await self._adjust(request, relative=True)
