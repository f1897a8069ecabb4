"""Shopify ingestion over real HTTP: Link paging to the end, incremental re-runs, pacing by the bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dlt
import httpx
import polars as pl

from emulators.server import Emulators
from fulfil_assets.ingest.shopify_source import shopify_source, still_to_ship
from fulfil_assets.stage.stock import shopify_stock
from resources.shopify import ShopifyClient
from resources.warehouse import WarehouseDb


def test_loads_everything_then_only_changes(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    client = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=1.0)
    p = dlt.pipeline(
        pipeline_name="test_shopify",
        dataset_name="raw_shopify",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )
    p.run(shopify_source(client, page_size=7))
    db = WarehouseDb(url)
    n = {
        t: int(db.read(f"SELECT COUNT(*) AS n FROM raw_shopify.{t}")["n"][0])
        for t in ("orders", "orders__line_items", "locations", "inventory_levels", "products__variants")
    }
    assert n["orders"] == len(emu.shopify.orders)
    assert n["orders__line_items"] == sum(len(o.lines) for o in emu.shopify.orders.values())
    assert n["inventory_levels"] == len(emu.shopify.levels) and n["locations"] == 2
    assert n["products__variants"] == len(emu.world.products)
    assert emu.shopify.recorder.status_counts[429] == 0, "pacing by the bucket header avoids 429s"
    # Fulfillment orders of exactly the orders still to ship, with their line ids.
    fos = db.read("SELECT id, order_id, status FROM raw_shopify.fulfillment_orders")
    to_ship = {oid for oid in emu.shopify.orders if still_to_ship(emu.shopify.render(oid))}
    assert to_ship and set(fos["order_id"].to_list()) == to_ship
    assert set(fos["status"].to_list()) == {"open"}
    fo_lines = db.read("SELECT COUNT(*) AS n FROM raw_shopify.fulfillment_orders__line_items")["n"][0]
    assert fo_lines == sum(len(emu.shopify.orders[oid].lines) for oid in to_ship)
    # Stock per SKU: levels keyed by inventory item, mapped to SKUs through the variants.
    sku = emu.world.wms_catalogue[5]
    item = emu.world.variant_ids[sku] + 10**9
    emu.shopify.levels[(item, 71_000_001)] = 13
    p.run(shopify_source(client, page_size=7).with_resources("inventory_levels"))
    stock = shopify_stock(
        db.read("SELECT * FROM raw_shopify.inventory_levels"),
        db.read("SELECT * FROM raw_shopify.products__variants"),
        datetime.now(UTC),
    )
    assert stock.height == len(emu.shopify.levels)
    assert stock.filter((pl.col("sku") == sku) & (pl.col("location") == "71000001"))["level"].to_list() == [13]
    # Second run: only the edited order comes back.
    oid = next(iter(emu.shopify.orders))
    emu.shopify.control("edit_address", {"order_id": oid})
    emu.shopify.recorder.clear()
    before = client.stats.calls["orders.json"]
    p.run(shopify_source(client, page_size=7).with_resources("orders"))
    assert client.stats.calls["orders.json"] - before == 1
    row = db.read("SELECT shipping_address__address1 FROM raw_shopify.orders WHERE id = :i", {"i": oid})
    assert row["shipping_address__address1"][0] == emu.shopify.orders[oid].address.address1


def test_a_429_storm_still_loads_everything(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    httpx.post(
        f"http://127.0.0.1:{emu.ports['shopify']}/_emulator/faults", json={"throttle_next": 3}
    ).raise_for_status()
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    client = ShopifyClient(emu.url("shopify"), emu.shopify.access_token)
    dlt.pipeline(
        pipeline_name="test_shopify_storm",
        dataset_name="raw_shopify",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    ).run(shopify_source(client, page_size=10).with_resources("orders"))
    assert int(WarehouseDb(url).read("SELECT COUNT(*) AS n FROM raw_shopify.orders")["n"][0]) == len(emu.shopify.orders)
    assert client.stats.throttled == 3


def test_rest_calls_share_one_window_of_the_budget_share_of_the_leak(emulators: Emulators) -> None:
    """Every fulfil process draws its REST calls from one budget file at `budget_share` of the bucket's leak (the
    store's level, seen only after a process's own calls, cannot keep runs side by side within the share);
    GraphQL has its own cost bucket."""
    client = ShopifyClient(emulators.url("shopify"), emulators.shopify.access_token, budget_share=0.5, leak_per_s=2.0)
    budget = client.budget_for("orders.json")
    assert budget is not None and budget.path is not None and budget.path.parent.name == "rate_budgets"
    assert budget.limit == 19 and budget.limit / budget.window_s == 1.0  # 40 x 0.5 less one; 2/s x 0.5
    assert client.budget_for("fulfillments.json") is budget
    assert client.budget_for("graphql inventorySetQuantities") is None
