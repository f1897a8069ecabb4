"""Peoplevox ingestion over real SOAP: catalogue, stock, orders, incremental despatches, session expiry."""

from __future__ import annotations

from pathlib import Path

import dlt
import httpx
import pytest

from emulators.server import Emulators
from fulfil_assets.ingest.peoplevox_source import peoplevox_source
from resources.http import AuthError, DataError
from resources.peoplevox import PeoplevoxClient
from resources.warehouse import WarehouseDb


def client_for(emu: Emulators) -> PeoplevoxClient:
    client_id, username, password = emu.peoplevox.credentials
    return PeoplevoxClient(emu.url("peoplevox"), client_id, username, password)


def test_loads_catalogue_stock_orders_and_only_new_despatches(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    client = client_for(emu)
    sku = emu.world.wms_catalogue[0]
    saved = client.save_data(
        "Sales orders",
        [
            {"SalesOrderNumber": "LW1", "Customer": "Ann", "ServiceType": "DPD Next Day"},
            {"SalesOrderNumber": "LW9", "Customer": "Cy", "ServiceType": "Pigeon"},
        ],
    )
    assert saved.total == 1 and saved.statuses == (("LW1", "Success"), ("LW9", "Error"))
    assert "ServiceType 'Pigeon' does not exist" in saved.detail
    client.save_data(
        "Sales order items", [{"SalesOrderNumber": "LW1", "ItemCode": sku, "QuantityOrdered": 2, "Line": 1}]
    )
    first = emu.peoplevox.control("despatch", {"order": "LW1"})["tracking_number"]
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    p = dlt.pipeline(
        pipeline_name="test_pvx",
        dataset_name="raw_peoplevox",
        destination=WarehouseDb(url).dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )
    p.run(peoplevox_source(client, page_size=97))
    db = WarehouseDb(url)

    def n(table: str) -> int:
        return int(db.read(f"SELECT COUNT(*) AS n FROM raw_peoplevox.{table}")["n"][0])

    assert n("item_types") == n("available") == len(emu.world.wms_catalogue)
    assert n("sales_orders") == 1 and n("despatches") == 1
    assert db.read("SELECT tracking_number FROM raw_peoplevox.despatches")["tracking_number"][0] == first
    # The session expires between runs; a second despatch arrives: only it is read, nothing is lost.
    httpx.post(
        f"http://127.0.0.1:{emu.ports['peoplevox']}/_emulator/faults", json={"expire_tokens": True}
    ).raise_for_status()
    client.save_data("Sales orders", [{"SalesOrderNumber": "LW2", "Customer": "Bob", "ServiceType": "DPD Next Day"}])
    client.save_data(
        "Sales order items", [{"SalesOrderNumber": "LW2", "ItemCode": sku, "QuantityOrdered": 1, "Line": 1}]
    )
    emu.peoplevox.control("despatch", {"order": "LW2"})
    p.run(peoplevox_source(client, page_size=97).with_resources("despatches", "sales_orders"))
    assert n("despatches") == 2 and n("sales_orders") == 2
    assert client.stats.calls["Authenticate"] == 2


def test_refusals_and_bad_logins_say_what(emulators: Emulators) -> None:
    client = client_for(emulators)
    refused = client.save_data(
        "Sales order items", [{"SalesOrderNumber": "X", "ItemCode": "NOPE", "QuantityOrdered": 1}]
    )
    assert refused.statuses == (("X", "Error"),) and "ItemCode 'NOPE' does not exist" in refused.detail
    with pytest.raises(DataError, match="Template 'Stock' cannot be saved"):  # the whole call refused
        client.save_data("Stock", [{"ItemCode": "X"}])
    bad = PeoplevoxClient(emulators.url("peoplevox"), "brand01", "integration", "not-the-password-42")
    with pytest.raises(AuthError) as info:
        bad.authenticate()
    assert "credentials rejected by Peoplevox" in str(info.value) and "not-the-password-42" not in str(info.value)
