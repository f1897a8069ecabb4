"""Every warehouse's despatches are held to the same rules (one matcher): a despatch of an order fulfil never sent,
of an item the order lacks or of more than was ordered opens the same exception for the warehouse owner whichever
warehouse reported it, and no tracking for that order reaches the customer's order system. Counted at the
emulators: what Peoplevox despatched, what Linnworks received."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import all_flows_config, run_job

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


@pytest.mark.world(n_orders=12, n_skus=200)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the matcher is polars; the SQL is shared
def test_peoplevox_despatches_that_do_not_add_up_are_exceptions_and_post_nothing(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 1.0  # every Linnworks order goes to Peoplevox
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"]))
    instance = dg.DagsterInstance.ephemeral()
    run_job(defs, "order_sync_job", instance)
    saved = sorted(emu.peoplevox.sales_orders)
    assert len(saved) >= 3, saved
    over, extra, good = saved[:3]
    # An order another channel put into Peoplevox, which fulfil never sent, despatched there.
    emu.peoplevox.sales_orders["NOSUCHORDER1"] = {
        **emu.peoplevox.sales_orders[good],
        "SalesOrderNumber": "NOSUCHORDER1",
    }
    emu.peoplevox.order_items["NOSUCHORDER1"] = dict(emu.peoplevox.order_items[good])
    emu.peoplevox.control("despatch", {"order": "NOSUCHORDER1"})
    first = next(iter(emu.peoplevox.order_items[over].values()))
    ordered = int(first["QuantityOrdered"])
    emu.peoplevox.control("despatch", {"order": over, "items": {first["ItemCode"]: ordered + 4}})
    # An item the order never had: Peoplevox reports it under the order (a picking mistake).
    stranger = next(
        sku
        for sku in emu.world.wms_catalogue
        if sku not in {i["ItemCode"] for i in emu.peoplevox.order_items[extra].values()}
    )
    emu.peoplevox.order_items[extra]["stranger"] = {"ItemCode": stranger, "QuantityOrdered": 1}
    emu.peoplevox.control("despatch", {"order": extra})
    emu.peoplevox.control("despatch", {"order": good})
    run_job(defs, "peoplevox_despatch_job", instance)
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    # A person looked and closed the stranger's exception: later polls judge no row twice, so it stays closed.
    with db.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE {SCHEMA}.order_exceptions SET resolved_at = CURRENT_TIMESTAMP "
            "WHERE order_key = 'peoplevox:NOSUCHORDER1'"
        )
    run_job(defs, "peoplevox_despatch_job", instance)  # again: nothing changes, nothing goes
    reopened = db.read(
        f"SELECT 1 FROM {SCHEMA}.order_exceptions WHERE order_key = 'peoplevox:NOSUCHORDER1' AND resolved_at IS NULL"
    )
    assert reopened.is_empty()

    exceptions = db.read(
        f"SELECT order_key, reason_code, detail, owner FROM {SCHEMA}.order_exceptions WHERE rule = 'despatch_match'"
    )  # (open or closed by a person: each was opened once)
    by_ref = {}
    order_id = dict(db.read(f"SELECT order_ref, order_key FROM {SCHEMA}.orders").iter_rows())
    for key, code, detail, owner in exceptions.iter_rows():
        assert owner == "warehouse"
        by_ref[key] = (code, detail)
    assert by_ref["peoplevox:NOSUCHORDER1"][0] == "DESPATCH_UNKNOWN_ORDER"
    assert by_ref[order_id[over]][0] == "DESPATCH_OVER_QUANTITY"
    assert f"shipped {ordered + 4} of {ordered}" in by_ref[order_id[over]][1]
    assert by_ref[order_id[extra]][0] == "DESPATCH_UNKNOWN_LINE" and stranger in by_ref[order_id[extra]][1]
    assert order_id[good] not in by_ref

    # Linnworks holds tracking for the good order only (its ids from the emulator's own records).
    linnworks_id = {o["order_ref"]: o["order_id"] for o in emu.linnworks.timeline()["orders"]}
    tracked = emu.linnworks.inspect()["shipping_info"]
    assert linnworks_id[good] in tracked
    assert linnworks_id[over] not in tracked and linnworks_id[extra] not in tracked
    despatched = pl.DataFrame(emu.peoplevox.inspect()["despatches"])
    assert set(despatched["SalesOrderNumber"]) == {"NOSUCHORDER1", over, extra, good}
