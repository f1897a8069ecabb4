"""Every system's raw assets through a real Dagster run against the emulators, on DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from emulators.server import Emulators
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions, resources_for
from fulfil_assets.ingest.assets import bigcommerce_raw, cin7_raw, peoplevox_raw, shopify_raw


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
            "data_dir": str(tmp_path / "data"),
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


def test_raw_assets_of_every_system_load_completely(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulators
    secrets = {
        "CIN7_ACCOUNT_ID": emu.cin7.credentials[0],
        "CIN7_APPLICATION_KEY": emu.cin7.credentials[1],
        "SHOPIFY_ACCESS_TOKEN": emu.shopify.access_token,
        "BIGCOMMERCE_ACCESS_TOKEN": emu.bigcommerce.access_token,
        "PEOPLEVOX_CLIENT_ID": emu.peoplevox.credentials[0],
        "PEOPLEVOX_USERNAME": emu.peoplevox.credentials[1],
        "PEOPLEVOX_PASSWORD": emu.peoplevox.credentials[2],
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    config = all_systems_config(emu, tmp_path)
    defs = build_definitions(config)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "raw_cin7/sales",
        "raw_shopify/orders",
        "raw_bigcommerce/order_products",
        "raw_peoplevox/despatches",
    } <= keys
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [cin7_raw, shopify_raw, bigcommerce_raw, peoplevox_raw], resources=resources_for(config), instance=instance
    )
    assert result.success
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    rows = {m.asset_key.to_user_string(): m.metadata["dagster/row_count"].value for m in mats}
    assert all(m.metadata["api_usage"].value["calls"] > 0 for m in mats)
    assert rows["raw_cin7/sales"] == len(emu.cin7.sales)
    assert rows["raw_shopify/orders"] == len(emu.shopify.orders)
    assert rows["raw_bigcommerce/orders"] == len(emu.bigcommerce.orders)
    assert rows["raw_bigcommerce/order_products"] == sum(len(o.lines) for o in emu.bigcommerce.orders.values())
    assert rows["raw_peoplevox/item_types"] == len(emu.world.wms_catalogue)
    logs = " ".join(str(r) for r in instance.all_logs(result.run_id))
    assert not any(v in logs for k, v in secrets.items() if "ID" not in k and "USERNAME" not in k)
