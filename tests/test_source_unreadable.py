"""A single record a system will not return never blocks that system's other orders: a Cin7 sale whose detail
answers 400 is kept aside with Cin7's words and an exception for the office, every other sale is staged, and once
the sale reads again (Cin7 lists it as changed) it is staged and the exception closes. Counted from the emulator's
own record: which sale it refused, which sales it holds."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import dagster as dg
import pytest
from flow_helpers import all_flows_config, run_job, set_faults

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


@pytest.mark.world(n_orders=10, n_skus=100)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_cin7_sale_that_answers_400_is_held_alone_with_an_exception(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["cin7_whistl"]))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    set_faults(emu, "cin7", error_next=1, error_status=400, only_path="/sale")
    run_job(defs, "cin7_order_sync_job", instance)  # the run succeeds: one sale refused is not a failed sync

    refused = [c for c in emu.cin7.recorder.calls if c.path.endswith("/sale") and c.status == 400]
    assert len(refused) == 1
    sale_id = parse_qs(refused[0].query)["ID"][0]
    held = set(emu.cin7.sales)
    staged = set(
        db.read(f"SELECT source_order_id FROM {SCHEMA}.orders WHERE source_system = 'cin7'")[
            "source_order_id"
        ].to_list()
    )
    assert staged == held - {sale_id}
    open_rows = db.read(
        f"SELECT order_key, reason_code, owner, detail FROM {SCHEMA}.order_exceptions "
        "WHERE rule = 'source_read' AND resolved_at IS NULL"
    )
    assert open_rows.select("order_key", "reason_code", "owner").rows() == [
        (f"cin7:{sale_id}", "SOURCE_UNREADABLE", "office")
    ]
    assert "HTTP 400" in open_rows["detail"][0]
    emu.cin7.recorder.clear()  # unchanged since: not asked for again (a run's cut never stalls on it)
    run_job(defs, "cin7_order_sync_job", instance)
    assert [c.query for c in emu.cin7.recorder.calls if c.path.endswith("/sale")] == []

    def cin7_staged() -> set[str]:
        orders = db.read(f"SELECT source_order_id FROM {SCHEMA}.orders WHERE source_system = 'cin7'")
        return set(orders["source_order_id"].to_list())

    def open_source_read() -> list[str]:
        rows = db.read(
            f"SELECT order_key FROM {SCHEMA}.order_exceptions WHERE rule = 'source_read' AND resolved_at IS NULL"
        )
        return rows["order_key"].to_list()

    emu.cin7.control("edit_address", {"sale_id": sale_id})  # changed in Cin7: listed again, read in full now
    run_job(defs, "cin7_order_sync_job", instance)
    assert cin7_staged() == held and open_source_read() == []

    # Readable before, refused now: its last good version is not staged as if it were current.
    emu.cin7.control("edit_address", {"sale_id": sale_id})
    set_faults(emu, "cin7", error_next=1, error_status=400, only_path="/sale")
    run_job(defs, "cin7_order_sync_job", instance)
    assert cin7_staged() == held - {sale_id} and open_source_read() == [f"cin7:{sale_id}"]

    # Then voided in Cin7: not read again (its list row says it); the exception resolves by itself and the sale is
    # staged cancelled from its last good read, so its cancellation goes to the warehouse like any other.
    emu.cin7.control("void", {"sale_id": sale_id})
    emu.cin7.recorder.clear()
    run_job(defs, "cin7_order_sync_job", instance)
    assert [c.query for c in emu.cin7.recorder.calls if c.path.endswith("/sale")] == []
    assert cin7_staged() == held and open_source_read() == []
    status = db.read(f"SELECT status FROM {SCHEMA}.orders WHERE order_key = :k", {"k": f"cin7:{sale_id}"})[
        "status"
    ].to_list()
    assert status == ["cancelled"]
