"""Cin7 Core ingestion over real HTTP: complete loads, incremental re-runs, faults, error bodies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dlt
import httpx
import polars as pl
import pytest

from emulators.cin7 import CARRIERS
from emulators.server import Emulators
from fulfil_assets.ingest.cin7_source import cin7_source
from resources.cin7 import Cin7Client
from resources.http import AuthError, TransientError
from resources.warehouse import WarehouseDb


def client_for(emu: Emulators, **kw: object) -> Cin7Client:
    account, key = emu.cin7.credentials
    return Cin7Client(emu.url("cin7"), account, key, **kw)  # type: ignore[arg-type]


def set_faults(emu: Emulators, **values: object) -> None:
    httpx.post(f"http://127.0.0.1:{emu.ports['cin7']}/_emulator/faults", json=values).raise_for_status()


def ship_at_cin7(emu: Emulators, sale_id: str, status: str, tracking_number: str) -> None:
    """One parcel on the sale's shipment at Cin7 (`AUTHORISED` ships it in full, `DRAFT` in part), the shape of
    fulfil's own tracking post, made at the emulator itself (no client budget spent)."""
    parcel = {
        "ShipmentDate": "2026-12-06",
        "Carrier": CARRIERS[0],
        "Box": "1",
        "TrackingNumber": tracking_number,
        "IsShipped": True,
    }
    emu.cin7.ship({}, {"TaskID": sale_id, "Status": status, "AddTrackingNumbers": True, "Lines": [parcel]})


def pipeline(tmp_path: Path, warehouse_url: str) -> dlt.Pipeline:
    db = WarehouseDb(warehouse_url)
    return dlt.pipeline(
        pipeline_name="test_cin7",
        dataset_name="raw_cin7",
        destination=db.dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )


def counts(warehouse_url: str) -> dict[str, int]:
    db = WarehouseDb(warehouse_url)
    return {
        t: int(db.read(f"SELECT COUNT(*) AS n FROM raw_cin7.{t}")["n"][0])
        for t in ("sale_list", "sales", "sales__order__lines", "product_availability")
    }


@pytest.mark.world(n_orders=20)  # three runs' calls within Cin7's 60 a minute
def test_loads_everything_then_only_changes(emulators: Emulators, warehouse_url: str, tmp_path: Path) -> None:
    emu = emulators
    client = client_for(emu, budget_share=1.0)
    sku = emu.world.wms_catalogue[0]
    httpx.post(
        f"{emu.url('cin7')}stockadjustment",
        headers=dict(zip(("api-auth-accountid", "api-auth-applicationkey"), emu.cin7.credentials, strict=True)),
        json={
            "EffectiveDate": "2026-11-20",
            "Status": "COMPLETED",
            "Reference": "fulfil-test",
            "Lines": [{"SKU": sku, "Quantity": 5}],
        },
    ).raise_for_status()
    p = pipeline(tmp_path, warehouse_url)
    p.run(cin7_source(client, page_size=15))
    got = counts(warehouse_url)
    db = WarehouseDb(warehouse_url)
    adjustments = db.read("SELECT task_id, status, reference FROM raw_cin7.stock_adjustments")
    assert adjustments.rows() == [(emu.cin7.adjustments[0]["TaskID"], "COMPLETED", "fulfil-test")]
    carriers = db.read("SELECT description FROM raw_cin7.carriers")["description"].to_list()
    assert sorted(carriers) == sorted(CARRIERS)
    paid = [s for s in emu.cin7.sales.values() if s.paid]
    assert got["sale_list"] == len(emu.cin7.sales) and got["sales"] == len(paid)
    assert got["sales__order__lines"] == sum(len(s.lines) for s in paid)
    assert got["product_availability"] == len(emu.cin7.available)
    some = paid[0]
    row = db.read("SELECT shipping_address__postcode, status FROM raw_cin7.sales WHERE id = :i", {"i": some.uid})
    assert row.rows() == [(some.address.postcode or None, emu.cin7.sale_status[some.uid])]

    # Second run: only what changed is listed, by Cin7's UpdatedSince (a void, new sales); the new paid ones are
    # read in detail, the voided one not (its list row says it).
    emu.cin7.control("void", {"sale_id": some.uid})
    new_ids = emu.cin7.control("spawn", {"n": 2})["sale_ids"]
    emu.cin7.recorder.clear()
    p.run(cin7_source(client, page_size=15))
    details = [c for c in emu.cin7.recorder.calls if c.path.lower().endswith("/sale")]
    assert {c.query.split("ID=")[1].split("&")[0] for c in details} == {i for i in new_ids if emu.cin7.sales[i].paid}
    status = db.read("SELECT status FROM raw_cin7.sale_list WHERE sale_id = :i", {"i": some.uid})["status"][0]
    assert status == "VOIDED"

    # Third run: a sale shipped in full at Cin7 (as fulfil's own tracking post leaves it) is listed again, its detail
    # not read again (one call at 60 a minute, per tracking post); one shipped in part is read.
    shipped, part = [s for s in emu.cin7.sales.values() if s.paid and s.uid != some.uid and s.lines][:2]
    ship_at_cin7(emu, shipped.uid, "AUTHORISED", f"T{shipped.number}")
    ship_at_cin7(emu, part.uid, "DRAFT", f"T{part.number}")
    emu.cin7.recorder.clear()
    p.run(cin7_source(client, page_size=15))
    listed = db.read("SELECT sale_id, combined_shipping_status FROM raw_cin7.sale_list")
    assert dict(listed.rows())[shipped.uid] == "SHIPPED"
    details = [c for c in emu.cin7.recorder.calls if c.path.lower().endswith("/sale")]
    assert [c.query.split("ID=")[1].split("&")[0] for c in details] == [part.uid]


