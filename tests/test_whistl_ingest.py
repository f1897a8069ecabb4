"""Whistl's files through dlt's filesystem source, over real SFTP and from a folder; snapshot staging."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import dlt
import polars as pl
import pytest

from emulators.server import Emulators
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions
from fulfil_assets.ingest.whistl_source import LISTING_LAG_S, drop_location, forget_old, whistl_source
from fulfil_assets.stage.assets import snapshot_rows_to_stage
from fulfil_assets.stage.stock import whistl_stock
from resources.warehouse import SCHEMA, WarehouseDb


@pytest.mark.parametrize("via", ["sftp", "folder"])
def test_every_row_of_every_file_once_and_new_files_on_the_next_run(
    emulators: Emulators, tmp_path: Path, via: str
) -> None:
    emu = emulators
    out = emu.whistl.root / "out"
    first = emu.whistl.snapshot()
    (out / "archive").mkdir(parents=True, exist_ok=True)
    # A snapshot already archived, one with an extra cell, one that is not text; a despatch file is not loaded
    # here (the despatch stage takes it in whole).
    head = "sku,on_hand,allocated,available,snapshot_at\n"
    (out / "archive" / "inv_1.csv").write_text(
        head + "ABC,1,0,1,2026-12-01T00:00:00Z\nDEF,2,0,2,2026-12-01T00:00:00Z\n"
    )
    (out / "inv_2.csv").write_text(head + "ABC,3,0,3,2026-12-01T01:00:00Z,surprise\n")
    (out / "inv_3.csv").write_bytes(head.encode() + b"\xff\xfe\n")
    (out / "shp_4.csv").write_text("order_reference,despatch_reference,line_number,quantity_despatched\nLW1,D1,1,1\n")
    url = f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/" if via == "sftp" else str(emu.whistl.root)
    bucket, credentials = drop_location(url, emu.config.sftp_password, host_key=emu.sftp_host_key)
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    p = dlt.pipeline(
        pipeline_name=f"t_whistl_{via}",
        dataset_name="raw_whistl",
        destination=db.dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )
    p.run(whistl_source(bucket, credentials))
    skus = len(emu.world.wms_catalogue)
    snap = db.read(f"SELECT * FROM raw_whistl.stock_snapshots WHERE _file_name = '{first}'")
    assert snap.height == skus
    assert snap.schema["snapshot_at"] == pl.String, "cells stay text"
    rows = db.read(
        "SELECT _file_name, _row_no, sku, _extra_fields FROM raw_whistl.stock_snapshots "
        f"WHERE _file_name <> '{first}' ORDER BY 1, 2"
    )
    assert rows.rows() == [
        ("inv_1.csv", 1, "ABC", None),
        ("inv_1.csv", 2, "DEF", None),
        ("inv_2.csv", 1, "ABC", "surprise"),
    ]
    bad = db.read("SELECT _file_name, reason FROM raw_whistl.unreadable_files")
    assert bad["_file_name"].to_list() == ["inv_3.csv"] and "not UTF-8" in bad["reason"][0]
    assert "despatch_confirmations" not in set(
        db.read("SELECT table_name FROM information_schema.tables")["table_name"]
    )

    # Next run: a new snapshot and the first moved to the archive; nothing is duplicated, the new file arrives.
    emu.whistl.adjust(emu.world.wms_catalogue[0], -1)
    second = emu.whistl.snapshot(datetime.now(UTC))
    (out / first).rename(out / "archive" / first)
    p.run(whistl_source(bucket, credentials))
    counts = dict(db.read("SELECT _file_name, COUNT(*) AS n FROM raw_whistl.stock_snapshots GROUP BY 1").iter_rows())
    assert counts == {first: skus, second: skus, "inv_1.csv": 2, "inv_2.csv": 1}
    # Only the new file was read: the listing looks an hour back, but the others (the first one moved, too) are
    # as they were when last read.
    assert p.last_trace.last_normalize_info.row_counts["stock_snapshots"] == skus


def test_newest_snapshot_is_staged_and_its_bad_rows_quarantined() -> None:
    def rows(name: str, at: str, body: list[tuple[str, str, str, str]]) -> list[dict[str, object]]:
        return [
            {
                "sku": s,
                "on_hand": h,
                "allocated": a,
                "available": v,
                "snapshot_at": at,
                "_file_name": name,
                "_row_no": i,
            }
            for i, (s, h, a, v) in enumerate(body, start=1)
        ]

    raw = pl.DataFrame(
        rows("inv_b.csv", "2026-11-22T09:00:00Z", [("OLD1", "1", "0", "1")])
        + rows(
            "inv_a.csv",  # newer by its content, though its name sorts first
            "2026-11-22T10:00:00Z",
            [
                ("ABC1", "5", "2", "3"),
                ("", "1", "0", "1"),
                ("ABC2", "x", "0", "1"),
                ("ABC3", "4", "0", "4"),
                ("ABC3", "4", "0", "4"),
            ],
        )
    )
    good, bad = whistl_stock(raw)
    assert good.select("sku", "on_hand", "allocated", "available", "source_file").rows() == [
        ("ABC1", 5, 2, 3, "inv_a.csv")
    ]
    assert good["snapshot_at"][0] == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert bad.select("line", "reason").rows() == [
        (3, "no sku"),
        (4, "on_hand x is not a whole number"),
        (5, "sku listed twice"),
        (6, "sku listed twice"),
    ]
    empty_good, empty_bad = whistl_stock(pl.DataFrame())
    assert empty_good.is_empty() and empty_bad.is_empty()


def stock_job(emu: Emulators) -> tuple[dg.JobDefinition, list[dg.AssetKey]]:
    """The job and asset selection that take Whistl's files in and stage `wms_stock` (folder drop)."""
    config = FulfilConfig.model_validate(
        {
            "flows": ["linnworks_whistl"],
            "systems": {"linnworks": {"base_url": emu.url("linnworks")}, "whistl": {"drop_url": str(emu.whistl.root)}},
        }
    )
    job = build_definitions(config).resolve_implicit_global_asset_job_def()
    names = (["raw_whistl", "stock_snapshots"], ["wms_stock"])
    return job, [dg.AssetKey(n) for n in names]


