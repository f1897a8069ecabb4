"""Moving from the embedded DuckDB warehouse to PostgreSQL keeps the promise: the ledgers move with the data, so
the new warehouse's first runs (reading every system again from the start) send nothing that was already sent.
Counted at the emulated Whistl: every order it holds arrived once."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from flow_helpers import emulator_config, run_job

from emulators.server import Emulators
from fulfil_assets.copy_warehouse import copy_warehouse
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb


@pytest.mark.world(n_orders=12, n_skus=200)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_flow_moved_to_postgres_sends_nothing_twice(
    emulators: Emulators, fulfil_env: dict, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    config = emulator_config(emu, tmp_path)
    run_job(build_definitions(config), "order_sync_job", dg.DagsterInstance.ephemeral())
    emu.whistl.step()
    before = dict(emu.whistl.inspect()["receipts"])
    assert before and set(before.values()) == {1}

    duck = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    pg = WarehouseDb(postgres_url)
    copied = copy_warehouse(duck, pg)
    assert copied["wms_submissions"] == duck.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.wms_submissions")["n"][0]
    with pytest.raises(ValueError, match="already holds rows"):
        copy_warehouse(duck, pg)  # never into a warehouse in use

    monkeypatch.setenv("FULFIL_WAREHOUSE_URL", postgres_url)
    shutil.rmtree(Path(fulfil_env["FULFIL_DATA_DIR"]) / "dlt", ignore_errors=True)  # read every system again
    run_job(build_definitions(config), "order_sync_job", dg.DagsterInstance.ephemeral())
    emu.whistl.step()
    after = emu.whistl.inspect()["receipts"]
    assert after == before  # the same orders, each once
