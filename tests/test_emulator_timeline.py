"""The emulated world's own record: Peoplevox works shifts like Whistl's, and `Emulators.timeline()` says when each
order was placed, reached a warehouse, left it and had tracking back in its order system (driven over HTTP)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_emulators_contract import BC_HEADERS, CIN7_HEADERS, SHOP_HEADERS, lw_login, soap, soap_result

from emulators.server import Emulators

ORDER_FILE_HEADER = (
    "order_reference,order_date,service_code,ship_name,ship_address1,ship_address2,ship_address3,"
    "ship_city,ship_postcode,ship_country,ship_phone,ship_email,line_number,sku,quantity\n"
)


def pvx_session(emu: Emulators, client: httpx.Client) -> Callable[[str, str], str]:
    """Log in to Peoplevox over SOAP; a function that makes one call (method, inner XML) and returns the answer."""
    url = emu.url("peoplevox")

    def post(method: str, inner: str, session: str | None = None) -> str:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"http://www.peoplevox.net/{method}"'}
        answer = client.post(url, headers=headers, content=soap(method, inner, session))
        assert answer.status_code == 200, answer.text
        return answer.text

    client_id, user, password = emu.peoplevox.credentials
    pw = base64.b64encode(password.encode()).decode()
    rid, _, detail = soap_result(
        post("Authenticate", f"<clientId>{client_id}</clientId><username>{user}</username><password>{pw}</password>")
    )
    assert rid == 0
    session = detail.split(",", 1)[1]
    return lambda method, inner: post(method, inner, session)


def save(call: Callable[[str, str], str], template: str, csv_data: str) -> None:
    """A SaveData of `csv_data` that Peoplevox accepts in full."""
    inner = (
        f"<saveRequest><TemplateName>{template}</TemplateName><CsvData>{csv_data}</CsvData>"
        "<Action>0</Action></saveRequest>"
    )
    rid, _, detail = soap_result(call("SaveData", inner))
    assert rid == 0, detail


def save_order(call: Callable[[str, str], str], ref: str, items: list[tuple[str, int]]) -> None:
    """Save a sales order and its items, as fulfil sends one."""
    save(
        call,
        "Sales orders",
        "SalesOrderNumber,Customer,ShippingAddressLine1,ShippingAddressCity,ShippingAddressPostcode,"
        f"ShippingAddressCountry,ServiceType\n{ref},Ann Smith,1 High Street,Leeds,LS1 1AA,GB,DPD Next Day\n",
    )
    if items:
        rows = "".join(f"{ref},{sku},{qty},{n}\n" for n, (sku, qty) in enumerate(items, start=1))
        save(call, "Sales order items", f"SalesOrderNumber,ItemCode,QuantityOrdered,Line\n{rows}")


def control(emu: Emulators, system: str, action: str, body: dict[str, Any] | None = None) -> Any:
    """POST an emulator control action; its JSON answer."""
    answer = httpx.post(f"http://127.0.0.1:{emu.ports[system]}/_emulator/action/{action}", json=body or {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def state(emu: Emulators, system: str) -> dict[str, Any]:
    """An emulator's inspection state over HTTP."""
    return httpx.get(f"http://127.0.0.1:{emu.ports[system]}/_emulator/state").json()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll until `condition` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.world(n_orders=4, n_skus=200)
