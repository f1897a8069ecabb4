"""The first flow end to end through real Dagster runs: Linnworks -> Whistl (SFTP) -> tracking back to Linnworks."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import polars as pl
from flow_helpers import (
    drain_despatches,
    emulator_config,
    open_reasons,
    planted_reasons,
    run_job,
    set_faults,
    tracking_calls,
    whistl_world,
    world_expectations,
)

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA


def test_orders_reach_whistl_once_and_tracking_comes_back(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    emu.whistl.partial_share = 0.5  # plenty of partial shipments, each confirmed in a later file
    emu.whistl.multi_parcel_share = 0.3

    # What should reach Whistl, and what should be held and why, is the world's own record of what it planted.
    truth = [o for o in emu.timeline()["orders"] if o["oms"] == "linnworks"]
    fit = {o["order_ref"] for o in truth if o["ready"]}
    planted = planted_reasons(truth)
    assert fit and planted

    run_config = world_expectations(emu, tmp_path)
    sync = run_job(defs, "order_sync_job", instance, run_config)
    checks = {c.check_name: c.passed for c in sync.get_asset_check_evaluations()}
    assert checks["great_expectations_agrees"] and checks["every_ready_order_reached_the_wms"]
    assert checks["rule_phone"] is False, "the seeded world has bad phones: that check must show them"
    meta = instance.get_latest_materialization_event(dg.AssetKey("validated_orders")).asset_materialization.metadata
    docs = Path(urlparse(meta["gx_data_docs"].value).path)
    assert docs.name == "index.html" and docs.exists() and sync.run_id in str(docs)

    ledger = db.read(f"SELECT * FROM {SCHEMA}.wms_submissions")
    assert set(ledger["order_ref"]) == fit and set(ledger["status"]) == {"sent"}
    # Every order the world spoiled has open exceptions with exactly the planted reasons, each with an owner.
    assert open_reasons(db) == planted
    owners = db.read(f"SELECT DISTINCT owner FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL")
    assert set(owners["owner"]) <= {"office", "cx", "warehouse"}

    # The warehouse receives the file over SFTP and works through it: the fit orders, each once.
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    assert receipts == dict.fromkeys(fit, 1)
    assert emu.whistl.inspect()["rejections"] == []
    ran, cursor = 0, None
    for _ in range(4):  # picking, packed, despatched, and the rest of any partial shipment
        emu.whistl.step()
        n, cursor = drain_despatches(defs, instance, cursor)
        ran += n
    assert ran >= 2
    partial = [r for r, s in emu.whistl.inspect()["shipped"].items() if emu.whistl.orders[r].despatches > 1]
    assert partial, "no partial shipment happened: the test would not cover split despatches"
    shipped = [
        r
        for f in sorted((emu.whistl.root / "out" / "archive").glob("shp_*.csv"))
        for r in pl.read_csv(f, infer_schema=False).iter_rows(named=True)
    ]
    assert shipped, "the warehouse despatched nothing"
    order_id = {o["order_ref"]: o["order_id"] for o in truth}
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
    assert processed == {
        order_id[ref] for ref, stage in emu.whistl.inspect()["stages"].items() if stage == "despatched"
    }

    # Re-running everything sends nothing twice.
    calls_before = len(tracking_calls(emu))
    run_job(defs, "order_sync_job", instance, run_config)
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"] == dict.fromkeys(fit, 1)
    # Processed orders come back through the processed-orders search and are staged as despatched.
    statuses = dict(db.read(f"SELECT source_order_id, status FROM {SCHEMA}.orders").iter_rows())
    assert processed and {statuses[o] for o in processed} == {"despatched"}
    run_job(defs, "tracking_job", instance)
    again, _ = drain_despatches(defs, instance, cursor)
    assert again == 0
    assert len(tracking_calls(emu)) == calls_before


def test_faults_rejections_and_fixes(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    """5xx and an expired session while ingesting still load every order; a WMS rejection becomes an exception
    with an owner; once the order is fixed at source it goes again by itself; no secret reaches any log."""
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    set_faults(emu, "linnworks", error_rate=0.25, error_status=503, expire_tokens=True)
    run_job(defs, "order_sync_job", instance)
    set_faults(emu, "linnworks", error_rate=0.0)
    staged = db.read(f"SELECT order_key FROM {SCHEMA}.orders")
    assert staged.height == len(emu.linnworks.orders), "faults must not lose orders"
    assert emu.linnworks.recorder.status_counts[503] > 0

    # The warehouse stops knowing one SKU that a sent order needs: it rejects that order.
    ledger = db.read(f"SELECT order_key, order_ref FROM {SCHEMA}.wms_submissions")
    lines = db.read(f"SELECT order_key, sku FROM {SCHEMA}.order_lines").join(ledger, on="order_key")
    single = lines.group_by("sku").agg(pl.col("order_ref").n_unique().alias("n")).filter(pl.col("n") == 1)
    victim_ref, victim_sku = lines.join(single, on="sku").sort("order_ref").select("order_ref", "sku").row(0)
    title = emu.whistl.catalogue.pop(victim_sku)
    emu.whistl.step()
    drain_despatches(defs, instance, None)
    status = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions").iter_rows())
    assert status[victim_ref] == "rejected"
    ex = db.read(f"SELECT * FROM {SCHEMA}.order_exceptions WHERE rule = 'wms_acceptance' AND resolved_at IS NULL")
    assert ex.select("reason_code", "owner").rows() == [("SKU_UNKNOWN_AT_WMS", "office")]
    assert victim_sku in ex["detail"][0]

    # Fixed: the SKU is set up at the warehouse and the order's address corrected at source.
    emu.whistl.catalogue[victim_sku] = title
    victim_key = ledger.filter(pl.col("order_ref") == victim_ref)["order_key"][0]
    emu.linnworks.control("edit_address", {"order_id": victim_key.split(":", 1)[1]})
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"][victim_ref] == 2
    assert victim_ref not in {r["order_reference"] for r in emu.whistl.inspect()["rejections"][1:]}
    status = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions").iter_rows())
    assert status[victim_ref] == "sent"
    assert db.read(
        f"SELECT * FROM {SCHEMA}.order_exceptions WHERE rule = 'wms_acceptance' AND resolved_at IS NULL"
    ).is_empty()

    # No secret anywhere a person or another system can read.
    secrets = [
        fulfil_env["LINNWORKS_APPLICATION_SECRET"],
        fulfil_env["LINNWORKS_TOKEN"],
        fulfil_env["WHISTL_SFTP_PASSWORD"],
    ]
    logs: list[str] = []
    for run in instance.get_runs():
        logs += [str(record) for record in instance.all_logs(run.run_id)]
    assert logs and not any(s in line for s in secrets for line in logs)
    for table in ("order_exceptions", "wms_submissions", "tracking_posts", "processed_files"):
        dump = str(db.read(f"SELECT * FROM {SCHEMA}.{table}").rows())
        assert not any(s in dump for s in secrets)
    # Nor in what dlt keeps on disk (pipeline state, schemas, traces, load packages).
    kept = [f for f in Path(fulfil_env["FULFIL_DATA_DIR"]).rglob("*") if f.is_file()]
    assert kept and not [f for f in kept for s in secrets if s.encode() in f.read_bytes()]


def test_rejected_credentials_fail_the_run_clearly(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LINNWORKS_APPLICATION_SECRET", "wrong-secret-value-123")
    defs = build_definitions(emulator_config(emulators, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("order_sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "credentials rejected by Linnworks" in text and "wrong-secret-value-123" not in text
    logs = " ".join(str(r) for r in instance.all_logs(result.run_id))
    assert "wrong-secret-value-123" not in logs


def test_crash_before_or_after_the_upload_sends_once(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch
) -> None:
    """A process killed mid-push (simulated: the one fault no real part produces on demand) loses nothing and
    sends nothing twice on the next run, even when the warehouse has already taken the file out of its inbox:
    what Whistl acknowledged decides, not our file lying in `in/`."""
    from fulfil_assets import effects
    from resources.file_drop import SftpDrop

    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)

    real_write = SftpDrop.write_atomic

    def crash_before_write(self, folder, name, data):
        raise KeyboardInterrupt("killed before the file was written")

    monkeypatch.setattr(SftpDrop, "write_atomic", crash_before_write)
    result = defs.resolve_job_def("order_sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    ledger = db.read(f"SELECT * FROM {SCHEMA}.wms_submissions")
    assert ledger.height > 0 and set(ledger["status"]) <= {"pending", "sending"} and "sending" in set(ledger["status"])
    monkeypatch.setattr(SftpDrop, "write_atomic", real_write)

    real_record_all = effects.record_all

    def crash_after_write(db_, table, outcomes, owner=None):
        if table == "wms_submissions" and any(o.status == effects.SENT for _, o in outcomes):
            raise KeyboardInterrupt("killed after the file was written")
        return real_record_all(db_, table, outcomes, owner)

    monkeypatch.setattr(effects, "record_all", crash_after_write)
    result = defs.resolve_job_def("order_sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert len(list(emu.whistl.inbox.glob("ord_*.csv"))) == 1
    monkeypatch.setattr(effects, "record_all", real_record_all)

    emu.whistl.step()  # the warehouse takes the file out of its inbox and acknowledges it
    assert not list(emu.whistl.inbox.glob("ord_*.csv"))
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    assert set(receipts) == set(ledger["order_ref"]) and set(receipts.values()) == {1}
    after = db.read(f"SELECT status, result FROM {SCHEMA}.wms_submissions")
    assert set(after["status"]) == {"sent"} and all("acknowledged in ack_" in r for r in after["result"])
