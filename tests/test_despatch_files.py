"""Whistl's files are trusted only as far as they deserve: every bad file or row is quarantined with a reason and
never crashes the run, every good row is kept, nothing questionable reaches a customer's order. Real sensor ticks
and Dagster runs over the drop folder, on DuckDB and PostgreSQL; what Linnworks got is read from the emulator."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from flow_helpers import emulator_config, run_job, tick_sensor

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.despatch import intake
from resources.file_drop import LocalDrop
from resources.warehouse import SCHEMA, WarehouseDb

HEADER = (
    "order_reference,despatch_reference,line_number,sku,quantity_ordered,quantity_despatched,carrier,"
    "service_code,tracking_number,tracking_url,parcel_number,despatched_at,partial_flag,reason"
)


def row(ref: str, line: int, sku: str, qty: int, tracking: str, when: str = "2026-11-23T10:00:00Z", **kw: str) -> str:
    cells = {
        "order_reference": ref,
        "despatch_reference": kw.get("despatch_ref", f"D{ref}-1"),
        "line_number": kw.get("line_number", str(line)),
        "sku": sku,
        "quantity_ordered": str(qty),
        "quantity_despatched": kw.get("quantity", str(qty)),
        "carrier": "Whistl",
        "service_code": "WHISTL-T48",
        "tracking_number": tracking,
        "tracking_url": kw.get("url", f"https://track.whistl.co.uk/{tracking}"),
        "parcel_number": "1",
        "despatched_at": when,
        "partial_flag": "N",
        "reason": "",
    }
    return ",".join(cells.values())


def whole_order(order: pl.DataFrame, tracking: str, **kw: str) -> list[str]:
    """Despatch rows shipping every line of one order (`order`: its wms lines)."""
    return [
        row(r["order_ref"], r["line_no"], r["sku"], r["quantity"], tracking, **kw) for r in order.iter_rows(named=True)
    ]


@pytest.fixture
def world(emulators: Emulators, fulfil_env: dict, tmp_path: Path):
    """Orders sent to Whistl over a folder drop (the warehouse has taken them in)."""
    emu = emulators
    config = emulator_config(emu, tmp_path, systems={"whistl": {"drop_url": str(emu.whistl.root)}})
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    run_job(defs, "order_sync_job", instance)
    emu.whistl.step()
    lines = db.read(
        f"SELECT s.order_ref, s.order_key, l.wms_line_no AS line_no, l.sku, l.quantity FROM {SCHEMA}.wms_submissions s "
        f"JOIN {SCHEMA}.wms_order_lines l USING (order_key) ORDER BY s.order_ref, l.wms_line_no"
    )
    orders = [lines.filter(pl.col("order_ref") == ref) for ref in lines["order_ref"].unique(maintain_order=True)]
    return emu, defs, instance, db, orders


def drop(emu: Emulators, name: str, text: str | bytes) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    (emu.whistl.outbox / name).write_bytes(data)


def take_in(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> str | None:
    """One sensor tick, then each despatch run it asked for, which posts the tracking of what it took in (every
    one must succeed: bad files never crash a run)."""
    result = tick_sensor(defs, instance, cursor)
    for request in result.run_requests or []:
        run_job(defs, "despatch_job", instance, request.run_config)
    return result.cursor


def outcomes(db: WarehouseDb) -> dict[str, tuple[str, str | None]]:
    files = db.read(f"SELECT file_name, outcome, detail FROM {SCHEMA}.processed_files ORDER BY processed_at")
    return {n: (o, d) for n, o, d in files.iter_rows()}


def quarantined_rows(db: WarehouseDb, name: str) -> list[tuple[int, str]]:
    rows = db.read(
        f"SELECT line, reason FROM {SCHEMA}.quarantined_rows WHERE source_file = :f ORDER BY line", {"f": name}
    )
    return [(int(line), reason) for line, reason in rows.iter_rows()]


def tracking_at_linnworks(emu: Emulators, db: WarehouseDb, ref: str) -> list[str]:
    order_id = db.read(f"SELECT source_order_id FROM {SCHEMA}.orders WHERE order_ref = :r", {"r": ref})[0, 0]
    return [i["TrackingNumber"] for i in emu.linnworks.inspect()["shipping_info"].get(order_id, [])]


def test_bad_files_are_quarantined_and_good_rows_kept(world) -> None:
    emu, defs, instance, db, orders = world
    a, b, c, d, e = orders[:5]
    crlf = "\r\n"
    drop(emu, "shp_header_only.csv", HEADER + crlf)
    drop(emu, "shp_empty.csv", "")
    drop(emu, "shp_cr_only.csv", "\r".join([HEADER, *whole_order(a, "WHL1000000001")]) + "\r")
    lines = whole_order(b, "WHL1000000002")
    drop(emu, "shp_digits.csv", crlf.join([HEADER, lines[0].replace(",1,", ",\u00b2,", 1), *lines[1:]]) + crlf)
    # A dd/mm/yyyy first row must not decide how four good ISO rows are read.
    ddmm = row(c["order_ref"][0], 99, "SKU", 1, "WHL1000000003", when="23/11/2026 10:00", despatch_ref="DX-1")
    drop(emu, "shp_dates.csv", crlf.join([HEADER, ddmm, *whole_order(c, "WHL1000000003")]) + crlf)
    duplicate = whole_order(d, "WHL1000000004")
    drop(emu, "shp_dupes.csv", crlf.join([HEADER, *duplicate, duplicate[0]]) + crlf)
    bad_tracking = [
        *whole_order(e, '=HYPERLINK("http://evil.example")'),
        row("NOSUCH", 1, "X", 1, "WHL10000\x0000005", despatch_ref="DN-1"),
    ]
    drop(emu, "shp_tracking.csv", crlf.join([HEADER, *bad_tracking]) + crlf)
    drop(emu, "SHP_UPPER.CSV", crlf.join([HEADER, *whole_order(orders[5], "WHL1000000006")]) + crlf)
    drop(emu, "err_unknown.csv", "order_reference,reason_code,detail,source_file\r\nZZ404,SKU_UNKNOWN,x,ord.csv\r\n")
    drop(emu, "shp_cut.csv", (HEADER + crlf + whole_order(orders[6], "WHL1000000007")[0])[:-5])

    take_in(defs, instance)
    seen = outcomes(db)
    assert seen["shp_header_only.csv"][0] == "quarantined" and "no rows" in seen["shp_header_only.csv"][1]
    assert seen["shp_empty.csv"] == ("quarantined", "empty file")
    assert seen["shp_cut.csv"][0] == "quarantined" and "incomplete" in seen["shp_cut.csv"][1]
    quarantine = emu.whistl.outbox / "quarantine"
    assert (quarantine / "shp_cut.csv").exists()  # kept, never deleted, with its reason beside it
    assert "incomplete" in (quarantine / "shp_cut.csv.reason.txt").read_text()
    for name in ("shp_cr_only.csv", "shp_digits.csv", "shp_dates.csv", "shp_dupes.csv", "SHP_UPPER.CSV"):
        assert seen[name][0] == "processed", name
    assert quarantined_rows(db, "shp_digits.csv") == [(2, "line_number '²' is not a whole number")]
    assert [r for _, r in quarantined_rows(db, "shp_dates.csv")] == [
        "despatched_at '23/11/2026 10:00' is not an ISO 8601 time"
    ]
    assert quarantined_rows(db, "shp_dupes.csv")[0][1].startswith("repeats line 2")
    reasons = [r for _, r in quarantined_rows(db, "shp_tracking.csv")]
    assert len(reasons) == e.height + 1 and all("tracking number" in r or "control characters" in r for r in reasons)
    kept = db.read(f"SELECT source_file, COUNT(*) AS n FROM {SCHEMA}.despatches GROUP BY source_file")
    expected = {
        "shp_cr_only.csv": a.height,
        "shp_digits.csv": b.height - 1,
        "shp_dates.csv": c.height,
        "shp_dupes.csv": d.height,
        "SHP_UPPER.CSV": orders[5].height,
    }
    assert dict(kept.iter_rows()) == {k: v for k, v in expected.items() if v}
    # Nothing odd reached Linnworks; the good files' tracking did.
    calls = [str(c.body) for c in emu.linnworks.recorder.calls]
    assert not [c for c in calls if "HYPERLINK" in c or "\x00" in c]
    assert tracking_at_linnworks(emu, db, a["order_ref"][0]) == ["WHL1000000001"]
    assert tracking_at_linnworks(emu, db, e["order_ref"][0]) == []
    unknown = db.read(
        f"SELECT reason_code, owner, detail FROM {SCHEMA}.order_exceptions WHERE order_key = 'whistl:ZZ404'"
    )
    assert unknown.rows() == [("WMS_REJECTED", "office", unknown["detail"][0])] and "never sent" in unknown["detail"][0]
    # Every file is kept: processed ones archived, the rest in quarantine; none left behind, none deleted.
    archived = {p.name for p in (emu.whistl.outbox / "archive").iterdir()}
    quarantine = {p.name for p in (emu.whistl.outbox / "quarantine").iterdir()}
    assert {"shp_header_only.csv", "shp_empty.csv", "shp_cut.csv"} <= quarantine
    assert {"shp_cr_only.csv", "SHP_UPPER.CSV", "err_unknown.csv"} <= archived
    assert not [p for p in emu.whistl.outbox.glob("*.csv") if p.name.lower().startswith(("shp_", "err_"))]


def test_over_shipped_orders_wait_for_a_person_and_corrected_resends_post_the_new_tracking(world) -> None:
    emu, defs, instance, db, orders = world
    a, b = orders[:2]
    over = [
        r.replace(f",{q},{q},", f",{q},{q + 5},", 1)
        for r, q in zip(whole_order(a, "WHL2000000001"), a["quantity"], strict=True)
    ]
    drop(emu, "shp_over.csv", "\r\n".join([HEADER, *over]) + "\r\n")
    drop(emu, "shp_fix.csv", "\r\n".join([HEADER, *whole_order(b, "WHL2000000002")]) + "\r\n")
    take_in(defs, instance)
    problem = db.read(
        f"SELECT reason_code FROM {SCHEMA}.order_exceptions WHERE order_key = :k", {"k": a["order_key"][0]}
    )
    assert problem["reason_code"].to_list() == ["DESPATCH_OVER_QUANTITY"]
    assert tracking_at_linnworks(emu, db, a["order_ref"][0]) == [], "over-shipped order must not be posted"
    assert tracking_at_linnworks(emu, db, b["order_ref"][0]) == ["WHL2000000002"]

    # The warehouse re-sends the same file name with a corrected tracking number.
    drop(emu, "shp_fix.csv", "\r\n".join([HEADER, *whole_order(b, "WHL2000000099")]) + "\r\n")
    take_in(defs, instance)
    assert tracking_at_linnworks(emu, db, b["order_ref"][0]) == ["WHL2000000002", "WHL2000000099"]
    archived = sorted((emu.whistl.outbox / "archive").glob("shp_fix*.csv"))
    assert len(archived) == 2, "both versions are kept"
    assert "WHL2000000002" in (emu.whistl.outbox / "archive" / "shp_fix.csv").read_text(), "original overwritten"
    # And the same content again changes nothing.
    drop(emu, "shp_fix.csv", "\r\n".join([HEADER, *whole_order(b, "WHL2000000099")]) + "\r\n")
    take_in(defs, instance)
    assert tracking_at_linnworks(emu, db, b["order_ref"][0]) == ["WHL2000000002", "WHL2000000099"]


def test_sensor_waits_for_a_file_to_settle_and_hashes_each_file_once(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, taken, instance, db, orders = world
    take_in(taken, instance)  # Whistl's acknowledgements of the orders: nothing else waits in out/
    config = emulator_config(
        emu, tmp_path, systems={"whistl": {"drop_url": str(emu.whistl.root)}}, schedules={"despatch_settle_seconds": 60}
    )
    defs = build_definitions(config)
    reads: list[str] = []
    real_read = LocalDrop.read

    def counted(self, folder, name):
        reads.append(name)
        return real_read(self, folder, name)

    monkeypatch.setattr(LocalDrop, "read", counted)
    a = orders[0]
    lines = whole_order(a, "WHL3000000001")
    path = emu.whistl.outbox / "shp_growing.csv"
    path.write_text(HEADER + "\r\n" + lines[0] + "\r\n")  # the warehouse is still writing it
    first = tick_sensor(defs, instance, None)
    assert not first.run_requests and reads == []
    with path.open("a") as fh:  # it grows: still not settled
        fh.write("".join(line + "\r\n" for line in lines[1:]))
    second = tick_sensor(defs, instance, first.cursor)
    assert not second.run_requests
    third = tick_sensor(defs, instance, second.cursor)  # unchanged since the last tick: settled, read once
    assert [r.tags["fulfil/file"] for r in third.run_requests] == ["shp_growing.csv"] and reads == ["shp_growing.csv"]
    old = time.time() - 3600
    os.utime(path, (old, old))  # a quiet file changes nothing either way: no new read on the next ticks
    fourth = tick_sensor(defs, instance, third.cursor)
    tick_sensor(defs, instance, fourth.cursor)
    assert reads == ["shp_growing.csv", "shp_growing.csv"]  # mtime changed once: hashed once more, then cached
    for request in third.run_requests:
        run_job(defs, "despatch_job", instance, request.run_config)
    assert db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.despatches")["n"][0] == a.height


def test_a_file_whose_intake_fails_stays_in_out_while_the_others_tracking_goes(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault no real part gives on demand (the warehouse lost mid-file, a fault in fulfil): one file's intake raises.
    emu, defs, instance, db, orders = world
    a, b = orders[:2]
    drop(emu, "shp_fault.csv", "\r\n".join([HEADER, *whole_order(a, "WHL4000000001")]) + "\r\n")
    drop(emu, "shp_fine.csv", "\r\n".join([HEADER, *whole_order(b, "WHL4000000002")]) + "\r\n")
    real_take = intake.take_despatch_file

    def faulty(db: WarehouseDb, name: str, data: bytes, now: datetime, flows: dict[str, bool]) -> dict[str, int]:
        if name == "shp_fault.csv":
            raise ConnectionError("the warehouse went away")
        return real_take(db, name, data, now, flows)

    monkeypatch.setattr(intake, "take_despatch_file", faulty)
    first = tick_sensor(defs, instance, None)
    (run,) = [run_job(defs, "despatch_job", instance, r.run_config) for r in first.run_requests or []]
    (check,) = files_check(run)  # the run succeeds, red on the file it could not take in
    assert not check.passed and check.metadata["files_failed"].value == ["shp_fault.csv"]
    assert tracking_at_linnworks(emu, db, b["order_ref"][0]) == ["WHL4000000002"]
    assert tracking_at_linnworks(emu, db, a["order_ref"][0]) == []
    assert (emu.whistl.outbox / "shp_fault.csv").exists() and "shp_fault.csv" not in outcomes(db)
    # Once the fault has gone, the file's next run takes it in, and its tracking goes once.
    monkeypatch.setattr(intake, "take_despatch_file", real_take)
    again = {"ops": {"despatches": {"config": {"file_names": ["shp_fault.csv"]}}}}
    assert [c.passed for c in files_check(run_job(defs, "despatch_job", instance, again))] == [True]
    run_job(defs, "despatch_job", instance, again)  # once more: nothing changes
    assert tracking_at_linnworks(emu, db, a["order_ref"][0]) == ["WHL4000000001"]
    assert tracking_at_linnworks(emu, db, b["order_ref"][0]) == ["WHL4000000002"]
    assert outcomes(db)["shp_fault.csv"][0] == "processed" and not (emu.whistl.outbox / "shp_fault.csv").exists()


def files_check(run: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    """The run's `despatches:every_file_taken_in` evaluations."""
    return [c for c in run.get_asset_check_evaluations() if c.check_name == "every_file_taken_in"]
