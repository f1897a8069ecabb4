"""BigCommerce ingestion over real HTTP: every order with lines and address, incremental, quota pacing."""

from __future__ import annotations

from pathlib import Path

import dlt
import httpx

from emulators.server import Emulators
from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from resources.bigcommerce import BigCommerceClient
from resources.warehouse import WarehouseDb


def run(emu: Emulators, tmp_path: Path, client: BigCommerceClient, name: str = "test_bc", **kw: int) -> WarehouseDb:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    dlt.pipeline(
        pipeline_name=name,
        dataset_name="raw_bigcommerce",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    ).run(bigcommerce_source(client, **kw))
    return WarehouseDb(url)


DETAILS = ("/products", "/shipping_addresses")  # an order's lines and ship-to address: a call each


def ship(client: BigCommerceClient, order_id: int, lines: int | None = None) -> None:
    """A shipment at BigCommerce of the order's first `lines` lines in full (None: all), as fulfil's tracking post
    makes it, naming the line and address ids BigCommerce gives."""
    products = client.order_products(order_id)[:lines]
    address = client.order_shipping_addresses(order_id)[0]["id"]
    items = [{"order_product_id": p["id"], "quantity": p["quantity"]} for p in products]
    client.create_shipment(order_id, {"order_address_id": address, "items": items, "tracking_number": "T1"})


def count(db: WarehouseDb, table: str) -> int:
    return int(db.read(f"SELECT COUNT(*) AS n FROM raw_bigcommerce.{table}")["n"][0])


def test_loads_everything_then_only_changes(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=0.9)
    db = run(emu, tmp_path, client, page_size=250)
    assert count(db, "orders") == count(db, "order_shipping_addresses") == len(emu.bigcommerce.orders)
    assert count(db, "order_products") == sum(len(o.lines) for o in emu.bigcommerce.orders.values())
    assert count(db, "inventory_levels") == len(emu.bigcommerce.inventory)
    assert count(db, "products") == len(emu.bigcommerce.product_skus)
    methods = db.read("SELECT DISTINCT shipping_method FROM raw_bigcommerce.order_shipping_addresses")
    assert set(methods["shipping_method"]) <= {o.shipping_method for o in emu.bigcommerce.orders.values()}
    new = emu.bigcommerce.control("spawn", {"n": 3})["order_ids"]
    emu.bigcommerce.recorder.clear()
    run(emu, tmp_path, client, page_size=250)
    fetched = {
        c.path.split("/")[-2]
        for c in emu.bigcommerce.recorder.calls
        if "/v2/orders/" in c.path and c.path.endswith("/products")
    }
    assert fetched == {str(i) for i in new}
    assert count(db, "orders") == len(emu.bigcommerce.orders)

    # An order shipped in full (as fulfil's own shipment leaves it) is listed again, its lines and address not read
    # again (two calls per order shipped); one shipped in part is read, and so is one first listed shipped in full.
    whole, part = [oid for oid, o in emu.bigcommerce.orders.items() if len(o.lines) > 1][:2]
    (first_seen,) = emu.bigcommerce.control("spawn", {"n": 1})["order_ids"]
    for order, lines in ((whole, None), (part, 1), (first_seen, None)):
        ship(client, order, lines)
    emu.bigcommerce.recorder.clear()
    run(emu, tmp_path, client, page_size=250)
    calls = emu.bigcommerce.recorder.calls
    read_again = {c.path.split("/")[-2] for c in calls if "/v2/orders/" in c.path and c.path.endswith(DETAILS)}
    assert read_again == {str(part), str(first_seen)}
    status = dict(db.read("SELECT id, status_id FROM raw_bigcommerce.orders").rows())
    shipped = emu.bigcommerce.status
    assert (shipped[whole], shipped[part], shipped[first_seen]) == (2, 3, 2)  # Shipped, Partially Shipped
    assert [status[o] for o in (whole, part, first_seen)] == [shipped[whole], shipped[part], shipped[first_seen]]
    assert count(db, "order_products") == sum(len(o.lines) for o in emu.bigcommerce.orders.values())


def test_stays_inside_its_share_of_the_store_quota(emulators: Emulators, tmp_path: Path) -> None:
    """A 30% share of 150 calls per window: the client waits for the window instead of taking 429s."""
    emu = emulators
    emu.bigcommerce.limit.window_s = 3.0  # a short window keeps the test quick; the quota is the real 150
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=0.3)
    db = run(emu, tmp_path, client, name="test_bc_share", page_size=250)
    assert count(db, "orders") == len(emu.bigcommerce.orders)
    assert client.stats.budget_wait_s > 0 and emu.bigcommerce.recorder.status_counts[429] == 0


def test_429_with_and_without_headers_still_loads_everything(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    httpx.post(
        f"http://127.0.0.1:{emu.ports['bigcommerce']}/_emulator/faults", json={"bare_429_next": 2, "throttle_next": 2}
    ).raise_for_status()
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=0.9)
    db = run(emu, tmp_path, client, name="test_bc_storm", page_size=250)
    assert count(db, "orders") == len(emu.bigcommerce.orders)
    assert client.stats.throttled == 4


def test_a_backlog_goes_in_runs_of_a_few_orders_each_going_on_from_the_last(
    emulators: Emulators, tmp_path: Path
) -> None:
    """With `max_details`, each run reads the lines and address of at most that many orders, the next going on
    from there, until every order was read once and none twice."""
    emu = emulators
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=0.9)
    per_run = max(2, len(emu.bigcommerce.orders) // 4)
    read: list[list[str]] = []
    for _ in range(10):
        emu.bigcommerce.recorder.clear()
        db = run(emu, tmp_path, client, page_size=50, max_details=per_run)
        calls = [c.path.split("/") for c in emu.bigcommerce.recorder.calls if "/v2/orders/" in c.path]
        products = [p[-2] for p in calls if p[-1] == "products"]
        assert sorted(products) == sorted(p[-2] for p in calls if p[-1] == "shipping_addresses")
        read.append(products)
        if not products:
            break
    assert all(len(ids) <= per_run for ids in read), read
    everything = [i for ids in read for i in ids]
    assert sorted(everything) == sorted(str(i) for i in emu.bigcommerce.orders)
    assert len(set(everything)) == len(everything) and len(read) >= 5
    assert count(db, "orders") == count(db, "order_shipping_addresses") == len(emu.bigcommerce.orders)
