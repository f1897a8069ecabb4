"""Contract tests: each emulator over real HTTP (and SFTP), against ../shared/contracts/systems.md."""

from __future__ import annotations

import base64
import csv
import io
import re
import time
from datetime import timedelta

import httpx
import paramiko
import pytest

from emulators.server import Emulators
from emulators.world import World

# -- helpers ---------------------------------------------------------------------------------------------


def lw_login(emu: Emulators, client: httpx.Client) -> tuple[str, str]:
    app_id, secret, token = emu.linnworks.credentials
    r = client.post(
        f"{emu.url('linnworks')}/api/Auth/AuthorizeByApplication",
        json={"ApplicationId": app_id, "ApplicationSecret": secret, "Token": token},
    )
    assert r.status_code == 200
    body = r.json()
    return body["Token"], body["Server"]


def faults(emu: Emulators, system: str, **values: object) -> None:
    port = emu.ports[system]
    r = httpx.post(f"http://127.0.0.1:{port}/_emulator/faults", json=values)
    assert r.status_code == 200, r.text


SET_QUANTITIES = (
    "mutation inventorySetQuantities($input: InventorySetQuantitiesInput!) "
    "{ inventorySetQuantities(input: $input) { userErrors { field message code } } }"
)
CIN7_HEADERS = {"api-auth-accountid": "cin7-account", "api-auth-applicationkey": "cin7-key"}
SHOP_HEADERS = {"X-Shopify-Access-Token": "shpat_emulator"}
BC_HEADERS = {"X-Auth-Token": "bc-token", "Accept": "application/json"}


def soap(method: str, inner: str, session: str | None = None, client_id: str = "brand01") -> str:
    header = ""
    if session:
        header = (
            f'<soap:Header><UserSessionCredentials xmlns="http://www.peoplevox.net/"><UserId>0</UserId>'
            f"<ClientId>{client_id}</ClientId><SessionId>{session}</SessionId></UserSessionCredentials>"
            "</soap:Header>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        f'{header}<soap:Body><{method} xmlns="http://www.peoplevox.net/">{inner}</{method}></soap:Body></soap:Envelope>'
    )


def soap_result(text: str) -> tuple[int, int, str]:
    rid = int(re.search(r"<ResponseId>(-?\d+)</ResponseId>", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"<TotalCount>(\d+)</TotalCount>", text).group(1))  # type: ignore[union-attr]
    detail = re.search(r"<Detail>(.*)</Detail>", text, re.S)
    import html

    return rid, total, html.unescape(detail.group(1)) if detail else ""


# -- world -----------------------------------------------------------------------------------------------


def test_same_seed_same_world_and_it_has_the_blemishes_we_need() -> None:
    a, b = World(11, 500), World(11, 500)
    assert [p.sku for p in a.products] == [p.sku for p in b.products]
    oa = a.make_orders("linnworks", 400, a.start, a.start.replace(hour=20))
    ob = b.make_orders("linnworks", 400, b.start, b.start.replace(hour=20))
    assert [(o.uid, o.address, o.lines) for o in oa] == [(o.uid, o.address, o.lines) for o in ob]
    assert World(12, 500).products[0].barcode != a.products[0].barcode
    skus = [p.sku for p in a.products]
    assert any(not s.isalnum() for s in skus), "some SKUs must carry hyphens, spaces or underscores"
    assert any(p.is_bundle for p in a.products)
    assert set(a.wms_catalogue) < {p.sku for p in a.products if not p.is_bundle}, "some SKUs unknown at the WMS"
    assert any(o.address.phone == "" for o in oa) and any(not o.paid for o in oa)
    assert {o.shipping_method for o in oa} >= {"Standard Delivery", "Next Day", "Express Delivery"}
    assert any(o.address.country_code != "GB" for o in oa)


# -- Linnworks -------------------------------------------------------------------------------------------


def test_linnworks_auth_pages_and_errors(emulators: Emulators) -> None:
    emu = emulators
    with httpx.Client() as c:
        bad = c.post(
            f"{emu.url('linnworks')}/api/Auth/AuthorizeByApplication",
            data={"ApplicationId": "x", "ApplicationSecret": "y", "Token": "z"},
        )
        assert bad.status_code == 401 and set(bad.json()) == {"Code", "Message"}
        token, server = lw_login(emu, c)
        assert server == emu.url("linnworks")
        no_auth = c.post(f"{server}/api/Orders/GetOpenOrders", json={"entriesPerPage": 10, "pageNumber": 1})
        assert no_auth.status_code == 401 and no_auth.json()["Message"] == "Token is wrong."
        seen, page = [], 1
        while True:
            body = c.post(
                f"{server}/api/Orders/GetOpenOrders",
                headers={"Authorization": token},
                json={"entriesPerPage": 15, "pageNumber": page},
            ).json()
            seen += [o["OrderId"] for o in body["Data"]]
            if page >= body["TotalPages"]:
                break
            page += 1
        assert len(seen) == len(set(seen)) == body["TotalEntries"] == 40
        # Form-encoded body with JSON-encoded fields (the .NET SDK's way) reaches the same method.
        form = c.post(
            f"{server}/api/Orders/GetOpenOrders",
            headers={"Authorization": token},
            data={"entriesPerPage": "5", "pageNumber": "2"},
        )
        assert [o["OrderId"] for o in form.json()["Data"]] == seen[5:10]
        # Stock items: no totals, 400 past the last page.
        items = c.post(
            f"{server}/api/Stock/GetStockItemsFull",
            headers={"Authorization": token},
            json={"entriesPerPage": 200, "pageNumber": 1, "dataRequirements": ["StockLevels"]},
        )
        assert isinstance(items.json(), list) and len(items.json()) == 200
        over = c.post(
            f"{server}/api/Stock/GetStockItemsFull",
            headers={"Authorization": token},
            json={"entriesPerPage": 200, "pageNumber": 3},
        )
        assert over.status_code == 400