def test_peoplevox_shift_picks_packs_and_despatches_but_never_a_cancelled_order(emulators: Emulators) -> None:
    emu = emulators
    emu.peoplevox.partial_share = 1.0  # every order that can be split is despatched in two parts
    sku1, sku2 = emu.world.wms_catalogue[:2]
    with httpx.Client() as c:
        call = pvx_session(emu, c)
        callback = f"http://127.0.0.1:{emu.ports['peoplevox']}/_emulator/state?order={{SalesOrderNumber}}"
        inner = f"<eventType>TrackingNumberReceived</eventType><callbackUrl>{callback}</callbackUrl>"
        assert soap_result(call("SubscribeEvent", inner))[0] == 0
        save_order(call, "PV-SPLIT", [(sku1, 2), (sku2, 1)])
        save_order(call, "PV-ONE", [(sku1, 1)])  # one unit: nothing to split
        save_order(call, "PV-CANCEL", [(sku2, 3)])
        save_order(call, "PV-BARE", [])  # no items yet: nothing to pick
        save(call, "Sales orders", "SalesOrderNumber,Status\nPV-CANCEL,Cancelled\n")

    seen: dict[str, list[str]] = {ref: [] for ref in ("PV-SPLIT", "PV-ONE", "PV-CANCEL", "PV-BARE")}
    for _ in range(6):
        control(emu, "peoplevox", "step")
        orders = state(emu, "peoplevox")["sales_orders"]
        for ref, statuses in seen.items():
            statuses.append(orders[ref]["Status"])
    assert seen["PV-SPLIT"] == ["Picking", "Packed", "Partially despatched", "Despatched", "Despatched", "Despatched"]
    assert seen["PV-ONE"] == ["Picking", "Packed", "Despatched", "Despatched", "Despatched", "Despatched"]
    assert set(seen["PV-CANCEL"]) == {"Cancelled"} and set(seen["PV-BARE"]) == {"New"}

    rows = state(emu, "peoplevox")["despatches"]
    assert {r["SalesOrderNumber"] for r in rows} == {"PV-SPLIT", "PV-ONE"}
    split = [r for r in rows if r["SalesOrderNumber"] == "PV-SPLIT"]
    numbers = {r["DespatchNumber"]: r["TrackingNumber"] for r in split}
    assert len(numbers) == 2 and len(set(numbers.values())) == 2 and all(numbers.values())
    shipped: dict[str, int] = {}
    for r in split:
        shipped[r["ItemCode"]] = shipped.get(r["ItemCode"], 0) + int(r["Quantity"])
    assert shipped == {sku1: 2, sku2: 1}
    one = [r for r in rows if r["SalesOrderNumber"] == "PV-ONE"]
    assert len(one) == 1 and one[0]["TrackingNumber"].startswith("JD")
    # Each despatch called back, as `control("despatch")` does, with its own tracking number.
    wait_for(lambda: len(emu.peoplevox.callbacks) == 3)
    called = {(cb["values"]["SalesOrderNumber"], cb["values"]["TrackingNumber"]) for cb in emu.peoplevox.callbacks}
    assert called == {(r["SalesOrderNumber"], r["TrackingNumber"]) for r in rows}
    assert all(cb["status"] == 200 for cb in emu.peoplevox.callbacks)
    # The control actions tests use behave as before beside the shift.
    assert control(emu, "peoplevox", "pick", {"order": "PV-BARE"}) == {"status": "Picking"}
    timeline = emu.timeline()
    assert [d["order_ref"] for d in timeline["despatches"]] == ["PV-SPLIT", "PV-ONE", "PV-SPLIT"]
    assert "PV-CANCEL" in timeline["wms_received"]["peoplevox"]


@pytest.mark.world(n_orders=4, n_skus=200)
def test_timeline_linnworks_to_peoplevox_in_order_placed_received_despatched_tracked(emulators: Emulators) -> None:
    emu = emulators
    emu.peoplevox.partial_share = 0.0
    before = emu.timeline()
    json.dumps(before)  # JSON-ready as it is
    assert {o["oms"] for o in before["orders"]} == {"linnworks", "cin7", "shopify", "bigcommerce"}
    assert len(before["orders"]) == 4 * 4
    assert all(o["placed_at"] == emu.started_at for o in before["orders"])
    assert before["wms_received"] == {"whistl": {}, "peoplevox": {}} and before["despatches"] == []
    assert before["tracking_held"] == {"linnworks": {}, "cin7": {}, "bigcommerce": {}, "shopify": {}}

    asked = time.time()
    (order_id,) = control(emu, "linnworks", "spawn", {"n": 1})["order_ids"]
    with httpx.Client() as c:
        token, server = lw_login(emu, c)
        by_id = {"pkOrderIds": [order_id]}
        shown = c.post(f"{server}/api/Orders/GetOrdersById", headers={"Authorization": token}, json=by_id).json()[0]
        entry = next(o for o in emu.timeline()["orders"] if o["order_id"] == order_id)
        assert entry["oms"] == "linnworks" and entry["order_ref"] == f"LW{shown['NumOrderId']}"
        assert asked <= entry["placed_at"] <= time.time()
        ref = entry["order_ref"]

        call = pvx_session(emu, c)
        save_order(call, ref, [(emu.world.wms_catalogue[0], 1)])
        save_order(call, ref, [(emu.world.wms_catalogue[0], 1)])  # a resave is not a second arrival
        for _ in range(3):
            control(emu, "peoplevox", "step")
        (despatch,) = state(emu, "peoplevox")["despatches"]
        tracking = despatch["TrackingNumber"]
        for number in (tracking, "SECOND-NUMBER"):
            r = c.post(
                f"{server}/api/Orders/SetOrderShippingInfo",
                headers={"Authorization": token},
                data={"orderId": order_id, "info": json.dumps({"TrackingNumber": number, "ManualAdjust": False})},
            )
            assert r.status_code == 200
            if number == tracking:
                first = emu.timeline()["tracking_held"]["linnworks"][order_id]

    timeline = json.loads(json.dumps(emu.timeline()))
    # The benchmark's join: despatch -> order by order_ref -> tracking by order_id.
    (gone,) = timeline["despatches"]
    assert gone == {"wms": "peoplevox", "order_ref": ref, "despatch_ref": despatch["DespatchNumber"], "at": gone["at"]}
    (placed,) = [o for o in timeline["orders"] if o["order_ref"] == gone["order_ref"]]
    received = timeline["wms_received"]["peoplevox"][ref]
    held = timeline["tracking_held"]["linnworks"][placed["order_id"]]
    assert placed["placed_at"] <= received <= gone["at"] <= held <= time.time()
    assert held == first  # the first tracking post counts, not the later one
    assert timeline["tracking_held"]["linnworks"] == {order_id: held}
    # The same record, served for a watcher in another process (`bench/live.py --attach` on `make demo`).
    assert httpx.get(f"{emu.url('whistl')}/_emulator/timeline").json() == timeline


