"""Shopify Admin API emulator: REST with Link cursors and the 40/2s leaky bucket, inventory, fulfilment, GraphQL."""

from __future__ import annotations

import base64
import json
import operator
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.core import EmulatedSystem, LeakyBucket
from emulators.world import Order, World

LOCATIONS = {71_000_001: "Whistl Fulfilment", 71_000_002: "Brand Studio Shop"}
PAGE_FILTERS = {
    "status",
    "updated_at_min",
    "updated_at_max",
    "created_at_min",
    "created_at_max",
    "order",
    "since_id",
    "financial_status",
    "fulfillment_status",
    "ids",
}
THROTTLE_TEXT = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
# Stable versions Shopify serves (a release a quarter, each for twelve months) and `unstable`. A well-formed older
# release falls forward to the oldest supported one, as Shopify does; anything else is Not Found.
SUPPORTED_VERSIONS = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10", "unstable")
RELEASE = re.compile(r"20\d\d-(01|04|07|10)")
# GraphQL Admin calculated-cost limits for a Standard plan (shopify.dev, "GraphQL Admin API rate limits": 100
# points/second); the bucket size is inferred (twenty seconds of restore, as the published plans had).
GRAPHQL_RESTORE_PER_S = 100.0
GRAPHQL_BUCKET = 2000.0
FINANCIAL = {"paid": {"paid"}, "pending": {"pending"}, "unpaid": {"pending"}, "any": {"paid", "pending"}}
FULFILLMENT = {
    "shipped": {"fulfilled"},
    "partial": {"partial"},
    "unshipped": {None},
    "unfulfilled": {None, "partial"},
    "any": {None, "partial", "fulfilled"},
}


def served_version(requested: str) -> str | None:
    """The version Shopify answers a request for `requested` with (None: it does not exist)."""
    if requested in SUPPORTED_VERSIONS:
        return requested
    if RELEASE.fullmatch(requested) and requested < SUPPORTED_VERSIONS[0]:
        return SUPPORTED_VERSIONS[0]
    return None


def _ts(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if dt else None


def _encode_cursor(filters: dict[str, Any], offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"f": filters, "o": offset}).encode()).decode()


# The scopes the emulated app's token was granted: what fulfil reads and writes.
ACCESS_SCOPES = (
    "read_orders",
    "write_orders",
    "read_fulfillments",
    "write_fulfillments",
    "read_merchant_managed_fulfillment_orders",
    "write_merchant_managed_fulfillment_orders",
    "read_inventory",
    "write_inventory",
    "read_locations",
    "read_products",
)


def _decode_cursor(page_info: str) -> tuple[dict[str, Any], int] | None:
    """The filters and offset a `page_info` carries; None when it is not one of ours."""
    try:
        cursor = json.loads(base64.urlsafe_b64decode(page_info.encode()))
        return cursor["f"], int(cursor["o"])
    except (ValueError, KeyError, TypeError):
        return None


def _path_version(request: Request) -> str:
    """The `{version}` of `/admin/api/{version}/...` (path params are not set before routing)."""
    parts = request.url.path.split("/")
    return parts[3] if len(parts) > 3 and parts[1:3] == ["admin", "api"] else ""