def test_linnworks_writes_have_their_effect(emulators: Emulators) -> None:
    emu = emulators
    with httpx.Client() as c:
        token, server = lw_login(emu, c)
        h = {"Authorization": token}
        order = c.post(
            f"{server}/api/Orders/GetOpenOrders", headers=h, json={"entriesPerPage": 1, "pageNumber": 1}
        ).json()["Data"][0]
        oid, sku = order["OrderId"], order["Items"][0]["SKU"]
        r = c.post(
            f"{server}/api/Orders/SetOrderShippingInfo",
            headers=h,
            data={"orderId": oid, "info": '{"TrackingNumber": "WHL1234", "ManualAdjust": false}'},
        )
        assert r.status_code == 200 and r.json()["ShippingInfo"]["TrackingNumber"] == "WHL1234"
        assert c.post(f"{server}/api/Orders/ProcessOrder", headers=h, json={"orderId": oid}).json()["Processed"]
        again = c.post(f"{server}/api/Orders/ProcessOrder", headers=h, json={"orderId": oid}).json()
        assert again["Processed"] is False and again["Error"]
        open_ids = [
            o["OrderId"]
            for o in c.post(
                f"{server}/api/Orders/GetOpenOrders", headers=h, json={"entriesPerPage": 200, "pageNumber": 1}
            ).json()["Data"]
        ]
        assert oid not in open_ids
        processed = c.post(
            f"{server}/api/ProcessedOrders/SearchProcessedOrders",
            headers=h,
            json={"request": {"DateField": "processed", "PageNumber": 1, "ResultsPerPage": 50}},
        ).json()
        assert [p["pkOrderID"] for p in processed["ProcessedOrders"]["Data"]] == [oid]
        assert processed["ProcessedOrders"]["Data"][0]["PostalTrackingNumber"] == "WHL1234"
        if sku in {p.sku for p in emu.world.products if not p.is_bundle}:
            r = c.post(
                f"{server}/api/Stock/SetStockLevel",
                headers=h,
                json={
                    "stockLevels": [{"SKU": sku, "LocationId": "00000000-0000-0000-0000-000000000000", "Level": 17}],
                    "changeSource": "fulfil",
                },
            )
            assert r.json()[0]["StockLevel"] == 17
            assert emu.linnworks.inspect()["stock"][f"{sku}@00000000-0000-0000-0000-000000000000"] == 17


def test_linnworks_per_method_limit_and_faults(emulators: Emulators) -> None:
    emu = emulators
    with httpx.Client() as c:
        token, server = lw_login(emu, c)
        h = {"Authorization": token}
        statuses = [c.post(f"{server}/api/PostalServices/GetPostalServices", headers=h).status_code for _ in range(151)]
        assert statuses[:150] == [200] * 150 and statuses[150] == 429
        last = c.post(f"{server}/api/PostalServices/GetPostalServices", headers=h)
        assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
        # Another method has its own budget.
        assert c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={"entriesPerPage": 1}).status_code == 200
        faults(emu, "linnworks", error_next=1, error_status=503)
        assert c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}).status_code == 503
        faults(emu, "linnworks", expire_tokens=True)
        assert c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}).status_code == 401
        token, _ = lw_login(emu, c)
        h = {"Authorization": token}
        faults(emu, "linnworks", malformed_next=1)
        with pytest.raises(ValueError):
            c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}).json()
        faults(emu, "linnworks", reset_next=1)
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={})
        faults(emu, "linnworks", timeout_next=1, timeout_s=2)
        with pytest.raises(httpx.ReadTimeout):
            c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}, timeout=0.5)
        faults(emu, "linnworks", latency_ms=0, throttle_next=1)
        assert c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}).status_code == 429

        # `pass_next` lets that many calls through before the fault strikes; `apply_pending` carries out at once a
        # call held past the client's timeout (it answers only when the call is applied).
        order = next(iter(emu.linnworks.orders))
        post = {"orderId": order, "info": {"TrackingNumber": "HELD1"}}
        faults(emu, "linnworks", pass_next=1, timeout_next=1, timeout_s=120, only_path="Orders/SetOrderShippingInfo")
        assert c.post(f"{server}/api/Orders/GetOpenOrders", headers=h, json={}).status_code == 200  # other path
        first = c.post(
            f"{server}/api/Orders/SetOrderShippingInfo",
            headers=h,
            json={**post, "info": {"TrackingNumber": "PASS1"}},
            timeout=5,
        )
        assert first.status_code == 200, first.text
        with pytest.raises(httpx.ReadTimeout):
            c.post(f"{server}/api/Orders/SetOrderShippingInfo", headers=h, json=post, timeout=0.5)
        assert "HELD1" not in str(emu.linnworks.inspect()["shipping_info"].get(order))
        c.post(f"{server}/_emulator/apply_pending", timeout=10).raise_for_status()
        assert emu.linnworks.recorder.calls[-1].status == 200
        assert [i["TrackingNumber"] for i in emu.linnworks.inspect()["shipping_info"][order]] == ["PASS1", "HELD1"]


# -- Cin7 ------------------------------------------------------------------------------------------------


