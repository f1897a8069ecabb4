"""Contract tests against the vendors' own published specs, kept in emulators/specs (read, never edited): every answer
the Linnworks emulator gives on the routes fulfil uses has exactly the shape of the spec's response model, and
every request the product sends passes the spec's request model (the emulator refuses one that does not).
BigCommerce's v3 inventory and v2 order answers are validated against its OpenAPI files. Shopify and Cin7 publish no
machine-readable spec: every request their clients (and BigCommerce's) make is held to what the documentation pages
list (`emulators/documented.py`, applied by the `emulators` fixture after every test).

Routes served that the spec files here do not describe, and why they exist:
- Linnworks `Orders/GetOpenOrders` is in orders.json; `OpenOrders/GetOpenOrdersDetails` in openorders.json: both
  described. None of the Linnworks routes the emulator serves is outside the spec.
- `/_emulator/*` on every emulator: test controls (faults, calls, state, actions), not part of any system."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

from emulators.documented import product_requests_undocumented
from emulators.linnworks import SPEC_FILES
from emulators.server import Emulators
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.http import USER_AGENT
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient

SPECS = Path(__file__).resolve().parents[1] / "emulators" / "specs"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "specs"  # the team's reference copies, where present
LINNWORKS_FILES = SPEC_FILES  # every Linnworks spec the emulator serves from


def test_the_specs_in_the_repository_are_the_vendors_own() -> None:
    """Every vendor file the tests and emulators read is here; where the shared reference copies exist, each is
    byte for byte the same (a spec is the vendor's, never edited here)."""
    ours = sorted(p.relative_to(SPECS) for p in SPECS.rglob("*") if p.is_file() and p.suffix != ".md")
    assert len(ours) >= 13, ours
    if not SHARED.is_dir():
        return
    for relative in ours:
        shared = SHARED / str(relative).replace(
            "peoplevox_integrationservicev4.wsdl", "peoplevox/integrationservicev4.wsdl"
        )
        assert shared.read_bytes() == (SPECS / relative).read_bytes(), relative


def exact(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema demanding exactly its properties (all present, no others); null allowed (Swagger 2 has no
    `nullable`, and the real services answer null for empty values)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            if isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
                if "enum" in node:
                    node["enum"] = [*node["enum"], None]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def linnworks_ops() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    ops = {}
    for name in LINNWORKS_FILES:
        spec = json.loads((SPECS / "linnworks" / f"{name}.json").read_text())
        for route, verbs in spec["paths"].items():
            for op in verbs.values():
                ops[route.removeprefix("/api/")] = (op, spec)
    return ops


def check_answer(ops: dict, method: str, body: Any) -> None:
    op, spec = ops[method]
    schema = {**op["responses"]["200"]["schema"], "definitions": exact(spec["definitions"])}
    jsonschema.Draft4Validator(exact(schema)).validate(body)


def check_request(ops: dict, method: str, body: Any) -> None:
    op, spec = ops[method]
    param = next(p for p in op["parameters"] if p["in"] == "body")
    root = exact({**param["schema"], "definitions": spec["definitions"]})
    for model in root["definitions"].values():  # requests need not carry every field: only no unknown ones
        model.pop("required", None)
    root.pop("required", None)
    jsonschema.Draft4Validator(root).validate(body)


def test_linnworks_answers_and_the_products_requests_follow_the_swagger(emulators: Emulators) -> None:
    emu = emulators
    ops = linnworks_ops()
    lw = emu.linnworks
    oid = next(iter(lw.orders))
    lw.shipping_info[oid] = [{"TrackingNumber": "WHL1"}]
    client = LinnworksClient(emu.url("linnworks"), *lw.credentials, budget_share=1.0)
    # What the product itself sends, through its own client.
    list(client.open_orders(page_size=50))
    client.set_shipping_info(oid, "WHL1")
    client.process_order(oid)
    list(client.processed_orders("processed", "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"))
    list(client.stock_items(page_size=100))
    client.postal_services()
    client.orders_by_id([oid])
    sent = [c for c in lw.recorder.calls if c.status == 200 and c.path.startswith("/api/")]
    methods = {c.path.removeprefix("/api/") for c in sent}
    assert {"Orders/GetOpenOrders", "Orders/ProcessOrder", "Stock/GetStockItemsFull"} <= methods
    for call in sent:
        method = call.path.removeprefix("/api/")
        if method in ops and any(p["in"] == "body" for p in ops[method][0].get("parameters", [])):
            check_request(ops, method, call.body)

    # Every route the emulator serves answers in the spec's exact response shape.
    token, server = client.session()
    lw_location = "00000000-0000-0000-0000-000000000000"
    headers = {"Authorization": token}
    requests = {
        "Orders/GetOpenOrders": {"entriesPerPage": 5, "pageNumber": 1},
        "OpenOrders/GetOpenOrders": {"ViewId": 0, "LocationId": lw_location, "EntriesPerPage": 5, "PageNumber": 1},
        "OpenOrders/GetOpenOrdersDetails": {"OrderIds": [oid]},
        "Orders/GetOrdersById": {"pkOrderIds": [oid]},
        "ProcessedOrders/SearchProcessedOrders": {
            "request": {"DateField": "processed", "FromDate": "2020-01-01T00:00:00Z", "ToDate": "2099-01-01T00:00:00Z"}
        },
        "Stock/GetStockItemsFull": {"entriesPerPage": 5, "pageNumber": 1, "dataRequirements": ["StockLevels"]},
        "Stock/SetStockLevel": {"stockLevels": [{"SKU": emu.world.wms_catalogue[0], "LocationId": None, "Level": 3}]},
        "Orders/SetOrderShippingInfo": {"orderId": oid, "info": {"TrackingNumber": "WHL2"}},
        "PostalServices/GetPostalServices": None,
        "Inventory/GetStockLocations": None,  # GETs, as the spec has them (what other clients call first)
        f"Locations/GetLocation?pkStockLocationId={lw_location}": None,
    }
    with httpx.Client(headers=headers) as c:
        for method, body in requests.items():
            r = c.get(f"{server}/api/{method}") if body is None else c.post(f"{server}/api/{method}", json=body)
            assert r.status_code == 200, (method, r.text)
            check_answer(ops, method.split("?")[0], r.json())
        locations = c.get(f"{server}/api/Inventory/GetStockLocations").json()
        assert {loc["LocationName"] for loc in locations} == {"Default", "Whistl", "Peoplevox"}
        unknown = c.get(f"{server}/api/Locations/GetLocation", params={"pkStockLocationId": "not-a-location"})
        assert unknown.status_code == 400 and set(unknown.json()) == {"Code", "Message"}
        # A request the spec does not allow is refused, in Linnworks' error shape.
        bad = c.post(f"{server}/api/Orders/GetOpenOrders", json={"entriesPerPage": "many", "pageNumber": 1})
        assert bad.status_code == 400 and set(bad.json()) == {"Code", "Message"} and "entriesPerPage" in bad.text
        odd = c.post(f"{server}/api/Orders/GetOrdersById", json={"pkOrderIds": [oid], "includeEverything": True})
        assert odd.status_code == 400 and "includeEverything" in odd.text
    client.close()


def test_bigcommerce_inventory_answers_follow_the_openapi(emulators: Emulators) -> None:
    spec = yaml.safe_load((SPECS / "bigcommerce" / "inventory.v3.yml").read_text())
    op = spec["paths"]["/inventory/items"]["get"]
    content = op["responses"]["200"]["content"]["application/json"]["schema"]
    components = json.loads(json.dumps(spec["components"]).replace("#/components/schemas/", "#/definitions/"))
    schema = json.loads(json.dumps(content).replace("#/components/schemas/", "#/definitions/"))
    root = {**schema, "definitions": components["schemas"]}
    emu = emulators
    r = httpx.get(
        f"{emu.url('bigcommerce')}v3/inventory/items",
        params={"limit": 5, "page": 2},
        headers={"X-Auth-Token": emu.bigcommerce.access_token},
    )
    assert r.status_code == 200
    jsonschema.Draft4Validator(root).validate(r.json())  # OpenAPI 3.0 schemas are JSON Schema draft 4 in effect


def openapi_validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """An OpenAPI 3.0 schema as JSON Schema (its `nullable` as a null type), refs into `components`."""
    text = json.dumps({**schema, "components": spec["components"]})

    def nullable(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("nullable") and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            for value in node.values():
                nullable(value)
        elif isinstance(node, list):
            for value in node:
                nullable(value)

    root = json.loads(text)
    nullable(root)
    return jsonschema.Draft4Validator(root)


def check_openapi(spec: dict[str, Any], path: str, verb: str, status: str, r: httpx.Response) -> None:
    """The answer `r` validates against the spec's schema for that path, verb and status."""
    assert r.status_code == int(status), (path, r.text)
    response = spec["paths"][path][verb]["responses"][status]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    content = response["content"]
    schema = (content.get("application/json") or content["application/problem+json"])["schema"]
    errors = sorted(openapi_validator(spec, schema).iter_errors(r.json()), key=lambda e: list(e.path))
    assert not errors, (path, [f"{list(e.path)}: {e.message}" for e in errors[:5]])


def test_bigcommerce_order_and_adjustment_answers_follow_the_openapi(emulators: Emulators) -> None:
    orders = yaml.safe_load((SPECS / "bigcommerce" / "orders.v2.oas2.yml").read_text())
    inventory = yaml.safe_load((SPECS / "bigcommerce" / "inventory.v3.yml").read_text())
    emu = emulators
    bc = emu.bigcommerce
    base = emu.url("bigcommerce")
    headers = {"X-Auth-Token": bc.access_token, "Accept": "application/json"}
    oid = next(o for o, status in bc.status.items() if status == 11)
    with httpx.Client(headers=headers) as c:
        for path, url in (
            ("/orders", f"{base}v2/orders"),
            ("/orders/count", f"{base}v2/orders/count"),
            ("/orders/{order_id}", f"{base}v2/orders/{oid}"),
            ("/orders/{order_id}/products", f"{base}v2/orders/{oid}/products"),
            ("/orders/{order_id}/shipping_addresses", f"{base}v2/orders/{oid}/shipping_addresses"),
        ):
            check_openapi(orders, path, "get", "200", c.get(url))
        address = c.get(f"{base}v2/orders/{oid}/shipping_addresses").json()[0]
        product = c.get(f"{base}v2/orders/{oid}/products").json()[0]
        shipment = {
            "order_address_id": address["id"],
            "tracking_number": "WHL77",
            "items": [{"order_product_id": product["id"], "quantity": 1}],
        }
        path = "/orders/{order_id}/shipments"
        check_openapi(orders, path, "post", "201", c.post(f"{base}v2/orders/{oid}/shipments", json=shipment))
        check_openapi(orders, path, "get", "200", c.get(f"{base}v2/orders/{oid}/shipments"))
        sku = next(s for s in sorted({s for s, _ in bc.inventory}) if not bc.tracked_by_product(s))
        other = next(s for s in sorted({s for s, _ in bc.inventory}) if bc.tracked_by_product(s))
        url = f"{base}v3/inventory/adjustments/absolute"
        path = "/inventory/adjustments/absolute"
        ok = c.put(url, json={"items": [{"location_id": 1, "sku": sku, "quantity": 2}]})
        check_openapi(inventory, path, "put", "200", ok)
        refused = c.put(url, json={"items": [{"location_id": 1, "sku": other, "quantity": 2}]})
        check_openapi(inventory, path, "put", "422", refused)
        assert "is tracked by product, please update stock by product id" in refused.json()["title"]


def test_every_request_of_the_storefront_and_cin7_clients_is_documented(emulators: Emulators) -> None:
    """Shopify and Cin7 publish no machine-readable spec: their clients' requests are held to what the documentation
    pages list (`emulators/documented.py`; the `emulators` fixture applies it after every test). Here each request
    the clients make is made once and found documented, and a parameter no page lists is named with its page."""
    emu = emulators
    shopify = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=1.0)
    order = next(iter(emu.shopify.orders))
    list(shopify.orders("2020-01-01T00:00:00Z", limit=50))
    locations = shopify.locations()
    list(shopify.products(limit=50))
    shopify.fulfillment_orders(order)
    shopify.order_fulfillments(order)
    list(shopify.inventory_levels([loc["id"] for loc in locations], limit=50))
    cin7 = Cin7Client(emu.url("cin7"), *emu.cin7.credentials, budget_share=1.0)
    sale = next(row for page in cin7.sales("2020-01-01T00:00:00Z") for row in page)
    cin7.sale(sale["SaleID"])
    list(cin7.availability())
    list(cin7.stock_adjustments())
    cin7.carriers()
    bigcommerce = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=1.0)
    list(bigcommerce.orders("2020-01-01T00:00:00+00:00"))
    list(bigcommerce.catalog_products())
    list(bigcommerce.inventory_items())

    made = {
        system: {c.path.rsplit("/", 1)[-1] for c in getattr(emu, system).recorder.calls if c.agent == USER_AGENT}
        for system in ("shopify", "cin7", "bigcommerce")
    }
    assert {"orders.json", "locations.json", "products.json", "inventory_levels.json"} <= made["shopify"], made
    assert {"saleList", "sale", "productavailability", "stockadjustmentList", "carrier"} <= made["cin7"], made
    assert {"orders", "products", "items"} <= made["bigcommerce"], made
    assert product_requests_undocumented(emu) == []

    # A parameter no documentation page lists is named, with the page to read (then cleared for the fixture).
    list(shopify.pages("orders.json", "orders", {"status": "any", "sort_by": "placed"}))
    cin7.get("saleList", Page=1, Limit=5, Sort="Updated")
    bigcommerce.get("v2/orders", page=1, limit=5, colour="blue")
    problems = product_requests_undocumented(emu)
    assert [p.split(" (")[0] for p in problems] == [
        "GET orders.json: query sort_by: not a documented parameter",
        "GET saleList: query Sort: not a documented parameter",
        "GET v2/orders: query colour: not in the OpenAPI file",
    ], problems
    assert "https://shopify.dev/docs/api/admin-rest/latest/resources/order#get-orders" in problems[0]
    for system in ("shopify", "cin7", "bigcommerce"):  # the fixture's own check would (rightly) fail on these
        getattr(emu, system).recorder.history.clear()
