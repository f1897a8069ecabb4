"""The reconciled tables analysts query, built by real Dagster runs from a seeded world with planted gaps, on
DuckDB and PostgreSQL: each table finds exactly what the emulators themselves show (orders the warehouse has not
despatched, despatches whose tracking Linnworks refused, stock someone changed in Linnworks), and the figures
finance closes on add up to what each side holds."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import drain_despatches, emulator_config, run_job, set_faults, whistl_world, world_expectations

from emulators.linnworks import PEOPLEVOX_LOCATION
from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.reconcile.reconciled import COLUMNS
from fulfil_assets.warehouse_tables import ensure_tables
from resources.warehouse import SCHEMA, WarehouseDb

NO_WAIT = {
    "unsent_minutes": 0,
    "despatch_sla_hours": 0,
    "oms_update_minutes": 0,
    "exception_hours": 0,
    "stuck_error": 10_000,  # amber, not red, however many
    "backlog_error": 1,  # red from the first
}
REFUSED_POSTS = 4


def _table(db: WarehouseDb, name: str) -> pl.DataFrame:
    return db.read(f"SELECT * FROM {SCHEMA}.{name}")


def _refs_by_id(db: WarehouseDb) -> dict[str, str]:
    return dict(db.read(f"SELECT source_order_id, order_ref FROM {SCHEMA}.orders").iter_rows())


def test_stuck_orders_latency_and_the_finance_figures_match_the_emulators(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    defs = build_definitions(emulator_config(emu, tmp_path, reconcile=NO_WAIT))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    run_job(defs, "order_sync_job", instance, world_expectations(emu, tmp_path))
    emu.whistl.step()  # received: acknowledged, not despatched
    _, cursor = drain_despatches(defs, instance, None)
    built = run_job(defs, "reconcile_job", instance)
    checks = {e.check_name: e for e in built.get_asset_check_evaluations()}
    stuck_check = checks["no_order_stuck_between_systems"]
    assert not stuck_check.passed and stuck_check.severity == dg.AssetCheckSeverity.WARN
    backlog = checks["exception_backlog"]
    open_now = db.read(f"SELECT owner FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL")
    assert not backlog.passed and backlog.severity == dg.AssetCheckSeverity.ERROR
    assert backlog.metadata["open_past_threshold"].value == open_now.height > 0

    whistl = emu.whistl.inspect()
    rejected = {r["order_reference"] for r in whistl["rejections"]}
    accepted = set(whistl["receipts"]) - rejected
    stuck = _table(db, "orders_stuck")
    assert set(stuck.filter(pl.col("stage") == "not_despatched")["order_ref"]) == accepted
    assert set(stuck.filter(pl.col("stage") == "not_despatched")["owner"]) == {"warehouse"}
    # Paid and open in Linnworks, not at the warehouse: held back by fulfil, or refused by Whistl.
    refs = _refs_by_id(db)
    paid_open = {refs[o.uid] for o in emu.linnworks.orders.values() if o.paid and o.status == "open" and o.uid in refs}
    not_sent = stuck.filter(pl.col("stage") == "not_sent")
    assert set(not_sent["order_ref"]) == paid_open - accepted
    assert not_sent["owner"].is_not_null().all() and not_sent["reason"].str.starts_with("held by ").all()

    # The warehouse ships everything; Linnworks refuses the first few tracking posts.
    set_faults(emu, "linnworks", error_next=REFUSED_POSTS, error_status=400, only_path="Orders/SetOrderShippingInfo")
    for _ in range(3):
        emu.whistl.step()
        _, cursor = drain_despatches(defs, instance, cursor, require_success=False)
    built = run_job(defs, "reconcile_job", instance)
    latency_check = next(
        e for e in built.get_asset_check_evaluations() if e.check_name == "tracking_latency_within_target"
    )
    assert latency_check.passed and 0 < latency_check.metadata["worst_p95_seconds"].value < 300

    rows = emu.whistl.inspect()["despatch_rows"]
    shipped_refs = {r["order_reference"] for r in rows if int(r["quantity_despatched"]) > 0}
    tracked_ids = {k for k, v in emu.linnworks.inspect()["shipping_info"].items() if v}
    untracked = {refs[i] for i in refs if refs[i] in shipped_refs and i not in tracked_ids}
    assert len(untracked) == REFUSED_POSTS
    stuck = _table(db, "orders_stuck")
    assert set(stuck.filter(pl.col("stage") == "open_in_oms")["order_ref"]) == untracked
    assert stuck.filter(pl.col("stage") == "not_despatched").is_empty()

    latency = _table(db, "despatch_latency").join(
        db.read(f"SELECT order_key, order_ref FROM {SCHEMA}.orders"), on="order_key"
    )
    assert set(latency.filter(pl.col("oms_updated_at").is_null())["order_ref"]) == untracked
    confirmed = latency.filter(pl.col("oms_updated_at").is_not_null())
    assert set(confirmed["order_ref"]) == shipped_refs - untracked
    assert (confirmed["latency_seconds"] >= 0).all()
    daily = _table(db, "despatch_latency_daily")
    assert daily["despatches"].sum() == latency.height and daily["updated"].sum() == confirmed.height
    assert (daily["p95_seconds"] >= daily["p50_seconds"]).all()

    # Finance: per day, what Linnworks holds beside what Whistl took, shipped, and Linnworks shows tracking for.
    finance = _table(db, "fulfilment_reconciliation")
    expected: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for o in emu.linnworks.orders.values():
        if o.uid not in refs:
            continue
        day = str(o.created_at.date())
        ref = refs[o.uid]
        if o.paid and o.status != "cancelled":
            expected[day]["oms_orders"] += 1
            expected[day]["oms_value"] += Decimal(str(emu.linnworks.render_open(o)["TotalsInfo"]["TotalCharge"]))
            if ref in accepted:
                expected[day]["sent_orders"] += 1
        if ref in shipped_refs:
            expected[day]["despatched_orders"] += 1
        if o.uid in tracked_ids:
            expected[day]["tracked_orders"] += 1
    got = {str(r["day"]): r for r in finance.iter_rows(named=True)}
    assert set(got) == set(expected)
    for day, figures in expected.items():
        for column in ("oms_orders", "sent_orders", "despatched_orders", "tracked_orders"):
            assert got[day][column] == figures[column], (day, column)
        assert got[day]["oms_value"] == figures["oms_value"], day  # money to the penny, no float residue
    # Every reconciled table says when it was built: one moment per build.
    for table in COLUMNS:
        built = _table(db, table)
        assert built.is_empty() or built["built_at"].n_unique() == 1, table
    assert finance["built_at"].null_count() == 0

    # What each day's work was, by the day it happened: despatches as Whistl's own rows date them, tracking as
    # Linnworks took it (its own clock), orders placed as the order system dated them.
    daily = {str(r["day"]): r for r in _table(db, "daily_activity").iter_rows(named=True)}
    shipped_on: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if int(r["quantity_despatched"]) > 0:
            shipped_on[str(r["despatched_at"])[:10]].add(r["order_reference"])
    assert {d: r["despatched_orders"] for d, r in daily.items() if r["despatched_orders"]} == {
        d: len(v) for d, v in shipped_on.items()
    }
    tracked_on = Counter(
        datetime.fromtimestamp(at, UTC).date().isoformat()
        for uid, at in emu.linnworks.timeline()["tracking_held"].items()
        if uid in refs
    )
    assert {d: r["tracked_orders"] for d, r in daily.items() if r["tracked_orders"]} == dict(tracked_on)
    placed_on = Counter(str(o.created_at.date()) for o in emu.linnworks.orders.values() if o.uid in refs)
    assert {d: r["placed_orders"] for d, r in daily.items() if r["placed_orders"]} == dict(placed_on)

    # The office's summary counts, per reason, what the world planted in the orders it holds open.
    summary = _table(db, "exception_summary")
    planted = Counter(
        code for o in emu.timeline()["orders"] if o["oms"] == "linnworks" and not o["cancelled"] for code in o["faults"]
    )
    counted = dict(summary.group_by("reason_code").agg(pl.col("open_exceptions").sum()).iter_rows())
    assert planted and {r: n for r, n in counted.items() if r in planted} == planted
    assert summary["example_order_refs"].str.len_chars().min() > 0


def test_orders_read_but_not_validated_are_named_with_their_flow_and_no_despatch_is_no_data(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """The cancellation job reads and stages every order system's orders each minute, but only the order sync
    validates them: an order read since the last sync (or while it cannot run) is stuck as `not_validated`, its flow
    taken from the routes (Linnworks' Peoplevox location here), and `no_flow` where no route takes its location;
    never an anonymous row. With nothing despatched, the latency check says no data (amber), never green."""
    emu = emulators
    emu.linnworks.peoplevox_share = 0.5
    config = emulator_config(
        emu,
        tmp_path,
        flows=["linnworks_peoplevox"],
        routes={"linnworks_peoplevox": {"locations": [PEOPLEVOX_LOCATION]}},
        systems={"peoplevox": {"base_url": emu.url("peoplevox")}},
        reconcile=NO_WAIT,
    )
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    paid_open = [o for o in emu.linnworks.orders.values() if o.paid and o.status == "open"]
    at_peoplevox = {f"linnworks:{o.uid}" for o in paid_open if emu.linnworks.location_of(o) == PEOPLEVOX_LOCATION}
    elsewhere = {f"linnworks:{o.uid}" for o in paid_open} - at_peoplevox
    assert at_peoplevox and elsewhere, "the seeded world must have paid orders at both Linnworks locations"

    run_job(defs, "linnworks_cancellation_job", instance)  # reads and stages; validates nothing
    built = run_job(defs, "reconcile_job", instance)
    stuck = _table(db, "orders_stuck")
    not_validated = stuck.filter(pl.col("stage") == "not_validated")
    assert set(not_validated["order_key"]) == at_peoplevox
    assert set(not_validated["flow"]) == {"linnworks_peoplevox"}
    assert not_validated["reason"].str.contains("not validated yet").all()
    no_flow = stuck.filter(pl.col("stage") == "no_flow")
    assert set(no_flow["order_key"]) == elsewhere and no_flow["flow"].is_null().all()
    assert no_flow["reason"].str.contains("no configured flow takes it").all()
    assert stuck.height == len(at_peoplevox) + len(elsewhere)
    checks = {e.check_name: e for e in built.get_asset_check_evaluations()}
    stuck_check = checks["no_order_stuck_between_systems"]
    assert stuck_check.metadata["stuck_not_validated"].value == len(at_peoplevox)
    latency = checks["tracking_latency_within_target"]
    assert not latency.passed and latency.severity == dg.AssetCheckSeverity.WARN
    assert latency.metadata["no_data"].value is True and latency.metadata["despatches_today"].value == 0
    assert "No data" in (latency.description or "")

    # The order sync validates them (and sends the ready ones to Peoplevox): none is left unvalidated.
    run_job(defs, "linnworks_order_sync_job", instance)
    run_job(defs, "reconcile_job", instance)
    stuck = _table(db, "orders_stuck")
    assert stuck.filter(pl.col("stage") == "not_validated").is_empty()
    routed = stuck.filter(pl.col("order_key").is_in(list(at_peoplevox)))
    assert set(routed["flow"]) == {"linnworks_peoplevox"}
    assert set(routed["stage"]) <= {"not_sent", "not_despatched", "exception_open"}
    assert set(stuck.filter(pl.col("stage") == "no_flow")["order_key"]) == elsewhere


def test_the_timeline_and_fulfil_trace_tell_an_orders_life(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    run_job(defs, "order_sync_job", instance)
    cursor = None
    for _ in range(4):
        emu.whistl.step()
        _, cursor = drain_despatches(defs, instance, cursor)
    run_job(defs, "reconcile_job", instance)

    timeline = _table(db, "order_timeline")
    ref = sorted({r["order_reference"] for r in emu.whistl.inspect()["despatch_rows"]})[0]
    events = timeline.filter(pl.col("order_ref") == ref).sort("seq")["event"].to_list()
    assert events[0] == "placed"
    for wanted in ("order sent (1 attempt(s))", "WMS answered ACCEPTED", "tracking sent (1 attempt(s))"):
        assert wanted in events, events
    assert any(e.startswith("despatch ") for e in events)
    assert events.index("order sent (1 attempt(s))") < next(i for i, e in enumerate(events) if e.startswith("despatch"))

    from fulfil_assets.cli import main

    assert main(["trace", ref]) == 0
    printed = capsys.readouterr().out
    assert ref in printed and "WMS answered ACCEPTED" in printed and "despatch " in printed
    assert main(["trace", "NO-SUCH-ORDER"]) == 1
    assert "no order NO-SUCH-ORDER" in capsys.readouterr().err


def _drift(db: WarehouseDb) -> pl.DataFrame:
    return _table(db, "stock_drift").filter(pl.col("flow") == "linnworks_whistl")


def test_stock_drift_names_the_sku_someone_changed_in_linnworks_and_since_when(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """Levels in step after a push; then someone adds 5 units of one SKU by hand in Linnworks while Linnworks
    fails fulfil's stock writes (503s): exactly that SKU drifts, by +5 (an oversell risk, the check is red), from
    the build that first saw it; once the writes go through again it is back in step."""
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    run_job(defs, "order_sync_job", instance)
    for _ in range(2):  # push, then read back what Linnworks now shows
        run_job(defs, "linnworks_whistl_stock_job", instance)
    run_job(defs, "reconcile_job", instance)
    in_step = _drift(db)
    assert in_step.height > 0 and in_step["drifting_since"].is_null().all()
    assert (in_step["difference"] == 0).all()

    sku, location = next(
        (r["sku"], r["location"]) for r in in_step.sort("sku").iter_rows(named=True) if r["available_to_sell"] > 0
    )
    emu.linnworks.stock[(sku, location)] += 5  # by hand, in Linnworks
    set_faults(emu, "linnworks", error_rate=1.0, error_status=503, only_path="Stock/SetStockLevel")
    run_job(defs, "linnworks_whistl_stock_job", instance)
    first = run_job(defs, "reconcile_job", instance)
    drifting = _drift(db).filter(pl.col("drifting_since").is_not_null())
    assert drifting.select("sku", "location", "difference").rows() == [(sku, location, 5)]
    since = drifting["drifting_since"][0]
    risk = [e for e in first.get_asset_check_evaluations() if e.check_name == "no_oversell_risk"]
    assert len(risk) == 1 and not risk[0].passed and risk[0].severity == dg.AssetCheckSeverity.ERROR
    assert risk[0].metadata["units_at_risk"].value == 5
    run_job(defs, "reconcile_job", instance)
    assert _drift(db).filter(pl.col("drifting_since").is_not_null())["drifting_since"].to_list() == [since]

    set_faults(emu, "linnworks", error_rate=0.0)
    for _ in range(2):
        run_job(defs, "linnworks_whistl_stock_job", instance)
    again = run_job(defs, "reconcile_job", instance)
    assert _drift(db)["drifting_since"].is_null().all()
    assert all(e.passed for e in again.get_asset_check_evaluations() if e.check_name == "no_oversell_risk")


def test_docs_tables_md_describes_every_column_the_tables_have() -> None:
    """docs/tables.md is made from the column descriptions the UI shows: regenerate it when a table changes
    (`python -c "from fulfil_assets.reconcile.reconciled import tables_markdown; print(tables_markdown(), end='')"`)."""
    from fulfil_assets.reconcile.reconciled import tables_markdown

    assert (Path(__file__).parent.parent / "docs" / "tables.md").read_text() == tables_markdown()


def test_checks_grade_a_count_against_their_amber_and_red_thresholds() -> None:
    from fulfil_assets.reconcile.assets import graded

    warn, error = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR
    assert [graded(n, 2, 5) for n in (0, 1, 2, 4, 5, 9)] == [
        (True, warn),
        (True, warn),
        (False, warn),
        (False, warn),
        (False, error),
        (False, error),
    ]


def test_fulfil_trace_finds_the_running_demos_warehouse_read_only_and_never_creates_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no `FULFIL_WAREHOUSE_URL`, `fulfil trace` reads the default warehouse or else a demo's (its analysts'
    copy first), read-only; with neither it says so and leaves no file or folder behind."""
    from fulfil_assets.cli import main
    from fulfil_assets.warehouse_tables import ensure_tables

    monkeypatch.delenv("FULFIL_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "LW100009"]) == 2
    assert "no warehouse found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing created
    demo = tmp_path / "data" / "demo" / "warehouse.duckdb"
    writer = WarehouseDb(f"duckdb:///{demo}")
    ensure_tables(writer)
    writer.dispose()
    before = sorted(p.name for p in demo.parent.iterdir())
    assert main(["trace", "LW100009"]) == 1  # the demo's warehouse was read: it has no such order
    assert "no order LW100009" in capsys.readouterr().err
    assert sorted(p.name for p in demo.parent.iterdir()) == before  # read-only: no lock file, no new file
    # An old default warehouse left from another day does not hide the running demo's (the newer one is read).
    old = tmp_path / "data" / "warehouse.duckdb"
    stale = WarehouseDb(f"duckdb:///{old}")
    ensure_tables(stale)
    stale.execute(
        f"INSERT INTO {SCHEMA}.orders (order_key, source_system, source_order_id, order_ref, status) "
        "VALUES ('linnworks:1', 'linnworks', '1', 'LW100009', 'open')"
    )
    stale.dispose()
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    assert main(["trace", "LW100009"]) == 1, "the day-old default warehouse was read, not the demo's"
    os.utime(old, None)
    assert main(["trace", "LW100009"]) == 0  # and the default one is read when it is the newer


def test_a_reconciled_table_an_earlier_version_made_is_made_again_and_nothing_else_is_touched(tmp_path: Path) -> None:
    """A warehouse whose `fulfilment_reconciliation` an earlier fulfil made (money as floats, no `built_at`): the
    next start makes that derived table again with today's columns (the next reconcile run fills it), and keeps
    every ledger row and every reconciled table already in today's shape."""
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    db.execute([
        f"DROP TABLE {SCHEMA}.fulfilment_reconciliation",
        f"CREATE TABLE {SCHEMA}.fulfilment_reconciliation (day DATE, flow TEXT, oms_value DOUBLE PRECISION)",
        f"INSERT INTO {SCHEMA}.fulfilment_reconciliation VALUES ('2026-12-01', 'linnworks_whistl', 29909.12)",
        f"INSERT INTO {SCHEMA}.stock_drift (flow, sku) VALUES ('linnworks_whistl', 'SKU1')",
        f"INSERT INTO {SCHEMA}.alerts (idempotency_key, order_key, kind, subject, status, created_at, updated_at) "
        "VALUES ('a1', '-', 'run', 'r', 'sent', now(), now())",
    ])  # fmt: skip
    ensure_tables(db)
    remade = db.read(f"SELECT * FROM {SCHEMA}.fulfilment_reconciliation")
    assert remade.columns == list(COLUMNS["fulfilment_reconciliation"]) and remade.is_empty()
    money = db.read(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'fulfilment_reconciliation' AND column_name = 'oms_value'"
    )
    assert money["data_type"].to_list() == ["DECIMAL(18,2)"]
    assert db.read(f"SELECT sku FROM {SCHEMA}.stock_drift")["sku"].to_list() == ["SKU1"]
    assert db.read(f"SELECT idempotency_key FROM {SCHEMA}.alerts")["idempotency_key"].to_list() == ["a1"]