def test_cin7_auth_pages_limit_and_error_shapes(emulators: Emulators) -> None:
    emu = emulators
    base = emu.url("cin7")
    with httpx.Client() as c:
        bad = c.get(f"{base}me", headers={"api-auth-accountid": "x", "api-auth-applicationkey": "y"})
        assert bad.status_code == 403 and bad.json()[0].keys() == {"ErrorCode", "Exception"}
        ids, page = [], 1
        while True:
            body = c.get(f"{base}saleList", params={"Page": page, "Limit": 7}, headers=CIN7_HEADERS).json()
            ids += [s["SaleID"] for s in body["SaleList"]]
            if page * 7 >= body["Total"]:
                break
            page += 1
        assert len(set(ids)) == body["Total"] == 40
        assert c.get(f"{base.lower()}SALELIST", headers=CIN7_HEADERS).status_code == 200  # paths are case-blind
        assert c.get(f"{base}SaleList", headers=CIN7_HEADERS).status_code == 200
        sale = c.get(f"{base}sale", params={"ID": ids[0]}, headers=CIN7_HEADERS).json()
        assert sale["ShippingAddress"]["Postcode"] is not None and sale["Order"]["Lines"]
        shipped = c.post(
            f"{base}sale/fulfilment/ship",
            headers=CIN7_HEADERS,
            json={
                "TaskID": ids[0],
                "Status": "AUTHORISED",
                "Lines": [
                    {
                        "ShipmentDate": "2026-11-20",
                        "Carrier": "Whistl",
                        "Box": "1",
                        "TrackingNumber": "WHL9",
                        "TrackingURL": "",
                        "IsShipped": True,
                    }
                ],
            },
        )
        assert (
            shipped.status_code == 200
            and emu.cin7.inspect()["shipments"][ids[0]][0]["Lines"][0]["TrackingNumber"] == "WHL9"
        )
        again = {"TaskID": ids[0], "Status": "AUTHORISED", "Lines": [{"ShipmentDate": "2026-11-20", "Carrier": "W"}]}
        twice = c.post(f"{base}sale/fulfilment/ship", headers=CIN7_HEADERS, json=again)
        assert twice.status_code == 400 and "already authorised" in twice.json()[0]["Exception"]
        # What Cin7 requires is refused when missing, in its own error shape.
        refusals = [
            c.get(f"{base}sale", headers=CIN7_HEADERS),
            c.post(f"{base}sale/fulfilment/ship", headers=CIN7_HEADERS, json={"TaskID": ids[2], "Lines": []}),
            c.post(f"{base}stockadjustment", headers=CIN7_HEADERS, json={"Status": "COMPLETED", "Lines": []}),
            c.get(f"{base}saleList", params={"Limit": 1001}, headers=CIN7_HEADERS),
            c.get(f"{base}saleList", params={"Status": "LOST"}, headers=CIN7_HEADERS),
        ]
        for r in refusals:
            assert r.status_code == 400 and r.json()[0]["ErrorCode"] == 400, r.text
        void = c.delete(f"{base}sale", params={"ID": ids[1], "Void": "true"}, headers=CIN7_HEADERS)
        assert void.json()["Status"] == "VOIDED"
        sku = sorted(emu.cin7.available)[0]
        adj = c.post(
            f"{base}stockadjustment",
            headers=CIN7_HEADERS,
            json={"EffectiveDate": "2026-11-20", "Status": "COMPLETED", "Lines": [{"SKU": sku, "Quantity": 33}]},
        )
        assert adj.json()["ExistingStockLines"][0]["Adjustment"] == 33
        avail = c.get(f"{base}ref/productavailability", params={"Sku": sku}, headers=CIN7_HEADERS).json()
        assert avail["ProductAvailabilityList"][0]["Available"] == 33
        # 60 calls a minute: this test has made 16 calls so far.
        statuses = [c.get(f"{base}me", headers=CIN7_HEADERS).status_code for _ in range(60)]
        assert statuses.count(429) >= 1 and statuses[:35] == [200] * 35
        limited = c.get(f"{base}me", headers=CIN7_HEADERS)
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        faults(emu, "cin7", throttle_503=True)
        old = c.get(f"{base}me", headers=CIN7_HEADERS)
        assert old.status_code == 503 and "Retry-After" not in old.headers
        assert "60 calls per minute" in old.json()[0]["Exception"]


def test_cin7_error_code_in_a_200(emulators: Emulators) -> None:
    faults(emulators, "cin7", error_in_200_next=1)
    r = httpx.get(f"{emulators.url('cin7')}saleList", headers=CIN7_HEADERS)
    assert r.status_code == 200 and r.json()[0]["ErrorCode"] == 500


# -- Shopify ---------------------------------------------------------------------------------------------


def test_shopify_link_pagination_and_page_info_rules(emulators: Emulators) -> None:
    emu = emulators
    base = emu.url("shopify")
    with httpx.Client() as c:
        assert c.get(f"{base}orders.json").status_code == 401
        r = c.get(
            f"{base}orders.json",
            params={"status": "any", "limit": 9, "order": "updated_at asc", "updated_at_min": "2000-01-01T00:00:00Z"},
            headers=SHOP_HEADERS,
        )
        ids = [o["id"] for o in r.json()["orders"]]
        assert re.fullmatch(r"\d+/40", r.headers["X-Shopify-Shop-Api-Call-Limit"])
        while "next" in r.links:
            nxt = r.links["next"]["url"]
            refused = c.get(nxt + "&created_at_min=2000-01-01", headers=SHOP_HEADERS)
            assert (
                refused.status_code == 400 and "cannot be passed when page_info is present" in refused.json()["errors"]
            )
            r = c.get(nxt, headers=SHOP_HEADERS)
            ids += [o["id"] for o in r.json()["orders"]]
        assert len(ids) == len(set(ids)) == 40
        single = c.get(f"{base}orders.json", params={"limit": 250, "status": "any"}, headers=SHOP_HEADERS)
        assert "Link" not in single.headers


