"""Stock from every system into `oms_stock` / `wms_stock`, through the real sources and emulators."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dlt
import polars as pl

from emulators.linnworks import WHISTL_LOCATION
from emulators.server import Emulators
from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.cin7_source import cin7_source
from fulfil_assets.ingest.linnworks_source import linnworks_source
from fulfil_assets.ingest.peoplevox_source import peoplevox_source
from fulfil_assets.stage.stock import bigcommerce_stock, cin7_stock, linnworks_stock, peoplevox_stock
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.linnworks import LinnworksClient
from resources.peoplevox import PeoplevoxClient
from resources.warehouse import WarehouseDb

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_stock_levels_match_each_system(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    sku = emu.world.wms_catalogue[3]
    emu.linnworks.stock[(sku, WHISTL_LOCATION)] = 17
    emu.cin7.available[sku] = 9
    emu.bigcommerce.inventory[(sku, 1)] = 4
    emu.peoplevox.available[sku] = 21
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    db = WarehouseDb(url)
    for name, source in (
        (
            "linnworks",
            linnworks_source(LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials)).with_resources(
                "stock_items"
            ),
        ),
        (
            "cin7",
            cin7_source(Cin7Client(emu.url("cin7"), *emu.cin7.credentials)).with_resources("product_availability"),
        ),
        (
            "bigcommerce",
            bigcommerce_source(BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token)).with_resources(
                "inventory_levels"
            ),
        ),
        (
            "peoplevox",
            peoplevox_source(PeoplevoxClient(emu.url("peoplevox"), *emu.peoplevox.credentials)).with_resources(
                "available"
            ),
        ),
    ):
        dlt.pipeline(
            pipeline_name=f"t_{name}",
            dataset_name=f"raw_{name}",
            destination=db.dlt_destination(),
            pipelines_dir=str(tmp_path / "dlt"),
        ).run(source)
    lw = linnworks_stock(db.read("SELECT * FROM raw_linnworks.stock_items__stock_levels"), NOW)
    c7 = cin7_stock(db.read("SELECT * FROM raw_cin7.product_availability"), NOW)
    bc = bigcommerce_stock(db.read("SELECT * FROM raw_bigcommerce.inventory_levels"), NOW)
    pv = peoplevox_stock(db.read("SELECT * FROM raw_peoplevox.available"), NOW)
    assert lw.height == len(emu.linnworks.stock) and c7.height == len(emu.cin7.available)
    assert bc.height == len(emu.bigcommerce.inventory) and pv.height == len(emu.world.wms_catalogue)
    assert lw.filter((pl.col("sku") == sku) & (pl.col("location") == WHISTL_LOCATION))["level"].to_list() == [17]
    assert c7.filter(pl.col("sku") == sku)["level"].to_list() == [9]
    assert bc.filter((pl.col("sku") == sku) & (pl.col("location") == "1"))["level"].to_list() == [4]
    assert pv.filter(pl.col("sku") == sku).select("on_hand", "available").rows() == [(21, 21)]
    assert int(pv["available"].sum()) == sum(emu.peoplevox.available[s] for s in emu.world.wms_catalogue)