def test_an_unusable_snapshot_keeps_the_last_good_one(emulators: Emulators, fulfil_env: dict, tmp_path: Path) -> None:
    emu = emulators
    job, keys = stock_job(emu)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])

    def stock() -> pl.DataFrame:
        return db.read(f"SELECT source_file, COUNT(*) AS n FROM {SCHEMA}.wms_stock WHERE wms = 'whistl' GROUP BY 1")

    good = emu.whistl.snapshot()
    assert job.execute_in_process(instance=instance, asset_selection=keys).success
    assert stock().rows() == [(good, len(emu.world.wms_catalogue))]
    # A newer snapshot with not one usable row (quantities are not numbers): the catalogue must not empty.
    (emu.whistl.root / "out" / "inv_29991231T000000_99999.csv").write_text(
        "sku,on_hand,allocated,available,snapshot_at\nABC1,x,0,1,2999-12-31T00:00:00Z\nABC2,1,?,1,2999-12-31T00:00:00Z\n"
    )
    for _ in range(2):  # twice: the file's rows are quarantined once
        assert job.execute_in_process(instance=instance, asset_selection=keys).success
        assert stock().rows() == [(good, len(emu.world.wms_catalogue))]
    quarantined = db.read(
        f"SELECT line, reason FROM {SCHEMA}.quarantined_rows WHERE source = 'whistl_stock' ORDER BY line"
    ).rows()
    assert quarantined == [(2, "on_hand x is not a whole number"), (3, "allocated ? is not a whole number")]

    # Staging reads again only the snapshot in use (the judged files are never read again), and once a newer good
    # one has been applied, only that one.
    def staged_next() -> set[str]:
        judged = db.read(f"SELECT file_name, content_hash, outcome FROM {SCHEMA}.processed_files WHERE kind = 'inv'")
        return set(snapshot_rows_to_stage(db, judged)["_file_name"])

    assert staged_next() == {good}
    newer = emu.whistl.snapshot(datetime.now(UTC) + timedelta(minutes=1))
    assert job.execute_in_process(instance=instance, asset_selection=keys).success
    assert stock().rows() == [(newer, len(emu.world.wms_catalogue))]
    assert staged_next() == {newer}