def test_shopify_bucket_fulfilment_inventory_and_graphql(emulators: Emulators) -> None:
    emu = emulators
    base = emu.url("shopify")
    with httpx.Client() as c:
        oid = c.get(f"{base}orders.json", params={"limit": 1}, headers=SHOP_HEADERS).json()["orders"][0]["id"]
        fo = c.get(f"{base}orders/{oid}/fulfillment_orders.json", headers=SHOP_HEADERS).json()["fulfillment_orders"][0]
        line = fo["line_items"][0]
        made = c.post(
            f"{base}fulfillments.json",
            headers=SHOP_HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [
                        {
                            "fulfillment_order_id": fo["id"],
                            "fulfillment_order_line_items": [{"id": line["id"], "quantity": 1}],
                        }
                    ],
                    "tracking_info": {"number": "WHL55", "company": "Whistl"},
                    "notify_customer": False,
                }
            },
        )
        assert made.status_code == 201 and made.json()["fulfillment"]["tracking_number"] == "WHL55"
        too_many = c.post(
            f"{base}fulfillments.json",
            headers=SHOP_HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [
                        {
                            "fulfillment_order_id": fo["id"],
                            "fulfillment_order_line_items": [{"id": line["id"], "quantity": line["quantity"] + 5}],
                        }
                    ]
                }
            },
        )
        assert too_many.status_code == 422
        loc = c.get(f"{base}locations.json", headers=SHOP_HEADERS).json()["locations"][0]["id"]
        item = next(iter(emu.shopify.inventory_items))
        set_r = c.post(
            f"{base}inventory_levels/set.json",
            headers=SHOP_HEADERS,
            json={"location_id": loc, "inventory_item_id": item, "available": 12},
        )
        assert set_r.json()["inventory_level"]["available"] == 12
        levels = c.get(
            f"{base}inventory_levels.json",
            params={"inventory_item_ids": item, "location_ids": loc},
            headers=SHOP_HEADERS,
        ).json()["inventory_levels"]
        assert levels[0]["available"] == 12
        gql = c.post(
            f"{base}graphql.json",
            headers=SHOP_HEADERS,
            json={
                "query": SET_QUANTITIES,
                "variables": {
                    "input": {
                        "name": "available",
                        "reason": "correction",
                        "ignoreCompareQuantity": True,
                        "quantities": [
                            {
                                "inventoryItemId": f"gid://shopify/InventoryItem/{item}",
                                "locationId": f"gid://shopify/Location/{loc}",
                                "quantity": 4,
                            }
                        ],
                    }
                },
            },
        )
        body = gql.json()
        assert body["data"]["inventorySetQuantities"]["userErrors"] == []
        status = body["extensions"]["cost"]["throttleStatus"]
        assert (status["maximumAvailable"], status["restoreRate"]) == (2000.0, 100.0), "Standard plan: 100 points/s"
        assert emu.shopify.levels[(item, loc)] == 4
        # The REST bucket: 40 deep, so a burst of 45 overflows with 429 + Retry-After 2.0.
        burst = [c.get(f"{base}locations.json", headers=SHOP_HEADERS) for _ in range(45)]
        throttled = [r for r in burst if r.status_code == 429]
        assert throttled and throttled[0].headers["Retry-After"] == "2.0"
        assert throttled[0].headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"
        assert "Exceeded 2 calls per second" in throttled[0].json()["errors"]
        # GraphQL cost bucket: drain it and get THROTTLED with no data.
        emu.shopify.gql_bucket.level, emu.shopify.gql_bucket._at = emu.shopify.gql_bucket.capacity, time.monotonic() + 5
        t = c.post(
            f"{base}graphql.json",
            headers=SHOP_HEADERS,
            json={"query": "inventorySetQuantities", "variables": {"input": {"quantities": []}}},
        )
        assert (
            t.status_code == 200
            and t.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
            and "data" not in t.json()
        )


def test_shopify_honours_order_filters_versions_and_the_calls_other_apps_make(emulators: Emulators) -> None:
    """Filters that narrow orders.json really narrow it (and count.json agrees); versions are served and echoed
    as Shopify does; inventory_levels/adjust.json is served."""
    emu = emulators
    base = emu.url("shopify")
    emu.shopify.bucket.rate = 1e9  # this test is about answers, not the call limit
    with httpx.Client(headers=SHOP_HEADERS) as c:

        def refs(**params: object) -> list[int]:
            r = c.get(f"{base}orders.json", params={"status": "any", "limit": 250, **params})
            assert r.status_code == 200, r.text
            return [o["id"] for o in r.json()["orders"]]

        everything = refs()
        assert len(everything) == len(emu.shopify.orders)
        ids = sorted(everything)
        assert refs(since_id=ids[9]) == ids[10:]
        assert sorted(refs(ids=f"{ids[0]},{ids[3]}")) == [ids[0], ids[3]]
        paid = {i for i, o in emu.shopify.orders.items() if o.paid}
        assert paid and set(refs(financial_status="paid")) == paid
        assert set(refs(financial_status="pending")) == set(ids) - paid
        # Fulfil one order in full: fulfillment_status tells it apart.
        done = ids[0]
        emu.shopify.fulfillable[done] = dict.fromkeys(emu.shopify.fulfillable[done], 0)
        assert refs(fulfillment_status="shipped") == [done]
        assert done not in refs(fulfillment_status="unshipped")
        assert c.get(f"{base}orders/count.json", params={"status": "any"}).json() == {"count": len(ids)}
        count = c.get(f"{base}orders/count.json", params={"status": "any", "financial_status": "paid"})
        assert count.json() == {"count": len(paid)}
        assert c.get(f"{base}orders.json", params={"financial_status": "rich"}).status_code == 422

        # Versions: a supported one is served and echoed; an old release falls forward; nonsense is Not Found.
        root = base.split("/admin/api/")[0]
        served = c.get(f"{root}/admin/api/2026-07/locations.json")
        assert served.status_code == 200 and served.headers["X-Shopify-API-Version"] == "2026-07"
        old = c.get(f"{root}/admin/api/2024-01/locations.json")
        assert old.status_code == 200 and old.headers["X-Shopify-API-Version"] == "2025-10"
        for bad in ("1999-99", "2026-02", "latest"):
            assert c.get(f"{root}/admin/api/{bad}/locations.json").status_code == 404

        item, loc = next(iter(emu.shopify.levels))
        before = emu.shopify.levels[(item, loc)]
        body = {"inventory_item_id": item, "location_id": loc, "available_adjustment": -3}
        adjusted = c.post(f"{base}inventory_levels/adjust.json", json=body)
        assert adjusted.status_code == 200 and adjusted.json()["inventory_level"]["available"] == before - 3
        missing = c.post(f"{base}inventory_levels/adjust.json", json={"inventory_item_id": item, "location_id": loc})
        assert missing.status_code == 422


# -- BigCommerce -----------------------------------------------------------------------------------------


def test_shopify_shop_scopes_and_deletion_events_a_client_checks_first(emulators: Emulators) -> None:
    """`shop.json`, the unversioned `/admin/oauth/access_scopes.json` and `events.json?filter=Order&verb=destroy`
    answer as Shopify documents them; an order the merchant deleted leaves `orders.json` and shows as an event."""
    emu = emulators
    base = emu.url("shopify")
    root = base.split("/admin/api/")[0]
    emu.shopify.bucket.rate = 1e9
    with httpx.Client(headers=SHOP_HEADERS) as c:
        shop = c.get(f"{base}shop.json")
        assert shop.status_code == 200 and shop.json()["shop"]["currency"] == "GBP"
        scopes = c.get(f"{root}/admin/oauth/access_scopes.json").json()["access_scopes"]
        assert {"read_orders", "write_fulfillments", "write_inventory"} <= {s["handle"] for s in scopes}
        assert (
            c.get(f"{root}/admin/oauth/access_scopes.json", headers={"X-Shopify-Access-Token": "x"}).status_code == 401
        )
        assert c.get(f"{base}events.json", params={"filter": "Order", "verb": "destroy"}).json() == {"events": []}
        gone = sorted(emu.shopify.orders)[0]
        emu.shopify.control("destroy", {"order_id": gone})
        events = c.get(f"{base}events.json", params={"filter": "Order", "verb": "destroy"}).json()["events"]
        assert [(e["subject_id"], e["verb"], e["subject_type"]) for e in events] == [(gone, "destroy", "Order")]
        assert c.get(f"{base}events.json", params={"filter": "Product"}).json()["events"] == []
        ids = [o["id"] for o in c.get(f"{base}orders.json", params={"status": "any", "limit": 250}).json()["orders"]]
        assert gone not in ids and len(ids) == len(emu.shopify.orders)