def test_complete_under_throttling_old_503_and_error_bodies(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    client = client_for(emu, budget_share=1.0)
    client.get("me")
    set_faults(emu, throttle_next=2, throttle_503=True, error_in_200_next=1, error_next=1, error_status=502)
    pipeline(tmp_path, url).run(cin7_source(client, page_size=10))
    assert counts(url)["sales"] == len(emu.cin7.sales)
    assert client.stats.retries >= 4
    assert emu.cin7.recorder.status_counts[503] >= 2


def test_bad_credentials_and_persistent_errors_say_what(emulators: Emulators) -> None:
    client = Cin7Client(emulators.url("cin7"), "acct", "wrong-key-999")
    with pytest.raises(AuthError) as info:
        client.get("me")
    assert "credentials rejected by Cin7 Core" in str(info.value) and "wrong-key-999" not in str(info.value)
    good = client_for(emulators, max_attempts=2)
    set_faults(emulators, error_in_200_next=5)
    with pytest.raises(TransientError, match=r"Cin7 Core saleList: ErrorCode 500 in HTTP 200"):
        good.get("saleList")


def test_staged_cin7_orders_match_what_cin7_holds(emulators: Emulators, tmp_path: Path) -> None:
    from fulfil_assets.stage.cin7 import stage_cin7

    emu = emulators
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    assert all(s.paid for s in emu.cin7.sales.values())  # the small world's sales: every one read in detail
    client = client_for(emu, budget_share=1.0)
    p = pipeline(tmp_path, url)
    p.run(cin7_source(client))
    # A sale then voided, or shipped in full, is not read in detail again: its status comes from the sale list.
    some, shipped = [s for s in emu.cin7.sales.values() if s.lines][:2]
    emu.cin7.control("void", {"sale_id": some.uid})
    voided_at = emu.cin7.sales[some.uid].updated_at
    ship_at_cin7(emu, shipped.uid, "AUTHORISED", "T1")
    emu.cin7.recorder.clear()
    p.run(cin7_source(client))
    assert not [c for c in emu.cin7.recorder.calls if c.path.lower().endswith("/sale")]
    db = WarehouseDb(url)
    orders, lines = stage_cin7(
        db.read("SELECT * FROM raw_cin7.sales"),
        db.read("SELECT * FROM raw_cin7.sales__order__lines"),
        db.read("SELECT * FROM raw_cin7.sale_list"),
    )
    assert orders.height == len(emu.cin7.sales) and lines.height == sum(len(s.lines) for s in emu.cin7.sales.values())
    by_key = {r["order_key"]: r for r in orders.iter_rows(named=True)}
    for sale in emu.cin7.sales.values():
        row = by_key[f"cin7:{sale.uid}"]
        assert (row["order_ref"], row["paid"], row["shipping_method"], row["postcode"] or "", row["country_code"]) == (
            f"SO-{sale.number}",
            sale.paid,
            sale.shipping_method,
            sale.address.postcode,
            sale.address.country_code,
        )
    assert by_key[f"cin7:{some.uid}"]["status"] == "cancelled"
    # ... and when it changed: the list's, later than the detail read before the void.
    assert abs(by_key[f"cin7:{some.uid}"]["updated_at"] - voided_at) < timedelta(seconds=1)
    assert emu.cin7.sale_status[shipped.uid] == "SHIPPED" and by_key[f"cin7:{shipped.uid}"]["status"] == "despatched"
    assert lines.filter(pl.col("order_key") == f"cin7:{some.uid}")["sku"].to_list() == [li.sku for li in some.lines]


@pytest.mark.world(n_orders=20)
def test_a_draft_is_read_once_authorised_and_payment_undone_is_seen_from_the_list(
    emulators: Emulators, tmp_path: Path
) -> None:
    """A draft sale costs no detail call (60 a minute) until Cin7 lists it authorised; one taken back to draft after
    it was read is staged unpaid from its list row, without a detail call."""
    from fulfil_assets.stage.cin7 import stage_cin7

    emu = emulators
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    client = client_for(emu, budget_share=1.0)
    p = pipeline(tmp_path, url)
    db = WarehouseDb(url)
    draft, undone = list(emu.cin7.sales.values())[:2]
    emu.cin7.control("draft", {"sale_id": draft.uid})

    def run() -> tuple[list[str], dict[str, dict[str, object]]]:
        emu.cin7.recorder.clear()
        p.run(cin7_source(client, page_size=15))
        read = [c.query.split("ID=")[1].split("&")[0] for c in emu.cin7.recorder.calls if c.path.endswith("/sale")]
        orders, _ = stage_cin7(
            db.read("SELECT * FROM raw_cin7.sales"),
            db.read("SELECT * FROM raw_cin7.sales__order__lines"),
            db.read("SELECT * FROM raw_cin7.sale_list"),
        )
        return read, {r["order_key"]: r for r in orders.iter_rows(named=True)}

    read, staged = run()
    assert sorted(read) == sorted(s for s in emu.cin7.sales if s != draft.uid)
    assert f"cin7:{draft.uid}" not in staged and staged[f"cin7:{undone.uid}"]["paid"] is True
    emu.cin7.control("authorise", {"sale_id": draft.uid})
    emu.cin7.control("draft", {"sale_id": undone.uid})
    read, staged = run()
    assert read == [draft.uid]
    assert staged[f"cin7:{draft.uid}"]["paid"] is True and staged[f"cin7:{undone.uid}"]["paid"] is False
    assert len(staged) == len(emu.cin7.sales)


@pytest.mark.world(n_orders=20)
def test_a_backlog_goes_in_runs_of_a_few_details_each_going_on_from_the_last(
    emulators: Emulators, warehouse_url: str, tmp_path: Path
) -> None:
    """With `max_details`, each run reads at most that many sales in detail and the next goes on from there: every
    sale is read once, none twice, including one placed while the backlog was being read."""
    emu = emulators
    client = client_for(emu, budget_share=1.0)
    p = pipeline(tmp_path, warehouse_url)
    read: list[list[str]] = []
    placed: list[str] = []
    for run in range(10):
        emu.cin7.recorder.clear()
        p.run(cin7_source(client, page_size=15, max_details=6).with_resources("sale_list", "sales"))
        ids = [c.query.split("ID=")[1].split("&")[0] for c in emu.cin7.recorder.calls if c.path.endswith("/sale")]
        read.append(ids)
        if run == 1:
            placed = emu.cin7.control("spawn", {"n": 1})["sale_ids"]
        if not ids:
            break
    assert all(len(ids) <= 6 for ids in read), read
    everything = [i for ids in read for i in ids]
    assert sorted(everything) == sorted(emu.cin7.sales) and len(set(everything)) == len(everything)
    assert placed[0] in everything and len(read) >= len(emu.cin7.sales) // 6 + 1
    sales = WarehouseDb(warehouse_url).read("SELECT COUNT(*) AS n FROM raw_cin7.sales")["n"][0]
    assert sales == len(emu.cin7.sales)