@pytest.mark.world(n_orders=4, n_skus=200)
def test_timeline_whistl_file_arrival_and_every_oms_tracking_call(emulators: Emulators) -> None:
    emu = emulators
    emu.whistl.partial_share = emu.whistl.multi_parcel_share = 0.0
    base = emu.url("cin7")
    with httpx.Client() as c:
        sale_id = c.get(f"{base}saleList", params={"Limit": 1}, headers=CIN7_HEADERS).json()["SaleList"][0]["SaleID"]
        sale = c.get(f"{base}sale", params={"ID": sale_id}, headers=CIN7_HEADERS).json()
    ref = sale["Order"]["SaleOrderNumber"]
    entry = next(o for o in emu.timeline()["orders"] if o["oms"] == "cin7" and o["order_id"] == sale_id)
    assert entry["order_ref"] == ref

    sku = emu.world.wms_catalogue[0]
    row = f"2026-11-20T10:00:00Z,WHISTL-T48,Ann,1 High St,,,Leeds,LS1 1AA,GB,07700900123,a@x.uk,1,{sku},1"
    (emu.whistl.inbox / "ord_20261120100000_1.csv").write_text(ORDER_FILE_HEADER + f"{ref},{row}\n")
    time.sleep(0.05)  # the warehouse reads in/ only on its tick: arrival is the file's time, not the tick's
    arrived = (emu.whistl.inbox / "ord_20261120100000_1.csv").stat().st_mtime
    for _ in range(3):  # received and picking, packed, despatched
        control(emu, "whistl", "step")
    assert emu.timeline()["wms_received"]["whistl"] == {ref: arrived}
    (shp,) = [r for r in state(emu, "whistl")["despatch_rows"] if r["order_reference"] == ref]
    with httpx.Client() as c:
        line = {"ShipmentDate": "2026-11-20", "Carrier": "Whistl", "TrackingNumber": shp["tracking_number"]}
        shipped = c.post(
            f"{base}sale/fulfilment/ship",
            headers=CIN7_HEADERS,
            json={"TaskID": sale_id, "Status": "AUTHORISED", "Lines": [line]},
        )
        assert shipped.status_code == 200, shipped.text

        shop = emu.url("shopify")
        oid = c.get(f"{shop}orders.json", params={"limit": 1}, headers=SHOP_HEADERS).json()["orders"][0]
        fo = c.get(f"{shop}orders/{oid['id']}/fulfillment_orders.json", headers=SHOP_HEADERS).json()
        made = c.post(
            f"{shop}fulfillments.json",
            headers=SHOP_HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [{"fulfillment_order_id": fo["fulfillment_orders"][0]["id"]}],
                    "tracking_info": {"number": "WHL55", "company": "Whistl"},
                }
            },
        )
        assert made.status_code == 201, made.text

        bc = emu.url("bigcommerce")
        bc_order = c.get(f"{bc}v2/orders", params={"limit": 1}, headers=BC_HEADERS).json()[0]
        products = c.get(f"{bc}v2/orders/{bc_order['id']}/products", headers=BC_HEADERS).json()
        address = c.get(f"{bc}v2/orders/{bc_order['id']}/shipping_addresses", headers=BC_HEADERS).json()[0]
        ship = c.post(
            f"{bc}v2/orders/{bc_order['id']}/shipments",
            headers=BC_HEADERS,
            json={
                "order_address_id": address["id"],
                "tracking_number": "WHL77",
                "items": [{"order_product_id": products[0]["id"], "quantity": 1}],
            },
        )
        assert ship.status_code == 201, ship.text

    timeline = json.loads(json.dumps(emu.timeline()))
    (gone,) = timeline["despatches"]
    assert gone["wms"] == "whistl" and gone["order_ref"] == ref and gone["despatch_ref"] == shp["despatch_reference"]
    held = timeline["tracking_held"]
    assert entry["placed_at"] <= arrived <= gone["at"] <= held["cin7"][sale_id] <= time.time()
    refs = {(o["oms"], o["order_id"]): o["order_ref"] for o in timeline["orders"]}
    assert refs[("shopify", str(oid["id"]))] == f"SH{oid['order_number']}"
    assert refs[("bigcommerce", str(bc_order["id"]))] == f"BC{bc_order['id']}"
    assert set(held["shopify"]) == {str(oid["id"])} and set(held["bigcommerce"]) == {str(bc_order["id"])}
    assert held["cin7"][sale_id] <= held["shopify"][str(oid["id"])] <= held["bigcommerce"][str(bc_order["id"])]