def test_bigcommerce_orders_pages_shipments_inventory_and_quota(emulators: Emulators) -> None:
    emu = emulators
    base = emu.url("bigcommerce")
    with httpx.Client() as c:
        assert c.get(f"{base}v2/orders", headers={"X-Auth-Token": "nope"}).status_code == 401
        ids, page = [], 1
        while True:
            r = c.get(f"{base}v2/orders", params={"page": page, "limit": 16}, headers=BC_HEADERS)
            if r.status_code == 204:
                assert r.content == b""
                break
            assert r.headers["X-Rate-Limit-Requests-Quota"] == "150"
            assert int(r.headers["X-Rate-Limit-Requests-Left"]) < 150
            ids += [o["id"] for o in r.json()]
            page += 1
        assert len(set(ids)) == 40
        oid = ids[0]
        products = c.get(f"{base}v2/orders/{oid}/products", headers=BC_HEADERS).json()
        addr = c.get(f"{base}v2/orders/{oid}/shipping_addresses", headers=BC_HEADERS).json()[0]
        first = products[0]
        ship = c.post(
            f"{base}v2/orders/{oid}/shipments",
            headers=BC_HEADERS,
            json={
                "order_address_id": addr["id"],
                "tracking_number": "WHL77",
                "items": [{"order_product_id": first["id"], "quantity": 1}],
            },
        )
        assert ship.status_code == 201
        status = c.get(f"{base}v2/orders/{oid}", headers=BC_HEADERS).json()["status_id"]
        assert status == (2 if len(products) == 1 and first["quantity"] == 1 else 3)
        sku = next(
            s for s in sorted({s for s, _ in emu.bigcommerce.inventory}) if not emu.bigcommerce.tracked_by_product(s)
        )
        adj = c.put(
            f"{base}v3/inventory/adjustments/absolute",
            headers=BC_HEADERS,
            json={"reason": "fulfil", "items": [{"location_id": 1, "sku": sku, "quantity": 9}]},
        )
        assert "transaction_id" in adj.json()
        inv = c.get(f"{base}v3/inventory/items", params={"sku:in": sku}, headers=BC_HEADERS).json()
        assert inv["data"][0]["locations"][0]["available_to_sell"] == 9 and inv["meta"]["pagination"]["total"] == 1
        bad = c.put(f"{base}v3/inventory/adjustments/absolute", headers=BC_HEADERS, json={"items": []})
        assert bad.status_code == 422
        statuses = [c.get(f"{base}v2/orders/count", headers=BC_HEADERS) for _ in range(150)]
        over = [r for r in statuses if r.status_code == 429]
        assert over and int(over[0].headers["X-Rate-Limit-Time-Reset-Ms"]) > 0
        faults(emu, "bigcommerce", bare_429_next=1)
        bare = c.get(f"{base}v2/orders/count", headers=BC_HEADERS)
        assert bare.status_code == 429 and "X-Rate-Limit-Requests-Quota" not in bare.headers