def _parse(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Shopify(EmulatedSystem):
    """A Shopify store with the world's `shopify` orders, two locations and inventory levels."""

    name = "shopify"

    def __init__(
        self, world: World, n_orders: int = 300, access_token: str = "shpat_emulator", rate_scale: float = 1.0
    ) -> None:
        super().__init__(rate_scale, world.seed)
        self.world = world
        self.access_token = access_token
        self.bucket = LeakyBucket(40, 2 * (rate_scale or 1e9))
        self.gql_bucket = LeakyBucket(GRAPHQL_BUCKET, GRAPHQL_RESTORE_PER_S * (rate_scale or 1e9))
        self.orders: dict[int, Order] = {}
        self.events: list[dict[str, Any]] = []  # `events.json`: what happened to the store's resources (deletions)
        self.cancelled: dict[int, datetime] = {}
        self.fulfillable: dict[int, dict[int, int]] = {}  # order id -> line item id -> qty left
        self.fulfillments: list[dict[str, Any]] = []
        self.levels: dict[tuple[int, int], int] = {}
        self.level_writes: list[dict[str, Any]] = []
        self.inventory_items = {world.variant_ids[p.sku] + 10**9: p.sku for p in world.products if not p.is_bundle}
        for item in self.inventory_items:
            for loc in LOCATIONS:
                self.levels[(item, loc)] = 0
        self.base_url = ""
        self.spawn(n_orders, world.start - timedelta(days=1), world.start)

    def spawn(self, n: int, start: datetime, end: datetime) -> list[int]:
        """Create `n` orders (ids in the 5.9e12 range like real ones)."""
        ids = []
        for order in self.world.make_orders(self.name, n, start, end):
            oid = 5_900_000_000_000 + order.number
            self.orders[oid] = order
            self.fulfillable[oid] = {oid * 10 + li.line_no: li.quantity for li in order.lines}
            ids.append(oid)
        self.placed([str(i) for i in ids])
        return ids

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """`spawn {n}`, `edit_address {order_id}`, `destroy {order_id}` (the merchant deletes an order: it
        leaves `orders.json` and an `Order` `destroy` event is recorded)."""
        now = datetime.now(UTC)
        if action == "spawn":
            return {"order_ids": self.spawn(int(body.get("n", 10)), now - timedelta(seconds=1), now)}
        if action == "destroy":
            oid = int(body["order_id"])
            order = self.orders.pop(oid)
            event = {
                "id": 1_000_000 + len(self.events) + 1,
                "subject_id": oid,
                "created_at": now.isoformat(timespec="seconds"),
                "subject_type": "Order",
                "verb": "destroy",
                "arguments": [f"#{order.number}"],
                "body": None,
                "message": f"Order #{order.number} was deleted.",
                "author": "Shopify",
                "description": f"Order #{order.number} was deleted.",
                "path": f"/admin/orders/{oid}",
            }
            self.events.append(event)
            return event
        if action == "edit_address":
            oid = int(body["order_id"])
            self.world.edit_address(self.orders[oid], now)
            return self.render(oid)
        return super().control(action, body)

    def timeline_orders(self) -> list[dict[str, Any]]:
        """Every order held; `order_ref` is `SH<order_number>`, the reference fulfil gives a Shopify order."""
        rows = []
        for oid, order in self.orders.items():
            uid = str(oid)
            truth = self.world.order_truth(order, "linnworks", oid in self.cancelled)
            rows.append({"oms": self.name, "order_id": uid, "order_ref": f"SH{order.number}", **truth})
            rows[-1]["placed_at"] = self.placed_at.get(uid)
        return rows

    def inspect(self) -> dict[str, Any]:
        """Fulfilments created, level writes, cancellations."""
        return {
            "fulfillments": self.fulfillments,
            "level_writes": self.level_writes[-1000:],
            "cancelled": [str(k) for k in self.cancelled],
            "levels": {f"{i}@{loc}": v for (i, loc), v in self.levels.items() if v},
        }

    # -- protocol -----------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Response:
        """`{"errors": "..."}`."""
        return JSONResponse({"errors": message}, status)

    def throttled(self, request: Request, retry_after: float) -> Response:
        """429 with `Retry-After: 2.0` and the full bucket in `X-Shopify-Shop-Api-Call-Limit`."""
        limit = f"{int(self.bucket.capacity)}/{int(self.bucket.capacity)}"
        version = served_version(_path_version(request)) or ""
        headers = {"Retry-After": "2.0", "X-Shopify-Shop-Api-Call-Limit": limit, "X-Shopify-API-Version": version}
        return JSONResponse({"errors": THROTTLE_TEXT}, 429, headers)

    def check_rate(self, request: Request) -> Response | None:
        """The REST leaky bucket (GraphQL has its own cost bucket)."""
        if request.url.path.endswith("/graphql.json"):
            return None
        ok, _ = self.bucket.take(1)
        return None if ok else self.throttled(request, 2.0)

    def add_headers(self, request: Request, response: Response) -> None:
        """`X-Shopify-Shop-Api-Call-Limit: used/40` on every REST answer, and the version that served it."""
        response.raw_headers.append(
            (b"x-shopify-shop-api-call-limit", f"{round(self.bucket.level)}/{int(self.bucket.capacity)}".encode())
        )
        version = served_version(_path_version(request))
        if version:
            response.raw_headers.append((b"x-shopify-api-version", version.encode()))

    def _versioned(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Refuse a version Shopify does not have (404), as it does, before anything else."""

        async def endpoint(request: Request) -> Response:
            if served_version(request.path_params["version"]) is None:
                return JSONResponse({"errors": "Not Found"}, 404)
            return await handler(request)

        return endpoint

    def routes(self) -> list[Route]:
        """REST resources and GraphQL under `/admin/api/{version}/`."""
        base = "/admin/api/{version}"
        routes = [
            ("/orders.json", self.list_orders, ["GET"]),
            ("/orders/count.json", self.count_orders, ["GET"]),
            ("/orders/{oid:int}.json", self.get_order, ["GET"]),
            ("/orders/{oid:int}/cancel.json", self.cancel, ["POST"]),
            ("/orders/{oid:int}/fulfillment_orders.json", self.fulfillment_orders, ["GET"]),
            ("/orders/{oid:int}/fulfillments.json", self.order_fulfillments, ["GET"]),
            ("/fulfillments.json", self.create_fulfillment, ["POST"]),
            ("/locations.json", self.locations, ["GET"]),
            ("/products.json", self.products, ["GET"]),
            ("/inventory_levels.json", self.inventory_levels, ["GET"]),
            ("/inventory_levels/set.json", self.set_level, ["POST"]),
            ("/inventory_levels/adjust.json", self.adjust_level, ["POST"]),
            ("/graphql.json", self.graphql, ["POST"]),
            ("/shop.json", self.shop, ["GET"]),
            ("/events.json", self.list_events, ["GET"]),
        ]
        versioned = [Route(base + path, self._versioned(handler), methods=methods) for path, handler, methods in routes]
        return [*versioned, Route("/admin/oauth/access_scopes.json", self.access_scopes, methods=["GET"])]

    async def shop(self, request: Request) -> Response:
        """The shop (`GET shop.json`, https://shopify.dev/docs/api/admin-rest/latest/resources/shop): what a client
        checks before anything else."""
        if (denied := self._auth(request)) is not None:
            return denied
        shop = {
            "id": 548380009,
            "name": "Brand Emulated",
            "email": "ops@brand.example",
            "domain": "brand.example",
            "myshopify_domain": "brand.myshopify.com",
            "country_code": "GB",
            "country_name": "United Kingdom",
            "currency": "GBP",
            "enabled_presentment_currencies": ["GBP"],
            "iana_timezone": "Europe/London",
            "timezone": "(GMT+00:00) Europe/London",
            "plan_name": "shopify_plus",
            "plan_display_name": "Shopify Plus",
            "weight_unit": "kg",
            "created_at": "2020-01-01T09:00:00+00:00",
            "multi_location_enabled": True,
        }
        return JSONResponse({"shop": shop})

    async def access_scopes(self, request: Request) -> Response:
        """The token's scopes (`GET /admin/oauth/access_scopes.json`, unversioned,
        https://shopify.dev/docs/api/admin-rest/latest/resources/accessscope)."""
        if (denied := self._auth(request)) is not None:
            return denied
        return JSONResponse({"access_scopes": [{"handle": h} for h in ACCESS_SCOPES]})

    async def list_events(self, request: Request) -> Response:
        """Events (`GET events.json`, https://shopify.dev/docs/api/admin-rest/latest/resources/event): `filter`
        (subject types, comma-separated), `verb`, `since_id`, `created_at_min`, `limit` (at most 250)."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = request.query_params
        try:
            limit, since_id = int(q.get("limit", 50)), int(q.get("since_id", 0))
        except ValueError:
            return self.error_body(400, "limit and since_id must be integers")
        if not 1 <= limit <= 250:
            return self.error_body(400, "limit must be between 1 and 250")
        kinds = {k.strip() for k in q["filter"].split(",")} if q.get("filter") else None
        rows = [
            e
            for e in self.events
            if (kinds is None or e["subject_type"] in kinds)
            and (not q.get("verb") or e["verb"] == q["verb"])
            and e["id"] > since_id
            and (not q.get("created_at_min") or e["created_at"] >= q["created_at_min"])
        ]
        return JSONResponse({"events": rows[:limit]})

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("x-shopify-access-token") != self.access_token:
            return self.error_body(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
        return None

    def render(self, oid: int) -> dict[str, Any]:
        """The REST order shape."""
        o = self.orders[oid]
        a = o.address
        first, _, last = a.name.partition(" ")
        left = self.fulfillable[oid]
        shipped_all = all(q == 0 for q in left.values())
        shipped_any = any(q < li.quantity for li, q in zip(o.lines, left.values(), strict=True))
        return {
            "id": oid,
            "name": f"#{o.number}",
            "order_number": o.number,
            "email": a.email,
            "created_at": _ts(o.created_at),
            "updated_at": _ts(o.updated_at),
            "cancelled_at": _ts(self.cancelled.get(oid)),
            "financial_status": "paid" if o.paid else "pending",
            "fulfillment_status": "fulfilled" if shipped_all else ("partial" if shipped_any else None),
            "currency": o.currency,
            "total_price": f"{o.total:.2f}",
            "line_items": [
                {
                    "id": oid * 10 + li.line_no,
                    "variant_id": li.variant_id,
                    "product_id": li.variant_id // 10,
                    "sku": li.sku,
                    "title": self.world.by_sku[li.sku].title,
                    "quantity": li.quantity,
                    "fulfillable_quantity": left[oid * 10 + li.line_no],
                    "fulfillment_status": None,
                    "price": f"{li.unit_price:.2f}",
                    "requires_shipping": True,
                }
                for li in o.lines
            ],
            "shipping_address": {
                "first_name": first,
                "last_name": last,
                "name": a.name,
                "company": a.company or None,
                "address1": a.address1,
                "address2": a.address2,
                "city": a.town,
                "province": a.region,
                "province_code": None,
                "zip": a.postcode,
                "country": a.country,
                "country_code": a.country_code,
                "phone": a.phone or None,
            },
            "shipping_lines": [
                {
                    "id": oid + 7,
                    "title": o.shipping_method,
                    "code": o.shipping_method,
                    "source": "shopify",
                    "price": "3.99",
                    "carrier_identifier": None,
                }
            ],
            "fulfillments": [f for f in self.fulfillments if f["order_id"] == oid],
        }

    async def list_orders(self, request: Request) -> Response:
        """Orders by `updated_at`, paged with `Link` headers; filters are refused alongside `page_info`."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = dict(request.query_params)
        limit = int(q.get("limit", 50))
        if not 1 <= limit <= 250:
            return JSONResponse({"errors": {"limit": ["must be between 1 and 250"]}}, 400)
        if "page_info" in q:
            bad = sorted(set(q) & PAGE_FILTERS)
            if bad:
                return self.error_body(400, f"{bad[0]} cannot be passed when page_info is present")
            cursor = _decode_cursor(q["page_info"])
            if cursor is None:
                return self.error_body(400, "Invalid page_info")
            filters, offset = cursor
        else:
            filters, offset = {k: v for k, v in q.items() if k in PAGE_FILTERS}, 0
        with self.lock:
            ids = self._filtered(filters)
            if isinstance(ids, Response):
                return ids
            if "since_id" in filters:  # Shopify pages by id from since_id, ascending
                ids.sort()
            else:
                field = "created_at" if filters.get("order", "").startswith("created_at") else "updated_at"
                ids.sort(
                    key=lambda i: (getattr(self.orders[i], field), i),
                    reverse=filters.get("order", "updated_at asc").endswith("desc"),
                )
            page = [self.render(i) for i in ids[offset : offset + limit]]
        return JSONResponse({"orders": page}, headers=self._links(request, filters, offset, limit, len(ids)))

    def _filtered(self, filters: dict[str, Any]) -> list[int] | Response:
        """Order ids matching `orders.json` filters: status, ids, since_id, financial and fulfillment status,
        created/updated bounds (a value Shopify does not know is refused)."""
        ids = list(self.orders)
        status = filters.get("status", "open")
        if status not in ("open", "closed", "cancelled", "any"):
            return JSONResponse({"errors": {"status": ["is not included in the list"]}}, 422)
        if status != "any":
            done = {i for i in ids if not any(self.fulfillable[i].values())}
            keep = {
                "open": lambda i: i not in self.cancelled and i not in done,
                "closed": lambda i: i not in self.cancelled and i in done,
                "cancelled": lambda i: i in self.cancelled,
            }[status]
            ids = [i for i in ids if keep(i)]
        try:
            if "ids" in filters:
                wanted = {int(x) for x in str(filters["ids"]).split(",") if x.strip()}
                ids = [i for i in ids if i in wanted]
            if "since_id" in filters:
                since = int(filters["since_id"])
                ids = [i for i in ids if i > since]
        except ValueError:
            return JSONResponse({"errors": {"ids": ["must be a comma-separated list of integers"]}}, 400)
        for key, table, field in (
            ("financial_status", FINANCIAL, "financial_status"),
            ("fulfillment_status", FULFILLMENT, "fulfillment_status"),
        ):
            if key in filters:
                allowed = table.get(filters[key])
                if allowed is None:
                    return JSONResponse({"errors": {key: ["is not included in the list"]}}, 422)
                ids = [i for i in ids if self.render(i)[field] in allowed]
        for key, attr, compare in (
            ("updated_at_min", "updated_at", operator.ge),
            ("updated_at_max", "updated_at", operator.le),
            ("created_at_min", "created_at", operator.ge),
            ("created_at_max", "created_at", operator.le),
        ):
            if key in filters:
                bound = _parse(filters[key])
                ids = [i for i in ids if compare(getattr(self.orders[i], attr), bound)]
        return ids

    async def count_orders(self, request: Request) -> Response:
        """`orders/count.json`: how many orders the same filters match."""
        if (denied := self._auth(request)) is not None:
            return denied
        filters = {k: v for k, v in request.query_params.items() if k in PAGE_FILTERS - {"order"}}
        with self.lock:
            ids = self._filtered(filters)
        return ids if isinstance(ids, Response) else JSONResponse({"count": len(ids)})

    def _links(self, request: Request, filters: dict[str, Any], offset: int, limit: int, total: int) -> dict[str, str]:
        """The `Link` header (rel next / previous) for a page of `total` rows, or none for a single page."""
        base = f"{self.base_url}{request.url.path}?limit={limit}&page_info="
        links = []
        if offset + limit < total:
            links.append(f'<{base}{_encode_cursor(filters, offset + limit)}>; rel="next"')
        if offset > 0:
            links.append(f'<{base}{_encode_cursor(filters, max(0, offset - limit))}>; rel="previous"')
        return {"Link": ", ".join(links)} if links else {}

    async def get_order(self, request: Request) -> Response:
        """One order."""
        if (denied := self._auth(request)) is not None:
            return denied
        oid = request.path_params["oid"]
        return JSONResponse({"order": self.render(oid)}) if oid in self.orders else self.error_body(404, "Not Found")

    async def cancel(self, request: Request) -> Response:
        """Cancel an order."""
        if (denied := self._auth(request)) is not None:
            return denied
        oid = request.path_params["oid"]
        if oid not in self.orders:
            return self.error_body(404, "Not Found")
        with self.lock:
            self.cancelled[oid] = datetime.now(UTC)
            self.orders[oid].updated_at = self.cancelled[oid]
            return JSONResponse({"order": self.render(oid)})

    async def fulfillment_orders(self, request: Request) -> Response:
        """One fulfilment order per order, assigned to the first location."""
        if (denied := self._auth(request)) is not None:
            return denied
        oid = request.path_params["oid"]
        if oid not in self.orders:
            return self.error_body(404, "Not Found")
        left = self.fulfillable[oid]
        lines = dict(zip(left, self.orders[oid].lines, strict=True))
        started = any(q < lines[lid].quantity for lid, q in left.items())
        status = (
            "cancelled"
            if oid in self.cancelled
            else "closed"
            if not any(left.values())
            else ("in_progress" if started else "open")
        )
        return JSONResponse(
            {
                "fulfillment_orders": [
                    {
                        "id": oid + 1,
                        "order_id": oid,
                        "assigned_location_id": next(iter(LOCATIONS)),
                        "status": status,
                        "line_items": [
                            {
                                "id": line_id + 1,
                                "line_item_id": line_id,
                                "inventory_item_id": li.variant_id + 10**9,
                                "variant_id": li.variant_id,
                                "quantity": li.quantity,
                                "fulfillable_quantity": left[line_id],
                            }
                            for li, line_id in zip(self.orders[oid].lines, left, strict=True)
                        ],
                    }
                ]
            }
        )

    async def order_fulfillments(self, request: Request) -> Response:
        """An order's fulfillments, oldest first."""
        if (denied := self._auth(request)) is not None:
            return denied
        oid = request.path_params["oid"]
        if oid not in self.orders:
            return self.error_body(404, "Not Found")
        return JSONResponse({"fulfillments": [f for f in self.fulfillments if f["order_id"] == oid]})

    async def create_fulfillment(self, request: Request) -> Response:
        """Fulfil fulfilment-order lines (all remaining when none are listed) with tracking."""
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = (await request.json())["fulfillment"]
            groups = body["line_items_by_fulfillment_order"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": {"fulfillment": ["is invalid"]}}, 422)
        if not isinstance(groups, list) or not groups:
            return JSONResponse({"errors": {"line_items_by_fulfillment_order": ["can't be blank"]}}, 422)
        with self.lock:
            taking: list[tuple[int, int, int]] = []  # (order id, line id, quantity): checked in full, then taken
            for group in groups:
                oid = int(group["fulfillment_order_id"]) - 1
                if oid not in self.orders:
                    return self.error_body(404, "Not Found")
                left = self.fulfillable[oid]
                if oid in self.cancelled or not any(left.values()):
                    status = "cancelled" if oid in self.cancelled else "closed"
                    return JSONResponse(
                        {"errors": [f"Fulfillment order {oid + 1} has an unfulfillable status= {status}."]}, 422
                    )
                wanted = group.get("fulfillment_order_line_items") or [
                    {"id": lid + 1, "quantity": q} for lid, q in left.items() if q
                ]
                for item in wanted:
                    lid, quantity = int(item["id"]) - 1, int(item["quantity"])
                    asked = quantity + sum(q for o, line, q in taking if (o, line) == (oid, lid))
                    if left.get(lid, 0) < asked or quantity < 1:
                        return JSONResponse(
                            {"errors": {"base": [f"Invalid fulfillment order line item quantity {lid}"]}}, 422
                        )
                    taking.append((oid, lid, quantity))
            lines_out = []
            for oid, lid, quantity in taking:
                self.fulfillable[oid][lid] -= quantity
                lines_out.append({"id": lid, "quantity": quantity})
            tracking = body.get("tracking_info") or {}
            fulfillment = {
                "id": 4_100_000_000 + len(self.fulfillments) + 1,
                "order_id": oid,
                "status": "success",
                "tracking_company": tracking.get("company"),
                "tracking_number": tracking.get("number"),
                "tracking_numbers": [tracking["number"]] if tracking.get("number") else [],
                "tracking_url": tracking.get("url"),
                "tracking_urls": [tracking["url"]] if tracking.get("url") else [],
                "line_items": lines_out,
                "notify_customer": body.get("notify_customer", False),
            }
            self.fulfillments.append(fulfillment)
            if tracking.get("number"):
                self.tracking_held(str(oid))
            self.orders[oid].updated_at = datetime.now(UTC)
        return JSONResponse({"fulfillment": fulfillment}, 201)

    async def locations(self, request: Request) -> Response:
        """The store's locations."""
        if (denied := self._auth(request)) is not None:
            return denied
        return JSONResponse({"locations": [{"id": i, "name": n, "active": True} for i, n in LOCATIONS.items()]})

    async def products(self, request: Request) -> Response:
        """The catalogue: one single-variant product per item, each variant with its `inventory_item_id`
        (Link-paged like orders; `limit` max 250)."""
        if (denied := self._auth(request)) is not None:
            return denied
        offset = 0
        if "page_info" in request.query_params:
            cursor = _decode_cursor(request.query_params["page_info"])
            if cursor is None:
                return self.error_body(400, "Invalid page_info")
            offset = cursor[1]
        limit = min(int(request.query_params.get("limit", 50)), 250)
        catalogue = self.world.products
        page = [
            {
                "id": self.world.variant_ids[p.sku] + 2 * 10**9,
                "title": p.title,
                "status": "active",
                "variants": [
                    {
                        "id": self.world.variant_ids[p.sku],
                        "product_id": self.world.variant_ids[p.sku] + 2 * 10**9,
                        "sku": p.sku,
                        "title": "Default Title",
                        "price": f"{p.price:.2f}",
                        "barcode": p.barcode,
                        "grams": p.weight_g,
                        "inventory_item_id": self.world.variant_ids[p.sku] + 10**9,
                        "inventory_management": "shopify",
                    }
                ],
            }
            for p in catalogue[offset : offset + limit]
        ]
        return JSONResponse({"products": page}, headers=self._links(request, {}, offset, limit, len(catalogue)))

    async def inventory_levels(self, request: Request) -> Response:
        """Levels for `inventory_item_ids` and/or `location_ids` (one is required)."""
        if (denied := self._auth(request)) is not None:
            return denied
        q = dict(request.query_params)
        offset = 0
        if "page_info" in q:
            cursor = _decode_cursor(q["page_info"])
            if cursor is None:
                return self.error_body(400, "Invalid page_info")
            q, offset = cursor
        items = {int(x) for x in q.get("inventory_item_ids", "").split(",") if x}
        locs = {int(x) for x in q.get("location_ids", "").split(",") if x}
        if not items and not locs:
            return JSONResponse({"errors": {"base": ["inventory_item_ids or location_ids is required"]}}, 422)
        limit = min(int(request.query_params.get("limit", 50)), 250)
        rows = [
            {"inventory_item_id": i, "location_id": loc, "available": v, "updated_at": _ts(datetime.now(UTC))}
            for (i, loc), v in self.levels.items()
            if (not items or i in items) and (not locs or loc in locs)
        ]
        filters = {k: v for k, v in q.items() if k in ("inventory_item_ids", "location_ids")}
        return JSONResponse(
            {"inventory_levels": rows[offset : offset + limit]},
            headers=self._links(request, filters, offset, limit, len(rows)),
        )

    async def set_level(self, request: Request) -> Response:
        """`inventory_levels/set.json`."""
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        key = (int(body.get("inventory_item_id", 0)), int(body.get("location_id", 0)))
        if key not in self.levels:
            return JSONResponse({"errors": {"base": ["Inventory item does not exist at location"]}}, 422)
        with self.lock:
            self.levels[key] = int(body["available"])
            self.level_writes.append(
                {"inventory_item_id": key[0], "location_id": key[1], "available": self.levels[key]}
            )
        return self._level_answer(key, self.levels[key])

    @staticmethod
    def _level_answer(key: tuple[int, int], level: int) -> Response:
        """`{"inventory_level": ...}` as set.json and adjust.json answer."""
        return JSONResponse(
            {
                "inventory_level": {
                    "inventory_item_id": key[0],
                    "location_id": key[1],
                    "available": level,
                    "updated_at": _ts(datetime.now(UTC)),
                    "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{key[0]}",
                }
            }
        )

    async def adjust_level(self, request: Request) -> Response:
        """`inventory_levels/adjust.json`: change the available quantity by `available_adjustment`."""
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        if "available_adjustment" not in body:
            return JSONResponse({"errors": {"available_adjustment": ["is required"]}}, 422)
        key = (int(body.get("inventory_item_id", 0)), int(body.get("location_id", 0)))
        if key not in self.levels:
            return JSONResponse({"errors": {"base": ["Inventory item does not exist at location"]}}, 422)
        with self.lock:
            self.levels[key] += int(body["available_adjustment"])
            self.level_writes.append(
                {"inventory_item_id": key[0], "location_id": key[1], "available": self.levels[key]}
            )
            level = self.levels[key]
        return self._level_answer(key, level)

    async def graphql(self, request: Request) -> Response:
        """`inventorySetQuantities` through variables, with calculated cost and THROTTLED answers."""
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        query, variables = body.get("query", ""), body.get("variables") or {}
        quantities = (variables.get("input") or {}).get("quantities", [])
        cost = 10 + len(quantities)
        ok, level = self.gql_bucket.take(cost)
        throttle = {
            "maximumAvailable": GRAPHQL_BUCKET,
            "currentlyAvailable": round(GRAPHQL_BUCKET - level, 1),
            "restoreRate": GRAPHQL_RESTORE_PER_S,
        }
        if not ok:
            return JSONResponse(
                {
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {
                        "cost": {"requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": throttle}
                    },
                },
                self.faults.graphql_throttle_status,
            )
        if "inventorySetQuantities" not in query:
            return JSONResponse({"errors": [{"message": "Only inventorySetQuantities is emulated"}]}, 200)
        errors = []
        if len(quantities) > 250:
            errors.append({"field": ["input", "quantities"], "message": "At most 250 quantities", "code": "INVALID"})
        with self.lock:
            for n, qty in enumerate(quantities if not errors else []):
                item = int(str(qty["inventoryItemId"]).rsplit("/", 1)[-1])
                loc = int(str(qty["locationId"]).rsplit("/", 1)[-1])
                if (item, loc) not in self.levels:
                    errors.append(
                        {
                            "field": ["input", "quantities", str(n)],
                            "message": "Item not stocked at location",
                            "code": "ITEM_NOT_STOCKED_AT_LOCATION",
                        }
                    )
                    continue
                self.levels[(item, loc)] = int(qty["quantity"])
                self.level_writes.append(
                    {"inventory_item_id": item, "location_id": loc, "available": int(qty["quantity"])}
                )
        return JSONResponse(
            {
                "data": {
                    "inventorySetQuantities": {
                        "inventoryAdjustmentGroup": None if errors else {"reason": "correction"},
                        "userErrors": errors,
                    }
                },
                "extensions": {
                    "cost": {"requestedQueryCost": cost, "actualQueryCost": cost, "throttleStatus": throttle}
                },
            }
        )
