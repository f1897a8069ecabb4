"""Shopify and BigCommerce raw tables (loaded from the emulators by the real sources) -> canonical tables."""

from __future__ import annotations

from pathlib import Path

import dlt

from emulators.server import Emulators
from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.shopify_source import shopify_source
from fulfil_assets.stage.storefronts import stage_bigcommerce, stage_shopify
from resources.bigcommerce import BigCommerceClient
from resources.shopify import ShopifyClient
from resources.warehouse import WarehouseDb


def load(tmp_path: Path, name: str, source: dlt.sources.DltSource) -> WarehouseDb:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    dlt.pipeline(
        pipeline_name=name,
        dataset_name=f"raw_{name}",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    ).run(source)
    return WarehouseDb(url)


def test_shopify_orders_stage_with_address_method_and_variants(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    db = load(
        tmp_path,
        "shopify",
        shopify_source(ShopifyClient(emu.url("shopify"), emu.shopify.access_token)).with_resources("orders"),
    )
    orders, lines = stage_shopify(
        db.read("SELECT * FROM raw_shopify.orders"),
        db.read("SELECT * FROM raw_shopify.orders__line_items"),
        db.read("SELECT * FROM raw_shopify.orders__shipping_lines"),
    )
    assert orders.height == len(emu.shopify.orders)
    by_key = {r["order_key"]: r for r in orders.iter_rows(named=True)}
    for oid, o in emu.shopify.orders.items():
        row = by_key[f"shopify:{oid}"]
        assert (
            row["order_ref"],
            row["paid"],
            row["status"],
            row["shipping_method"],
            row["city"] or "",
            row["country_code"],
        ) == (f"SH{o.number}", o.paid, "open", o.shipping_method, o.address.town, o.address.country_code)
    expected = sorted(
        (f"shopify:{oid}", li.line_no, li.sku, str(li.variant_id), li.quantity)
        for oid, o in emu.shopify.orders.items()
        for li in o.lines
    )
    assert sorted(lines.select("order_key", "line_no", "sku", "source_variant_id", "quantity").rows()) == expected


def test_bigcommerce_orders_stage_with_first_address_and_lines(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    emu.bigcommerce.status[next(iter(emu.bigcommerce.orders))] = 5
    client = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=1.0)
    db = load(tmp_path, "bigcommerce", bigcommerce_source(client))
    orders, lines = stage_bigcommerce(
        db.read("SELECT * FROM raw_bigcommerce.orders"),
        db.read("SELECT * FROM raw_bigcommerce.order_products"),
        db.read("SELECT * FROM raw_bigcommerce.order_shipping_addresses"),
    )
    by_key = {r["order_key"]: r for r in orders.iter_rows(named=True)}
    assert len(by_key) == len(emu.bigcommerce.orders)
    for oid, o in emu.bigcommerce.orders.items():
        row = by_key[f"bigcommerce:{oid}"]
        status = "cancelled" if emu.bigcommerce.status[oid] == 5 else "open"
        assert (row["paid"], row["status"], row["shipping_method"], row["ship_name"], row["postcode"] or "") == (
            o.paid,
            status,
            o.shipping_method,
            o.address.name,
            o.address.postcode,
        )
        assert row["created_at"] is not None and row["created_at"].replace(microsecond=0) == o.created_at.replace(
            microsecond=0
        )
    assert lines.height == sum(len(o.lines) for o in emu.bigcommerce.orders.values())
