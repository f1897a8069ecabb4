"""Every flow in shadow mode leaves every system exactly as it found it: each job runs in full (ingest, staging,
validation, pushes, cancellations, stock, despatches, tracking, reconcile), every effect is recorded with the
payload it would send, and afterwards each emulator's state and every file on Whistl's server are byte for byte
what they were, including the feedback files waiting in `out/` (read and recorded, never moved) and a file that
would be quarantined when live."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest
from flow_helpers import ALL_FLOWS, all_flows_config, run_job, tick_sensor

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

SYSTEMS = ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl")


def world_state(emu: Emulators) -> dict[str, str]:
    """Each emulator's own record (JSON) and each file under Whistl's server root (its bytes), as digests."""
    state = {name: json.dumps(getattr(emu, name).inspect(), sort_keys=True, default=str) for name in SYSTEMS}
    for path in sorted(emu.whistl.root.rglob("*")):
        if path.is_file():
            state[f"whistl:{path.relative_to(emu.whistl.root)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.mark.world(n_orders=6, n_skus=100)
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # what is sent does not depend on the warehouse
def test_every_flow_in_shadow_changes_nothing_at_any_system(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()  # a stock file waiting in out/
    out = emu.whistl.root / "out"
    head = (
        "order_reference,despatch_reference,line_number,sku,quantity_ordered,quantity_despatched,carrier,"
        "service_code,tracking_number,tracking_url,parcel_number,despatched_at,partial_flag,reason\n"
    )
    never_sent = "LWNEVERSENT,D1,1,ABC,1,1,Whistl,WHISTL-T24,WHL1,,1,2026-12-06T10:00:00Z,N,\n"
    (out / "shp_20261206_0001.csv").write_text(head + never_sent)  # a despatch of no order of ours
    (out / "shp_20261206_0002.csv").write_bytes(head.encode() + b"\xff\xfe\n")  # live, this one is quarantined
    before = world_state(emu)
    assert any(k.startswith("whistl:out/inv_") for k in before), before.keys()

    config = all_flows_config(emu, tmp_path, modes=dict.fromkeys(ALL_FLOWS, "shadow"))
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    # Every job but the per-system order syncs and cancellations, whose assets `order_sync_job` runs all of.
    jobs = sorted(
        j.name
        for j in defs.resolve_all_job_defs()
        if not j.name.startswith("__") and not j.name.endswith(("_order_sync_job", "_cancellation_job"))
    )
    assert {"order_sync_job", "despatch_job", "peoplevox_despatch_job", "tracking_job", "reconcile_job"} <= set(jobs)
    window = {"start": "2000-01-01", "end": "2100-01-01"}  # a replay of every order read
    for job in jobs:
        run_job(defs, job, instance, {"ops": {"replayed_orders": {"config": window}}} if job == "replay_job" else None)
    run_job(defs, "despatch_job", instance)  # files already taken in, met again: still left where they are

    after = world_state(emu)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    recorded = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.wms_submissions GROUP BY status")
    assert dict(recorded.iter_rows()).keys() == {"shadow"}  # the orders it would have sent, recorded
    taken = db.read(f"SELECT file_name, outcome FROM {SCHEMA}.processed_files WHERE wms = 'whistl'")
    outcomes = dict(taken.iter_rows())
    assert outcomes.get("shp_20261206_0001.csv") == "processed"
    assert outcomes.get("shp_20261206_0002.csv") == "quarantined"

    # The despatch sensor does not keep asking for the files shadow took in and left in place.
    assert not tick_sensor(defs, instance, None).run_requests

    # Live: the files taken in while in shadow leave out/ as their first outcome says, the refused one with its
    # reason beside it, and nothing is taken in twice.
    live = build_definitions(all_flows_config(emu, tmp_path))
    run_job(live, "despatch_job", instance)
    run_job(live, "linnworks_order_sync_job", instance)  # stages the stock files
    names = {p.name for p in out.iterdir() if p.is_file()}
    assert not {n for n in names if n.startswith(("shp_", "inv_"))}, names
    assert (out / "archive" / "shp_20261206_0001.csv").exists()
    assert (out / "quarantine" / "shp_20261206_0002.csv").exists()
    assert "was not taken in" in (out / "quarantine" / "shp_20261206_0002.csv.reason.txt").read_text()
    assert any(p.name.startswith("inv_") for p in (out / "archive").iterdir())
    again = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.processed_files WHERE wms = 'whistl'")["n"][0]
    assert again == taken.height
