"""What Shopify and Cin7 Core document of the requests fulfil sends (neither publishes a machine-readable spec), and
BigCommerce's catalogue route, which the OpenAPI files kept here do not cover: per method and route, the query
parameters and request-body fields the vendor's documentation page lists, and the page. `undocumented()` says what
in one recorded request the documentation does not have; the test fixtures apply it to every request fulfil's own
clients make (known by their User-Agent), so a client can never come to rely on something the vendor never promised.

Linnworks requests are held to its Swagger by the emulator itself (it refuses what the spec's request model does
not allow), BigCommerce's to its OpenAPI files here (`openapi_query_params`), Peoplevox's envelopes to its WSDL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

CLIENT_AGENT = "fulfil/"  # the User-Agent prefix of fulfil's own HTTP clients (resources/http.py)
SPECS = Path(__file__).resolve().parent / "specs"

Shape = (
    str | dict[str, Any] | list[Any]
)  # "string" | "integer" | "number" | "boolean" | "any" | {field: shape} | [shape]

SHOPIFY_PAGING = frozenset({"page_info", "limit", "fields"})  # what a `Link` URL may carry (pagination-rest)
SHOPIFY_PAGES = "https://shopify.dev/docs/api/admin-rest/latest/resources/"
CIN7_PAGES = "https://dearinventory.docs.apiary.io/"


@dataclass(frozen=True)
class Documented:
    """One route as its vendor documents it: the query parameters it takes and the body it accepts."""

    method: str
    route: str  # after the API base; `{id}` stands for one path segment
    query: frozenset[str]
    body: Shape | None
    page: str

    def matches(self, method: str, route: str) -> bool:
        """Whether a request of `method` to `route` is this route."""
        pattern = "^" + re.escape(self.route).replace(r"\{id\}", "[^/]+") + "$"
        return method == self.method and re.match(pattern, route, re.IGNORECASE) is not None


SHOPIFY = (
    Documented(
        "GET",
        "orders.json",
        frozenset(
            {
                "ids",
                "limit",
                "since_id",
                "created_at_min",
                "created_at_max",
                "updated_at_min",
                "updated_at_max",
                "processed_at_min",
                "processed_at_max",
                "attribution_app_id",
                "status",
                "financial_status",
                "fulfillment_status",
                "fields",
                "page_info",
                "order",  # `updated_at asc`: kept across pages (../shared/contracts/systems.md, Shopify "Orders")
            }
        ),
        None,
        SHOPIFY_PAGES + "order#get-orders",
    ),
    Documented("GET", "locations.json", SHOPIFY_PAGING, None, SHOPIFY_PAGES + "location#get-locations"),
    Documented(
        "GET",
        "products.json",
        SHOPIFY_PAGING
        | {
            "ids",
            "since_id",
            "title",
            "vendor",
            "handle",
            "product_type",
            "status",
            "collection_id",
            "created_at_min",
            "created_at_max",
            "updated_at_min",
            "updated_at_max",
            "published_status",
            "presentment_currencies",
        },
        None,
        SHOPIFY_PAGES + "product#get-products",
    ),
    Documented(
        "GET",
        "orders/{id}/fulfillment_orders.json",
        SHOPIFY_PAGING | {"include_financial_summaries", "include_order_reference_fields"},
        None,
        SHOPIFY_PAGES + "fulfillmentorder#get-orders-order-id-fulfillment-orders",
    ),
    Documented(
        "GET",
        "orders/{id}/fulfillments.json",
        SHOPIFY_PAGING | {"since_id", "created_at_min", "created_at_max", "updated_at_min", "updated_at_max"},
        None,
        SHOPIFY_PAGES + "fulfillment#get-orders-order-id-fulfillments",
    ),
    Documented(
        "POST",
        "fulfillments.json",
        frozenset(),
        {
            "fulfillment": {
                "line_items_by_fulfillment_order": [
                    {
                        "fulfillment_order_id": "integer",
                        "fulfillment_order_line_items": [{"id": "integer", "quantity": "integer"}],
                    }
                ],
                "tracking_info": {"number": "string", "url": "string", "company": "string"},
                "notify_customer": "boolean",
                "origin_address": "any",
                "message": "string",
            }
        },
        SHOPIFY_PAGES + "fulfillment#post-fulfillments",
    ),
    Documented(
        "GET",
        "inventory_levels.json",
        SHOPIFY_PAGING | {"inventory_item_ids", "location_ids", "updated_at_min"},
        None,
        SHOPIFY_PAGES + "inventorylevel#get-inventory-levels",
    ),
    Documented(
        "POST",
        "graphql.json",
        frozenset(),
        {
            "query": "string",
            "operationName": "string",
            "variables": {
                "input": {
                    "name": "string",
                    "reason": "string",
                    "referenceDocumentUri": "string",
                    "ignoreCompareQuantity": "boolean",
                    "quantities": [
                        {
                            "inventoryItemId": "string",
                            "locationId": "string",
                            "quantity": "integer",
                            "compareQuantity": "integer",
                        }
                    ],
                }
            },
        },
        "https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities",
    ),
)

CIN7_PAGING = frozenset({"Page", "Limit"})
CIN7 = (
    Documented("GET", "me", frozenset(), None, CIN7_PAGES + "#reference/me"),
    Documented(
        "GET",
        "saleList",
        CIN7_PAGING
        | {
            "Search",
            "CreatedSince",
            "UpdatedSince",
            "ShipBy",
            "QuoteStatus",
            "OrderStatus",
            "CombinedPickStatus",
            "CombinedPackStatus",
            "CombinedShippingStatus",
            "CombinedInvoiceStatus",
            "CreditNoteStatus",
            "ExternalID",
            "Status",
            "ReadyForShipping",
            "OrderLocationID",
        },
        None,
        CIN7_PAGES + "#reference/sale/sale-list",
    ),
    Documented(
        "GET",
        "sale",
        frozenset({"ID", "CombineAdditionalCharges", "HideInventoryMovements", "IncludeTransactions"}),
        None,
        CIN7_PAGES + "#reference/sale/sale",
    ),
    Documented(
        "GET",
        "ref/productavailability",
        CIN7_PAGING | {"ID", "Name", "Sku", "Location", "Batch", "Category"},
        None,
        CIN7_PAGES + "#reference/product/product-availability",
    ),
    Documented(
        "GET", "stockadjustmentList", CIN7_PAGING | {"Status", "Search"}, None, CIN7_PAGES + "#reference/inventory"
    ),
    Documented("GET", "ref/carrier", CIN7_PAGING | {"Name", "ID"}, None, CIN7_PAGES + "#reference/reference-books"),
    Documented(
        "POST",
        "stockadjustment",
        frozenset(),
        {
            "EffectiveDate": "string",
            "Status": "string",
            "Account": "string",
            "Reference": "string",
            "UpdateOnHand": "boolean",
            "Lines": [
                {
                    "ProductID": "string",
                    "SKU": "string",
                    "ProductName": "string",
                    "Quantity": "number",
                    "UnitCost": "number",
                    "Location": "string",
                    "LocationID": "string",
                    "BatchSN": "string",
                    "ExpiryDate": "string",
                    "Comments": "string",
                }
            ],
        },
        CIN7_PAGES + "#reference/inventory/stock-adjustment",
    ),
    Documented(
        "POST",
        "sale/fulfilment/ship",
        frozenset(),
        {
            "TaskID": "string",
            "Status": "string",
            "RequireBy": "string",
            "ShippingAddress": "any",
            "ShippingNotes": "string",
            "AddTrackingNumbers": "boolean",
            "Lines": [
                {
                    "ShipmentDate": "string",
                    "Carrier": "string",
                    "Box": "string",
                    "NumberOfBoxes": "integer",
                    "TrackingNumber": "string",
                    "TrackingURL": "string",
                    "IsShipped": "boolean",
                }
            ],
        },
        CIN7_PAGES + "#reference/sale/sale-fulfilment-ship",
    ),
)

BIGCOMMERCE = (
    Documented(
        "GET",
        "v3/catalog/products",
        frozenset(
            {
                "id",
                "id:in",
                "name",
                "sku",
                "sku:in",
                "inventory_level",
                "is_visible",
                "date_modified:min",
                "page",
                "limit",
                "include_fields",
                "exclude_fields",
                "include",
                "sort",
                "direction",
            }
        ),
        None,
        "https://developer.bigcommerce.com/docs/rest-catalog/products#get-all-products",
    ),
)

DOCUMENTED = {"shopify": SHOPIFY, "cin7": CIN7, "bigcommerce": BIGCOMMERCE}
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


def unknown_fields(value: Any, shape: Shape, where: str = "") -> list[str]:
    """The places in `value` the documented `shape` does not have (a field it lacks, or a value of another type)."""
    if shape == "any":
        return []
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where or 'body'} is not an object"]
        out = []
        for key, item in value.items():
            if key not in shape:
                out.append(f"{where}{key}: not a documented field")
            else:
                out += unknown_fields(item, shape[key], f"{where}{key}.")
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where.rstrip('.')} is not a list"]
        return [e for i, item in enumerate(value) for e in unknown_fields(item, shape[0], f"{where.rstrip('.')}[{i}].")]
    expected = TYPES[shape]
    if value is not None and (not isinstance(value, expected) or (shape != "boolean" and isinstance(value, bool))):
        return [f"{where.rstrip('.')}: {type(value).__name__}, documented as {shape}"]
    return []


@cache
def openapi_query_params() -> dict[tuple[str, str], frozenset[str]]:
    """BigCommerce's documented query parameters per (method, route regex), from the OpenAPI files kept here."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for name, prefix in (
        ("orders.v2.oas2.yml", "v2"),
        ("inventory.v3.yml", "v3"),
        ("locations.v3.yml", "v3"),
        ("product-variants_catalog.v3.yml", "v3"),
    ):
        spec = yaml.safe_load((SPECS / "bigcommerce" / name).read_text())
        components = spec.get("components", {}).get("parameters", {})
        for path, verbs in spec["paths"].items():
            shared = verbs.get("parameters", [])
            for verb, op in verbs.items():
                if verb == "parameters" or not isinstance(op, dict):
                    continue
                names = set()
                for param in [*shared, *op.get("parameters", [])]:
                    if "$ref" in param:
                        param = components.get(param["$ref"].rsplit("/", 1)[-1], {})
                    if param.get("in") == "query":
                        names.add(param["name"])
                route = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(f"{prefix}{path}")) + "$"
                out[(verb.upper(), route)] = frozenset(names)
    return out