def test_bigcommerce_inventory_as_the_published_spec_has_it(emulators: Emulators) -> None:
    """Adjustments name items by `sku`, `variant_id` or `product_id` (the spec's oneOf), and a store refuses the
    one its tracking does not use; the `:in` filters narrow; pagination links are filled in."""
    emu = emulators
    bc = emu.bigcommerce
    base = emu.url("bigcommerce")
    skus = sorted({s for s, _ in bc.inventory})
    by_variant = next(s for s in skus if not bc.tracked_by_product(s))
    by_product = next(s for s in skus if bc.tracked_by_product(s))
    variant, product = bc.world.variant_ids[by_variant], bc.world.variant_ids[by_product] // 10
    url = f"{base}v3/inventory/adjustments/absolute"
    with httpx.Client(headers=BC_HEADERS) as c:
        ok = c.put(
            url,
            json={
                "items": [
                    {"location_id": 1, "variant_id": variant, "quantity": 5},
                    {"location_id": 2, "product_id": product, "quantity": 6},
                ]
            },
        )
        assert ok.status_code == 200, ok.text
        assert bc.inventory[(by_variant, 1)] == 5 and bc.inventory[(bc.product_skus[product][0], 2)] == 6
        refused = {
            "tracked by product": {"location_id": 1, "sku": by_product, "quantity": 1},
            "tracked by variant": {"location_id": 1, "product_id": variant // 10, "quantity": 1},
            "exactly one of": {"location_id": 1, "sku": by_variant, "variant_id": variant, "quantity": 1},
        }
        for words, item in refused.items():
            r = c.put(url, json={"items": [item]})
            assert r.status_code == 422 and words in r.json()["title"], (words, r.text)
        assert bc.inventory[(by_product, 1)] == 0, "a refused batch changes nothing"

        def listed(**params: object) -> dict:
            r = c.get(f"{base}v3/inventory/items", params={"limit": 1000, **params})
            assert r.status_code == 200, r.text
            return r.json()

        assert [d["identity"]["sku"] for d in listed(**{"variant_id:in": variant})["data"]] == [by_variant]
        assert [d["identity"]["sku"] for d in listed(**{"product_id:in": product})["data"]] == bc.product_skus[product]
        only = listed(**{"location_id:in": 2})["data"]
        assert only and {loc["location_id"] for d in only for loc in d["locations"]} == {2}
        assert {
            loc["location_code"] for d in listed(**{"location_code:in": "WHISTL"})["data"] for loc in d["locations"]
        } == {"WHISTL"}
        page = c.get(f"{base}v3/inventory/items", params={"limit": 10, "page": 2}).json()["meta"]["pagination"]
        assert page["links"] == {
            "previous": "?page=1&limit=10",
            "current": "?page=2&limit=10",
            "next": "?page=3&limit=10",
        }


# -- Peoplevox -------------------------------------------------------------------------------------------


def test_bigcommerce_catalogue_customers_and_unknown_routes_as_other_clients_use_them(emulators: Emulators) -> None:
    """Products carry the published model's fields (price, inventory_level, dates, variants on request) and honour
    `date_modified:min` and `sort`; `/v3/customers` pages, filters and sorts; a route the store lacks answers
    BigCommerce's JSON error, never plain text. Expected values from the emulator's own world."""
    emu = emulators
    bc = emu.bigcommerce
    base = emu.url("bigcommerce")
    with httpx.Client(headers=BC_HEADERS) as c:
        page = c.get(f"{base}v3/catalog/products", params={"limit": 250, "include": "variants"}).json()
        assert page["meta"]["pagination"]["total"] == len(bc.product_skus)
        first = page["data"][0]
        assert {"id", "name", "sku", "price", "inventory_level", "date_modified", "date_created", "variants"} <= set(
            first
        )
        assert [v["sku"] for v in first["variants"]] == bc.product_skus[first["id"]]
        assert first["price"] == bc.world.by_sku[first["sku"]].price
        # A stock change modifies its product: only that one is newer than the world's start.
        sku = first["variants"][0]["sku"]
        loc = next(loc for (s, loc) in bc.inventory if s == sku)
        r = c.put(
            f"{base}v3/inventory/adjustments/absolute",
            json={
                "reason": "t",
                "items": [{"location_id": loc, "variant_id": bc.world.variant_ids[sku], "quantity": 7}],
            }
            if not bc.tracked_by_product(sku)
            else {"reason": "t", "items": [{"location_id": loc, "product_id": first["id"], "quantity": 7}]},
        )
        assert r.status_code == 200, r.text
        since = (bc.world.start + timedelta(seconds=1)).isoformat()
        changed = c.get(f"{base}v3/catalog/products", params={"date_modified:min": since}).json()["data"]
        assert [p["id"] for p in changed] == [first["id"]] and changed[0]["inventory_level"] >= 7
        by_price = c.get(f"{base}v3/catalog/products", params={"sort": "price", "direction": "desc", "limit": 250})
        prices = [p["price"] for p in by_price.json()["data"]]
        assert prices == sorted(prices, reverse=True)
        assert c.get(f"{base}v3/catalog/products", params={"sort": "colour"}).status_code == 422
        narrow = c.get(f"{base}v3/catalog/products", params={"include_fields": "sku,inventory_tracking", "limit": 5})
        assert {tuple(sorted(p)) for p in narrow.json()["data"]} == {("id", "inventory_tracking", "sku")}

        emails = {o.address.email.strip().lower() for o in bc.orders.values() if o.address.email.strip()}
        customers = c.get(f"{base}v3/customers", params={"limit": 250, "sort": "date_modified:desc"}).json()
        assert {x["email"] for x in customers["data"]} == emails
        assert customers["meta"]["pagination"]["total"] == len(emails)
        modified = [x["date_modified"] for x in customers["data"]]
        assert modified == sorted(modified, reverse=True)
        newest = modified[0]
        recent = c.get(f"{base}v3/customers", params={"date_modified:min": newest}).json()["data"]
        assert recent and all(x["date_modified"] >= newest for x in recent)

        for path in ("v3/no/such/route", "v2/nothing_here"):
            missing = c.get(f"{base}{path}")
            assert missing.status_code == 404 and missing.headers["content-type"].endswith("json"), missing.text
            assert missing.json()  # a JSON body: v3's problem object, v2's error list


def test_peoplevox_soap_session_getdata_savedata(emulators: Emulators) -> None:
    emu = emulators
    url = emu.url("peoplevox")
    with httpx.Client() as c:

        def post(method: str, inner: str, session: str | None = None) -> httpx.Response:
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"http://www.peoplevox.net/{method}"'}
            return c.post(url, headers=headers, content=soap(method, inner, session))

        pw = base64.b64encode(b"wrong").decode()
        r = post(
            "Authenticate", f"<clientId>brand01</clientId><username>integration</username><password>{pw}</password>"
        )
        assert r.status_code == 200 and soap_result(r.text)[0] == -1
        pw = base64.b64encode(b"pvx-password").decode()
        r = post(
            "Authenticate", f"<clientId>brand01</clientId><username>integration</username><password>{pw}</password>"
        )
        rid, total, detail = soap_result(r.text)
        assert (rid, total) == (0, 1) and detail.startswith("brand01,")
        session = detail.split(",", 1)[1]

        def get(template: str, page: int, per: int, clause: str = "") -> tuple[int, int, str]:
            inner = (
                f"<getRequest><TemplateName>{template}</TemplateName><PageNo>{page}</PageNo>"
                f"<ItemsPerPage>{per}</ItemsPerPage><SearchClause>{clause}</SearchClause></getRequest>"
            )
            return soap_result(post("GetData", inner, session).text)

        rows, page = [], 1
        while True:
            rid, total, detail = get("Item types", page, 100)
            assert rid == 0
            rows += list(csv.DictReader(io.StringIO(detail)))
            if page * 100 >= total:
                break
            page += 1
        assert len(rows) == total == len(emu.world.wms_catalogue)
        sku = rows[0]["ItemCode"]
        rid, total, detail = get("Available", 1, 10, f'ItemCode == "{sku}"')
        assert total == 1 and next(csv.DictReader(io.StringIO(detail)))["ItemCode"] == sku
        order_csv = (
            "SalesOrderNumber,Customer,ShippingAddressLine1,ShippingAddressCity,ShippingAddressPostcode,"
            "ShippingAddressCountry,ServiceType\nLW100001,Ann Smith,1 High Street,Leeds,LS1 1AA,GB,"
            "DPD Next Day\n"
        )
        save = (
            f"<saveRequest><TemplateName>Sales orders</TemplateName><CsvData>{order_csv}</CsvData>"
            "<Action>0</Action></saveRequest>"
        )
        rid, total, _ = soap_result(post("SaveData", save, session).text)
        assert (rid, total) == (0, 1) and emu.peoplevox.inspect()["saves"] == {"LW100001": 1}
        bad_item = (
            "<saveRequest><TemplateName>Sales order items</TemplateName><CsvData>SalesOrderNumber,ItemCode,"
            "QuantityOrdered\nLW100001,NOPE-SKU,1\n</CsvData><Action>0</Action></saveRequest>"
        )
        answer = post("SaveData", bad_item, session).text
        rid, _, detail = soap_result(answer)
        assert rid == -1 and "NOPE-SKU" in detail
        assert "<Statuses><IntegrationStatusResponse><Reference>LW100001</Reference><Status>Error</Status>" in answer
        faults(emu, "peoplevox", expire_tokens=True)
        rid, _, detail = get("Item types", 1, 1)
        assert rid == -1 and "Session" in detail


# -- Whistl over SFTP ------------------------------------------------------------------------------------


def test_whistl_over_sftp_accepts_rejects_and_despatches(emulators: Emulators) -> None:
    emu = emulators
    transport = paramiko.Transport(("127.0.0.1", emu.ports["whistl_sftp"]))
    with pytest.raises(paramiko.AuthenticationException):
        transport.connect(username="brand", password="wrong")
    transport.close()
    transport = paramiko.Transport(("127.0.0.1", emu.ports["whistl_sftp"]))
    transport.connect(username="brand", password=emu.config.sftp_password)
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    good_sku, good_sku2 = emu.world.wms_catalogue[:2]
    emu.whistl.on_hand[good_sku] = 10
    header = (
        "order_reference,order_date,service_code,ship_name,ship_address1,ship_address2,ship_address3,"
        "ship_city,ship_postcode,ship_country,ship_phone,ship_email,line_number,sku,quantity\n"
    )
    body = header + (
        f"A1,2026-11-20T10:00:00Z,WHISTL-T24,Ann,1 High St,,,Leeds,LS1 1AA,GB,07700900123,a@x.uk,1,{good_sku},2\n"
        f"A1,2026-11-20T10:00:00Z,WHISTL-T24,Ann,1 High St,,,Leeds,LS1 1AA,GB,07700900123,a@x.uk,2,{good_sku2},1\n"
        f"A2,2026-11-20T10:00:00Z,WHISTL-T24,Bob,2 High St,,,Leeds,LS1 1AA,GB,,b@x.uk,1,{good_sku},1\n"
        f"A3,2026-11-20T10:00:00Z,EXPRESS,Cy,3 High St,,,Leeds,LS1 1AA,GB,07700900124,c@x.uk,1,{good_sku},1\n"
        f"A4,2026-11-20T10:00:00Z,WHISTL-T48,Di,4 High St,,,Leeds,LS1 1AA,GB,07700900125,d@x.uk,1,BAD-SKU,1\n"
    )
    with sftp.open("/in/.ord_1.csv.tmp", "wb") as fh:
        fh.write(body.encode())
    assert emu.whistl.step()["rejected"] == 0, "a temporary name must not be picked up"
    sftp.posix_rename("/in/.ord_1.csv.tmp", "/in/ord_20261120100000_1.csv")
    emu.whistl.step()
    reasons = {r["order_reference"]: r["reason_code"] for r in emu.whistl.inspect()["rejections"]}
    assert reasons == {"A2": "PHONE_REQUIRED", "A3": "SERVICE_CODE_INVALID", "A4": "SKU_INVALID"}
    assert emu.whistl.allocated[good_sku] == 2
    with sftp.open("/in/ord_20261120100001_2.csv", "wb") as fh:  # the same order again
        fh.write((header + body.splitlines()[1] + "\n").encode())
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"]["A1"] == 2
    assert emu.whistl.inspect()["rejections"][-1]["reason_code"] == "DUPLICATE_ORDER"
    emu.whistl.step()
    names = sftp.listdir("/out")
    shp = [n for n in names if n.startswith("shp_")]
    assert shp and any(n.startswith("err_") for n in names)
    with sftp.open(f"/out/{shp[0]}", "rb") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read().decode())))
    assert {r["order_reference"] for r in rows} == {"A1"}
    assert sum(int(r["quantity_despatched"]) for r in rows) == 3 or rows[0]["partial_flag"] == "Y"
    assert all(re.fullmatch(r"WHL\d{15}", r["tracking_number"]) for r in rows)
    assert emu.whistl.on_hand[good_sku] == 10 - sum(int(r["quantity_despatched"]) for r in rows if r["sku"] == good_sku)
    snap = emu.whistl.snapshot()
    with sftp.open(f"/out/{snap}", "rb") as fh:
        stock = {r["sku"]: r for r in csv.DictReader(io.StringIO(fh.read().decode()))}
    assert (
        len(stock) == len(emu.world.wms_catalogue) and int(stock[good_sku]["on_hand"]) == emu.whistl.on_hand[good_sku]
    )
    transport.close()


