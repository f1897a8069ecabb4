"""Every system's raw and staging assets through a real Dagster run against the emulators, on DuckDB and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from flow_helpers import declared_layout, dlt_warnings_during, raw_layout

from emulators.linnworks import PEOPLEVOX_LOCATION
from emulators.server import Emulators
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions
from fulfil_assets.ingest.assets import SOURCES
from resources.peoplevox import PeoplevoxClient
from resources.warehouse import SCHEMA, WarehouseDb


def all_systems_config(emu: Emulators, tmp_path: Path) -> FulfilConfig:
    return FulfilConfig.model_validate(
        {
            "flows": [
                "linnworks_whistl",
                "cin7_whistl",
                "bigcommerce_whistl",
                "linnworks_peoplevox",
                "shopify_linnworks",
            ],
            "routes": {"linnworks_peoplevox": {"locations": [PEOPLEVOX_LOCATION]}},
            "systems": {
                "linnworks": {"base_url": emu.url("linnworks")},
                "whistl": {"drop_url": str(emu.whistl.root)},
                "cin7": {"base_url": emu.url("cin7"), "budget_share": 1.0},
                "shopify": {"base_url": emu.url("shopify")},
                "bigcommerce": {"base_url": emu.url("bigcommerce"), "budget_share": 1.0},
                "peoplevox": {"base_url": emu.url("peoplevox")},
            },
        }
    )


def test_every_system_ingests_and_stages_completely(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    config = all_systems_config(emu, tmp_path)
    defs = build_definitions(config)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys() if k.path[0].startswith("raw_")}
    assert groups == {f"{s}_ingest" for s in ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl")}
    assert {
        "raw_cin7/sales",
        "raw_shopify/orders",
        "raw_bigcommerce/order_products",
        "raw_peoplevox/despatches",
    } <= keys
    emu.whistl.snapshot()  # Whistl publishes its stock; Peoplevox despatches an order fulfil sent it
    pvx = PeoplevoxClient(emu.url("peoplevox"), *emu.peoplevox.credentials)
    sku = emu.world.wms_catalogue[0]
    pvx.save_data("Sales orders", [{"SalesOrderNumber": "LW9", "Customer": "Ann", "ServiceType": "DPD Next Day"}])
    pvx.save_data("Sales order items", [{"SalesOrderNumber": "LW9", "ItemCode": sku, "QuantityOrdered": 2, "Line": 1}])
    tracking = emu.peoplevox.control("despatch", {"order": "LW9"})["tracking_number"]
    instance = dg.DagsterInstance.ephemeral()
    wanted = [k for k in graph.get_all_asset_keys() if (graph.get(k).group_name or "").endswith(("_ingest", "stage"))]
    job = defs.resolve_implicit_global_asset_job_def()
    result, warnings = dlt_warnings_during(lambda: job.execute_in_process(instance=instance, asset_selection=wanted))
    assert result.success
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    rows = {m.asset_key.to_user_string(): m.metadata.get("dagster/row_count") for m in mats}
    rows = {k: v.value for k, v in rows.items() if v is not None}
    api = [m for m in mats if m.asset_key.path[0].startswith("raw_") and m.asset_key.path[0] != "raw_whistl"]
    assert api and all(m.metadata["api_usage"].value["calls"] > 0 for m in api)
    assert rows["raw_cin7/sales"] == len(emu.cin7.sales)
    assert rows["raw_shopify/orders"] == len(emu.shopify.orders)
    assert rows["raw_bigcommerce/orders"] == len(emu.bigcommerce.orders)
    assert rows["raw_bigcommerce/order_products"] == sum(len(o.lines) for o in emu.bigcommerce.orders.values())
    assert rows["raw_peoplevox/item_types"] == len(emu.world.wms_catalogue)
    assert rows["raw_whistl/stock_snapshots"] == len(emu.world.wms_catalogue)
    # Staged: every OMS's orders and lines, every system's stock, Peoplevox's despatch.
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    staged = dict(db.read(f"SELECT source_system, COUNT(*) AS n FROM {SCHEMA}.orders GROUP BY 1").iter_rows())
    assert staged == {
        "linnworks": len(emu.linnworks.orders),
        "cin7": len(emu.cin7.sales),
        "shopify": len(emu.shopify.orders),
        "bigcommerce": len(emu.bigcommerce.orders),
    }
    lines = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.order_lines")["n"][0]
    assert lines == sum(
        len(o.lines)
        for orders in (emu.linnworks.orders, emu.cin7.sales, emu.shopify.orders, emu.bigcommerce.orders)
        for o in orders.values()
    )
    oms = dict(db.read(f"SELECT oms, COUNT(*) AS n FROM {SCHEMA}.oms_stock GROUP BY 1").iter_rows())
    assert oms == {
        "linnworks": len(emu.linnworks.stock),
        "cin7": len(emu.cin7.available),
        "shopify": len(emu.shopify.levels),
        "bigcommerce": len(emu.bigcommerce.inventory),
    }
    wms = dict(db.read(f"SELECT wms, COUNT(*) AS n FROM {SCHEMA}.wms_stock GROUP BY 1").iter_rows())
    assert wms == {"whistl": len(emu.world.wms_catalogue), "peoplevox": len(emu.world.wms_catalogue)}
    # Every raw table has exactly the declared columns and types: no variant column for a value typed other
    # than declared, and no column left out for arriving empty (dlt warns of none).
    for system in SOURCES:
        assert raw_layout(db, system) == declared_layout(system), system
    assert not [w for w in warnings if "did not receive any data" in w]
    despatched = db.read(f"SELECT order_ref, sku, quantity, tracking_number FROM {SCHEMA}.despatches")
    assert despatched.rows() == [("LW9", sku, 2, tracking)]
    assert list((emu.whistl.root / "out").glob("inv_*.csv")) == [], "loaded snapshots are archived"
    logs = " ".join(str(r) for r in instance.all_logs(result.run_id))
    secrets = {k: v for k, v in fulfil_env.items() if k.endswith(("SECRET", "TOKEN", "KEY", "PASSWORD"))}
    assert len(secrets) >= 6 and not any(v in logs for v in secrets.values())
