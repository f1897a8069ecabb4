"""The first flow end to end through real Dagster runs: Linnworks -> Whistl (SFTP) -> tracking back to Linnworks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl

from emulators.server import Emulators
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


def emulator_config(emu: Emulators, tmp_path: Path) -> FulfilConfig:
    """fulfil.yaml as it would read for these emulators."""
    return FulfilConfig.model_validate({
        "flows": ["linnworks_whistl"], "data_dir": str(tmp_path / "data"),
        "systems": {"linnworks": {"base_url": emu.url("linnworks")},
                    "whistl": {"drop_url": f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/"}},
    })


def run_job(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, run_config: dict | None = None) -> None:
    result = defs.resolve_job_def(name).execute_in_process(instance=instance, run_config=run_config or {})
    assert result.success


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("despatch_file_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"whistl_drop": defs.resources["whistl_drop"]})
    return sensor(context)


def drain_despatches(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> tuple[int, str | None]:
    result = tick_sensor(defs, instance, cursor)
    for request in result.run_requests or []:
        run_job(defs, "despatch_job", instance, request.run_config)
    return len(result.run_requests or []), result.cursor


def tracking_calls(emu: Emulators) -> list[dict]:
    return [c.body for c in emu.linnworks.recorder.calls if c.path.endswith("Orders/SetOrderShippingInfo")
            and c.status == 200]


def test_orders_reach_whistl_once_and_tracking_comes_back(emulators: Emulators, fulfil_env: dict,
                                                          tmp_path: Path) -> None:
    emu = emulators
    defs = build_definitions(emulator_config(emu, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()  # the warehouse publishes its stock (and so its catalogue)
    emu.whistl.partial_share = 0.5  # plenty of partial shipments, each confirmed in a later file
    emu.whistl.multi_parcel_share = 0.3

    run_job(defs, "order_sync_job", instance)

    ledger = db.read(f"SELECT * FROM {SCHEMA}.wms_submissions")
    validated = db.read(f"SELECT * FROM {SCHEMA}.validated_orders")
    exceptions = db.read(f"SELECT * FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL")
    assert ledger.height == int(validated["ready"].sum()) > 0
    assert set(ledger["status"]) == {"sent"}
    # Every order held back has an open exception with an owner; none of them went out.
    held = set(validated.filter(~pl.col("passed"))["order_key"])
    assert held and held == set(exceptions["order_key"]) and held.isdisjoint(ledger["order_key"])
    assert set(exceptions["owner"]) <= {"office", "cx", "warehouse"}

    # The warehouse receives the file over SFTP and works through it.
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    assert Counter(receipts.values()) == Counter({1: ledger.height})
    assert set(receipts) == set(ledger["order_ref"])
    assert emu.whistl.inspect()["rejections"] == []
    ran, cursor = 0, None
    for _ in range(4):  # picking, packed, despatched, and the rest of any partial shipment
        emu.whistl.step()
        n, cursor = drain_despatches(defs, instance, cursor)
        ran += n
    assert ran >= 2
    partial = [r for r, s in emu.whistl.inspect()["shipped"].items() if emu.whistl.orders[r].despatches > 1]
    assert partial, "no partial shipment happened: the test would not cover split despatches"
    shipped = [r for f in sorted((emu.whistl.root / "out" / "archive").glob("shp_*.csv"))
               for r in pl.read_csv(f, infer_schema=False).iter_rows(named=True)]
    assert shipped, "the warehouse despatched nothing"
    orders = db.read(f"SELECT order_ref, source_order_id FROM {SCHEMA}.orders")
    order_id = dict(orders.iter_rows())
    expected: dict[str, set[str]] = {}
    for row in shipped:
        if int(row["quantity_despatched"]) > 0:
            expected.setdefault(order_id[row["order_reference"]], set()).add(row["tracking_number"])
    posted: dict[str, set[str]] = {}
    for body in tracking_calls(emu):
        posted.setdefault(body["orderId"], set()).update(body["info"]["TrackingNumber"].split(","))
    assert posted == expected
    # Every order fully despatched is processed in Linnworks; none is processed early.
    processed = set(emu.linnworks.inspect()["processed"])
    assert processed == {order_id[ref] for ref, stage in emu.whistl.inspect()["stages"].items()
                         if stage == "despatched"}

    # Re-running everything sends nothing twice.
    calls_before = len(tracking_calls(emu))
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()
    assert Counter(emu.whistl.inspect()["receipts"].values()) == Counter({1: ledger.height})
    run_job(defs, "tracking_retry_job", instance)
    again, _ = drain_despatches(defs, instance, cursor)
    assert again == 0
    assert len(tracking_calls(emu)) == calls_before