def test_a_snapshot_is_applied_only_when_complete_and_plausible(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """Half-written, much shorter, future-dated, empty, header-only, `;`-separated and latin-1 stock files never
    become the catalogue: each is quarantined (moved, an exception for the warehouse owner) and the last good
    snapshot stays; a same-named shorter re-send replaces the first rather than merging with it; a later good
    snapshot applies."""
    emu = emulators
    job, keys = stock_job(emu)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    out = emu.whistl.root / "out"
    skus = len(emu.world.wms_catalogue)

    def run() -> None:
        assert job.execute_in_process(instance=instance, asset_selection=keys).success

    def stock() -> list[tuple[str, int]]:
        return db.read(f"SELECT source_file, COUNT(*) FROM {SCHEMA}.wms_stock WHERE wms = 'whistl' GROUP BY 1").rows()

    good = emu.whistl.snapshot()
    run()
    assert stock() == [(good, skus)]
    text = (out / "archive" / good).read_text()
    header, *lines = text.splitlines(keepends=True)
    future = "".join(lines).replace(lines[0].rsplit(",", 1)[1].strip(), "2999-01-01T00:00:00Z")
    bad_files = {
        "inv_20990101_half.csv": (
            header + "".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:7],
            "incomplete",
        ),
        "inv_20990102_short.csv": (header + "".join(lines[:10]), "usable rows against"),
        "inv_20990103_future.csv": (header + future, "in the future"),
        "inv_20990104_empty.csv": ("", "empty file"),
        "inv_20990105_header.csv": (header, "a header and no rows"),
        "inv_20990106_semicolon.csv": (header.replace(",", ";") + lines[0].replace(",", ";"), "missing columns"),
    }
    for name, (body, _) in bad_files.items():
        (out / name).write_text(body)
    (out / "inv_20990107_latin1.csv").write_bytes((header + lines[0].replace(",", ",Caf\u00e9 ", 1)).encode("latin-1"))
    bad_files["inv_20990107_latin1.csv"] = ("", "not UTF-8")
    old = datetime.now(UTC).timestamp() - 3600  # the cut file has not changed for an hour: not still being written
    os.utime(out / "inv_20990101_half.csv", (old, old))
    run()
    assert stock() == [(good, skus)], "a file that cannot be trusted replaced the catalogue"
    verdicts = dict(
        db.read(
            f"SELECT file_name, detail FROM {SCHEMA}.processed_files WHERE kind = 'inv' AND outcome = 'quarantined'"
        ).iter_rows()
    )
    for name, (_, reason) in bad_files.items():
        assert reason in (verdicts.get(name) or ""), (name, verdicts.get(name))
        assert (out / "quarantine" / name).exists() and not (out / name).exists()
    owners = db.read(
        f"SELECT order_key, reason_code, owner FROM {SCHEMA}.order_exceptions WHERE rule = 'stock_snapshot'"
    )
    assert set(owners["order_key"]) == {f"whistl:file:{n}" for n in bad_files}
    assert set(owners.select("reason_code", "owner").rows()) == {("SNAPSHOT_REJECTED", "warehouse")}

    # A later real snapshot applies (the future-dated one froze nothing); a shorter same-named re-send replaces it.
    newer = emu.whistl.snapshot()
    run()
    assert stock() == [(newer, skus)]
    newer_header, *newer_lines = (out / "archive" / newer).read_text().splitlines(keepends=True)
    (out / newer).write_text(newer_header + "".join(newer_lines[: skus - 2]))
    run()
    assert stock() == [(newer, skus - 2)], "the re-send must replace the first version, not merge with it"
    assert len(list((out / "archive").glob(newer.replace(".csv", "*")))) == 2, "both versions are kept"


def test_a_file_moved_between_the_listing_and_the_read_is_skipped_not_a_failed_run(tmp_path: Path) -> None:
    """Another run archives a stock file after this run listed it: this run reads the others and goes on (the
    moved file is listed again under out/archive/ next time); before, the whole Whistl read failed."""
    from dlt.sources.filesystem import filesystem

    from fulfil_assets.ingest.whistl_source import REQUIRED, file_reader

    out = tmp_path / "out"
    out.mkdir()
    head = "sku,on_hand,allocated,available,snapshot_at\n"
    (out / "inv_1.csv").write_text(head + "A1,1,0,1,2026-12-06T10:00:00Z\n")
    (out / "inv_2.csv").write_text(head + "B2,2,0,2,2026-12-06T10:00:00Z\n")
    listed = list(filesystem(bucket_url=tmp_path.as_uri(), file_glob="out/**/inv_*.csv"))
    assert sorted(i["file_name"] for i in listed) == ["inv_1.csv", "inv_2.csv"]
    (out / "archive").mkdir()
    (out / "inv_1.csv").rename(out / "archive" / "inv_1.csv")  # what another run's staging does
    pages = dlt.resource([listed], name="listing")  # the listing's one page, read as the source reads it
    rows = list(pages | file_reader(REQUIRED["stock_snapshots"], read={}))
    assert [(r["_file_name"], r["sku"]) for r in rows] == [("inv_2.csv", "B2")]


def test_what_was_read_is_forgotten_only_past_twice_the_listing_lag() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    edge = now - timedelta(seconds=2 * LISTING_LAG_S)
    read = {
        "inv_old.csv": [f"{(edge - timedelta(microseconds=1)).isoformat()} 10"],
        "inv_edge.csv": [f"{edge.isoformat()} 10"],
        # One name in two versions: the older one goes, the newer one stays.
        "inv_both.csv": [f"{(edge - timedelta(seconds=1)).isoformat()} 10", f"{now.isoformat()} 12"],
        # Another zone's offset is compared as a time, not as text.
        "inv_zone.csv": [f"{(edge + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=-5))).isoformat()} 9"],
    }
    forget_old(read, now)
    assert read == {
        "inv_edge.csv": [f"{edge.isoformat()} 10"],
        "inv_both.csv": [f"{now.isoformat()} 12"],
        "inv_zone.csv": read["inv_zone.csv"],
    }