def undocumented(system: str, method: str, route: str, query: str, body: Any) -> list[str]:
    """What in one request (route after the API base, its raw query string and JSON body) the vendor's documentation
    does not have; empty when all of it is documented. Systems not covered here answer empty."""
    params = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    for doc in DOCUMENTED.get(system, ()):
        if doc.matches(method, route):
            problems = [f"query {p}: not a documented parameter" for p in sorted(params - doc.query)]
            if body is not None:
                problems += unknown_fields(body, doc.body) if doc.body is not None else ["a body it does not take"]
            return [f"{method} {route}: {p} ({doc.page})" for p in problems]
    if system == "bigcommerce":
        for (verb, pattern), names in openapi_query_params().items():
            if verb == method and re.match(pattern, route):
                return [f"{method} {route}: query {p}: not in the OpenAPI file" for p in sorted(params - names)]
    if system in DOCUMENTED:
        return [f"{method} {route}: a route {system} does not document"]
    return []


def product_requests_undocumented(emu: Any) -> list[str]:
    """Every request fulfil's own clients made of the emulators `emu` runs that its vendor does not document (the
    route read after each system's API base), once per distinct problem."""
    problems: dict[str, None] = {}
    for system, prefix in (
        ("shopify", emu.url("shopify")),
        ("cin7", emu.url("cin7")),
        ("bigcommerce", emu.url("bigcommerce")),
    ):
        base = "/" + prefix.split("/", 3)[3]
        for call in list(getattr(emu, system).recorder.history):  # what a test cleared counts too
            if call.agent.startswith(CLIENT_AGENT) and call.path.startswith(base):
                route = call.path.removeprefix(base)
                problems.update(dict.fromkeys(undocumented(system, call.method, route, call.query, call.body)))
    return list(problems)