def test_whistl_cancellation_honours_picking_cutoff(emulators: Emulators) -> None:
    emu = emulators
    sku = emu.world.wms_catalogue[0]
    inbox = emu.whistl.inbox
    row = f"2026-11-20T10:00:00Z,WHISTL-T48,Ann,1 High St,,,Leeds,LS1 1AA,GB,07700900123,a@x.uk,1,{sku},1"
    header = (
        "order_reference,order_date,service_code,ship_name,ship_address1,ship_address2,ship_address3,"
        "ship_city,ship_postcode,ship_country,ship_phone,ship_email,line_number,sku,quantity\n"
    )
    (inbox / "ord_1.csv").write_text(header + f"C1,{row}\nC2,{row}\n")
    emu.whistl.step()  # both received, then moved to picking by the same shift
    emu.whistl.orders["C1"].stage = "received"  # C1 not yet picked
    (inbox / "can_1.csv").write_text("order_reference,reason\nC1,customer\nC2,customer\nC9,customer\n")
    result = emu.whistl.step()
    assert result["cancellations"] == {"C1": "CANCELLED", "C2": "CANCEL_TOO_LATE", "C9": "UNKNOWN_ORDER"}


def test_control_endpoints_spawn_and_inspect(emulators: Emulators) -> None:
    emu = emulators
    port = emu.ports["linnworks"]
    before = emu.linnworks.inspect()["open_orders"]
    r = httpx.post(f"http://127.0.0.1:{port}/_emulator/action/spawn", json={"n": 5})
    assert len(r.json()["order_ids"]) == 5
    assert httpx.get(f"http://127.0.0.1:{port}/_emulator/state").json()["open_orders"] == before + 5
    assert httpx.post(f"http://127.0.0.1:{port}/_emulator/faults", json={"nonsense": 1}).status_code == 400
    state = httpx.get(f"http://127.0.0.1:{emu.ports['whistl']}/_emulator/state").json()
    assert state["receipts"] == {}


def test_latency_and_graphql_throttle_status_switches(emulators: Emulators) -> None:
    emu = emulators
    base = emu.url("shopify")
    faults(emu, "shopify", latency_ms=300)
    start = time.perf_counter()
    httpx.get(f"{base}locations.json", headers=SHOP_HEADERS)
    assert time.perf_counter() - start >= 0.3
    faults(emu, "shopify", latency_ms=0, graphql_throttle_status=429)
    emu.shopify.gql_bucket.level, emu.shopify.gql_bucket._at = emu.shopify.gql_bucket.capacity, time.monotonic() + 5
    r = httpx.post(f"{base}graphql.json", headers=SHOP_HEADERS, json={"query": "x", "variables": {}})
    assert r.status_code == 429 and r.json()["errors"][0]["message"] == "Throttled"


def test_rate_scale_shortens_the_window_for_fast_tests(tmp_path) -> None:
    from emulators.server import EmulatorConfig

    ports = dict.fromkeys(("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp"), 0)
    with Emulators(EmulatorConfig(data_dir=tmp_path, n_skus=50, n_orders=5, rate_scale=20, ports=ports)) as emu:
        with httpx.Client() as c:
            statuses = [c.get(f"{emu.url('cin7')}me", headers=CIN7_HEADERS).status_code for _ in range(61)]
            assert statuses[:60] == [200] * 60 and statuses[60] == 429  # still 60 per window...
            time.sleep(3.05)  # ...but the window is 3 s instead of 60
            assert c.get(f"{emu.url('cin7')}me", headers=CIN7_HEADERS).status_code == 200


def test_demo_ticks_bring_new_orders_late_changes_and_warehouse_work(tmp_path) -> None:
    from emulators.server import EmulatorConfig

    ports = dict.fromkeys(("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp"), 0)
    config = EmulatorConfig(data_dir=tmp_path, n_skus=50, n_orders=5, ports=ports, tick_s=0.1, orders_per_tick=2)
    with Emulators(config) as emu:
        seen = {
            "new orders": lambda: len(emu.linnworks.orders) > 5 and len(emu.bigcommerce.orders) > 5,
            "late cancellations": lambda: bool(emu.linnworks.cancelled),
            "late edits": lambda: any(o.updated_at > o.created_at for o in emu.linnworks.orders.values()),
            "stock snapshots": lambda: any(f.startswith("inv_") for f in emu.whistl.files_written),
        }
        deadline = time.monotonic() + 60  # ticks every 0.1 s: a loaded machine only makes them later
        while not all(arrived() for arrived in seen.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [what for what, arrived in seen.items() if not arrived()] == []


def test_peoplevox_is_held_to_its_published_wsdl(emulators: Emulators) -> None:
    """A WSDL-driven SOAP client (zeep) sets itself up from `?wsdl` and authenticates, reads and saves; envelopes
    that break the WSDL (no SOAPAction, an element out of place or order, no session header) get the SOAP Fault
    an ASMX service answers."""
    import zeep

    emu = emulators
    url = emu.url("peoplevox")
    client = zeep.Client(wsdl=f"{url}?wsdl")
    assert client.service._binding_options["address"] == url
    client_id, username, password = emu.peoplevox.credentials
    auth = client.service.Authenticate(
        clientId=client_id, username=username, password=base64.b64encode(password.encode()).decode()
    )
    assert auth.ResponseId == 0
    header = {"UserSessionCredentials": {"UserId": 0, "ClientId": client_id, "SessionId": auth.Detail.split(",")[1]}}
    got = client.service.GetData(
        getRequest={"TemplateName": "Item types", "PageNo": 1, "ItemsPerPage": 5, "SearchClause": ""},
        _soapheaders=header,
    )
    assert got.ResponseId == 0 and got.TotalCount == len(emu.world.wms_catalogue)
    assert len(list(csv.DictReader(io.StringIO(got.Detail)))) == 5
    saved = client.service.SaveData(
        saveRequest={
            "TemplateName": "Sales orders",
            "CsvData": "SalesOrderNumber,Customer,ServiceType\nLW7,Ann,DPD Next Day\nLW8,Bob,Pigeon Post\n",
            "Action": 0,
        },
        _soapheaders=header,
    )
    assert saved.ResponseId == -1 and saved.TotalCount == 1
    assert [(s.Reference, s.Status) for s in saved.Statuses.IntegrationStatusResponse] == [
        ("LW7", "Success"),
        ("LW8", "Error"),
    ]

    session = header["UserSessionCredentials"]["SessionId"]
    good = (
        "<getRequest><TemplateName>Item types</TemplateName><PageNo>1</PageNo><ItemsPerPage>5</ItemsPerPage>"
        "</getRequest>"
    )
    action = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"http://www.peoplevox.net/GetData"'}
    refused = {
        "SOAPAction": (soap("GetData", good, session), {"Content-Type": "text/xml; charset=utf-8"}),
        "not expected": (soap("GetData", "<TemplateName>Item types</TemplateName>" + good, session), action),
        "required before": (
            soap(
                "GetData",
                good.replace(
                    "<PageNo>1</PageNo><ItemsPerPage>5</ItemsPerPage>",
                    "<ItemsPerPage>5</ItemsPerPage><PageNo>1</PageNo>",
                ),
                session,
            ),
            action,
        ),
        "UserSessionCredentials": (soap("GetData", good), action),
        "not an integer": (soap("GetData", good.replace("<PageNo>1", "<PageNo>one"), session), action),
    }
    with httpx.Client() as c:
        assert c.post(url, headers=action, content=soap("GetData", good, session)).status_code == 200
        for words, (envelope, headers) in refused.items():
            r = c.post(url, headers=headers, content=envelope)
            assert r.status_code == 500 and "<soap:Fault><faultcode>soap:Client</faultcode>" in r.text, words
            assert words in r.text, (words, r.text)
