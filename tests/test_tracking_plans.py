"""What each order system is told about a despatch, planned without Dagster (pure polars), and the Shopify
fulfilment plan on a warehouse whose Linnworks has processed nothing yet."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from fulfil_assets import effects
from fulfil_assets.despatch.assets import plan_fulfilments
from fulfil_assets.despatch.checks import unsettled_tracking
from fulfil_assets.despatch.tracking import parcel_fulfilments, short_shipped, tracking_intents, whole_order_due
from fulfil_assets.warehouse_tables import ensure_tables
from fulfil_assets.whistl_formats import DESPATCH_SCHEMA
from resources.warehouse import WarehouseDb

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def despatch_rows(*rows: tuple) -> pl.DataFrame:
    """(order_key, despatch, line, parcel, sku, qty, tracking, minute, reason) -> despatch rows."""
    return pl.DataFrame(
        [
            {
                "wms": "whistl",
                "order_ref": key.split(":")[1],
                "order_key": key,
                "despatch_ref": despatch,
                "line_no": line,
                "parcel_no": parcel,
                "sku": sku,
                "quantity": qty,
                "carrier": "Whistl",
                "service_code": "WHISTL-T24",
                "tracking_number": tracking,
                "tracking_url": f"https://track.example/{tracking}" if tracking else "",
                "despatched_at": T0.replace(minute=minute),
                "partial": False,
                "source_file": "shp_1.csv",
                "reason": reason,
            }
            for key, despatch, line, parcel, sku, qty, tracking, minute, reason in rows
        ],
        schema={**DESPATCH_SCHEMA, "order_key": pl.String},
    )


LINES = pl.DataFrame(
    {
        "order_key": ["o:1", "o:1", "o:2", "o:2"],
        "line_no": [1, 2, 1, 2],
        "sku": ["A", "B", "A", "B"],
        "quantity": [2, 1, 1, 1],
    }
)


def owners(oms: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "order_key": ["o:1", "o:2"],
            "oms": [oms, oms],
            "source_order_id": ["101", "102"],
            "flow": [f"{oms}_whistl"] * 2,
        }
    )


def test_cin7_posts_each_despatch_and_the_completing_one_authorises() -> None:
    rows = despatch_rows(
        ("o:1", "D1", 1, 1, "A", 2, "T1", 1, None),  # order 1 in two despatches, the second with two parcels
        ("o:1", "D2", 2, 1, "B", 1, "T2", 5, None),
        ("o:1", "D2", 2, 2, "B", 0, "", 5, None),
        ("o:2", "D3", 1, 1, "A", 1, "T3", 2, None),  # order 2 ships line 1 only
    )
    intents = tracking_intents(rows, LINES, owners("cin7"))
    payloads = {r["despatch_ref"]: json.loads(r["payload"]) for r in intents.iter_rows(named=True)}
    assert set(intents["kind"]) == {"tracking"}  # no separate authorise call
    assert [p["authorise"] for p in (payloads["D1"], payloads["D2"], payloads["D3"])] == [False, True, False]
    assert [p["tracking_number"] for p in payloads["D2"]["parcels"]] == [
        "T2"
    ]  # a parcel that shipped nothing is left out
    assert payloads["D1"]["parcels"][0] == {
        "box": "1",
        "carrier": "Whistl",
        "tracking_number": "T1",
        "tracking_url": "https://track.example/T1",
        "shipped_at": "2026-11-30T09:01:00Z",
    }


def test_bigcommerce_gets_a_shipment_per_parcel_with_its_own_items() -> None:
    rows = despatch_rows(
        ("o:1", "D1", 1, 1, "A", 1, "T1", 1, None),
        ("o:1", "D1", 1, 2, "A", 1, "T2", 1, None),
        ("o:1", "D1", 2, 2, "B", 1, "T2", 1, None),
    )
    source = pl.DataFrame(
        {
            "order_key": ["o:1", "o:1"],
            "wms_line_no": [1, 2],
            "source_line_id": ["1011", "1012"],
            "ship_to_id": ["1010"] * 2,
            "source_quantity": [2, 1],
            "wms_quantity": [2, 1],
        }
    )
    intents = tracking_intents(rows, LINES, owners("bigcommerce"), source)
    shipments = sorted((json.loads(p) for p in intents["payload"]), key=lambda p: p["tracking_number"])
    assert [(s["tracking_number"], s["order_address_id"], s["items"]) for s in shipments] == [
        ("T1", "1010", [{"order_product_id": "1011", "quantity": 1}]),
        ("T2", "1010", [{"order_product_id": "1011", "quantity": 1}, {"order_product_id": "1012", "quantity": 1}]),
    ]
    assert "process" not in set(intents["kind"])  # BigCommerce closes the order itself


def test_a_line_shipped_short_is_flagged_and_the_order_is_not_closed() -> None:
    rows = despatch_rows(
        ("o:2", "D3", 1, 1, "A", 1, "T3", 2, None),
        ("o:2", "D3", 2, 1, "B", 0, "", 2, "OUT_OF_STOCK"),
    )
    problems = short_shipped(rows)
    assert problems.select("order_key", "reason_code").rows() == [("o:2", "DESPATCH_SHORT")]
    assert "line 2 (B): none shipped, OUT_OF_STOCK" in problems["detail"][0]
    intents = tracking_intents(rows, LINES, owners("linnworks"))
    assert intents.select("kind", "tracking_number").rows() == [("tracking", "T3")]  # no ProcessOrder
    assert short_shipped(despatch_rows(("o:1", "D1", 1, 2, "A", 0, "", 1, None))).is_empty()  # an empty parcel row


def test_no_fulfilment_is_planned_before_linnworks_processed_anything(tmp_path: Path) -> None:
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    # dlt made the table from cancelled orders only: there is no d_processed_on column yet.
    db.execute(
        [
            "CREATE SCHEMA raw_linnworks",
            "CREATE TABLE raw_linnworks.processed_orders (pk_order_id TEXT, d_cancelled_on TIMESTAMP WITH TIME ZONE)",
            "INSERT INTO raw_linnworks.processed_orders VALUES ('x', '2026-11-30 09:00:00+00')",
        ]
    )
    assert plan_fulfilments(db, {}) == 0


def test_the_latency_check_names_despatches_waiting_too_long(tmp_path: Path) -> None:
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    now = datetime.now(UTC)
    old, fresh = now.replace(microsecond=0) - timedelta(minutes=45), now - timedelta(minutes=5)
    rows = despatch_rows(("o:1", "D1", 1, 1, "A", 2, "T1", 1, None), ("o:2", "D3", 1, 1, "A", 1, "T3", 2, None))
    db.write("despatches", rows.with_columns(pl.Series("despatched_at", [old, fresh])))
    intents = tracking_intents(rows, LINES, owners("cin7"))
    effects.intend(db, "tracking_posts", intents)
    found = unsettled_tracking(db, "cin7", 30)
    assert found == {"refused_or_stuck": [], "late": ["cin7:tracking:o:1:D1:T1"]}
    assert unsettled_tracking(db, "linnworks", 30) == {"refused_or_stuck": [], "late": []}
    refused = effects.Outcome(effects.FAILED, error="400: Sale is VOIDED")  # as a send records Cin7's refusal
    effects.record(db, "tracking_posts", ["cin7:tracking:o:2:D3:T3"], refused)
    assert unsettled_tracking(db, "cin7", 30)["refused_or_stuck"] == ["cin7:tracking:o:2:D3:T3"]


def test_a_storefront_parcel_names_the_line_items_in_it() -> None:
    rows = despatch_rows(
        ("o:1", "D1", 1, 1, "A", 2, "T1", 1, None),  # two units of A in parcel 1, B in parcel 2
        ("o:1", "D1", 2, 2, "B", 1, "T2", 1, None),
    )
    links = pl.DataFrame(
        {"order_key": ["o:1"], "storefront_key": ["shopify:9"], "source_order_id": ["9"], "flow": ["shopify_linnworks"]}
    )
    lines = pl.DataFrame(  # A is on two Shopify lines (one unit each)
        {
            "storefront_key": ["shopify:9"] * 3,
            "sku": ["A", "A", "B"],
            "source_line_id": ["91", "92", "93"],
            "quantity": [1, 1, 1],
        }
    )
    intents = parcel_fulfilments(rows, links, lines)
    got = {json.loads(p)["tracking_number"]: json.loads(p)["items"] for p in intents["payload"]}
    assert got == {
        "T1": [{"line_item_id": "91", "quantity": 1}, {"line_item_id": "92", "quantity": 1}],
        "T2": [{"line_item_id": "93", "quantity": 1}],
    }
    assert set(intents["order_key"]) == {"shopify:9"} and set(intents["kind"]) == {"parcel"}


def test_a_whole_order_fulfilment_waits_for_the_parcels_and_is_not_planned_once_they_name_every_unit() -> None:
    """Shopify orders Linnworks processed: 1 has a parcel post still to send; 2's sent parcels name every unit;
    3's sent parcel names one of its two units; 4 has no parcel (Linnworks shipped it by other means); 5's and 6's
    parcels name every unit, but their posts did not fulfil them all."""
    links = pl.DataFrame({"order_key": [f"shopify:{n}" for n in range(1, 7)], "source_order_id": list("123456")})

    def parcel(key: str, status: str, *items: tuple[str, int], result: str | None = "fulfilment 7 success") -> dict:
        payload = {"items": [{"line_item_id": line, "quantity": q} for line, q in items]}
        return {"order_key": key, "status": status, "payload": json.dumps(payload), "result": result}

    parcels = pl.DataFrame(
        [
            parcel("shopify:1", effects.SENT, ("11", 1)),
            parcel("shopify:1", effects.PENDING, ("12", 1), result=None),
            parcel("shopify:2", effects.SENT, ("21", 1)),
            parcel("shopify:2", effects.SENT, ("21", 1), ("22", 3)),
            parcel("shopify:3", effects.SENT, ("31", 1)),
            parcel("shopify:3", effects.FAILED, ("31", 1), result=None),
            # 5 names both units, but its post found one fulfilled before; 6's found nothing left: not theirs
            parcel("shopify:5", effects.SENT, ("51", 2), result="fulfilment 8 success, only 1 of 2 units"),
            parcel("shopify:6", effects.SENT, ("61", 1), result="nothing left to fulfil (fulfillment orders closed)"),
        ]
    )
    lines = pl.DataFrame(
        {
            "order_key": [f"shopify:{n}" for n in (1, 1, 2, 2, 3, 4, 5, 6)],
            "source_line_id": ["11", "12", "21", "22", "31", "41", "51", "61"],
            "quantity": [1, 1, 2, 3, 2, 1, 2, 1],
        }
    )
    due = whole_order_due(links, parcels, lines)
    assert due["order_key"].to_list() == ["shopify:3", "shopify:4", "shopify:5", "shopify:6"]
    assert whole_order_due(links, parcels.clear(), lines)["order_key"].to_list() == links["order_key"].to_list()


def test_a_bundle_shipped_as_its_components_ships_as_one_storefront_line() -> None:
    """BigCommerce line 1012 is a bundle of 2 x B and 1 x C per unit, 2 units ordered: the warehouse got lines 2
    (B x 4) and 3 (C x 2). A unit ships once all its components have, in the despatch that completes it."""
    rows = despatch_rows(
        ("o:1", "D1", 2, 1, "B", 2, "T1", 1, None),  # one unit's B only: nothing of the bundle yet
        ("o:1", "D2", 2, 1, "B", 2, "T2", 5, None),
        ("o:1", "D2", 3, 2, "C", 1, "T3", 5, None),  # B for both units, C for one: one unit ships
        ("o:1", "D3", 3, 1, "C", 1, "T4", 9, None),  # the second unit completes
    )
    source = pl.DataFrame(
        {
            "order_key": ["o:1", "o:1"],
            "wms_line_no": [2, 3],
            "source_line_id": ["1012", "1012"],
            "ship_to_id": ["1010", "1010"],
            "source_quantity": [2, 2],
            "wms_quantity": [4, 2],
        }
    )
    lines = pl.DataFrame({"order_key": ["o:1", "o:1"], "line_no": [2, 3], "sku": ["B", "C"], "quantity": [4, 2]})
    intents = tracking_intents(rows, lines, owners("bigcommerce"), source)
    shipments = {r["despatch_ref"]: json.loads(r["payload"]) for r in intents.iter_rows(named=True)}
    assert sorted(shipments) == ["D2", "D3"]
    assert shipments["D2"]["items"] == [{"order_product_id": "1012", "quantity": 1}]
    assert shipments["D2"]["tracking_number"] == "T2"  # the first parcel holding the completing components
    assert shipments["D3"]["items"] == [{"order_product_id": "1012", "quantity": 1}]


def test_a_warehouse_from_before_target_ref_gains_the_linnworks_ids_of_the_orders_fulfil_created(
    tmp_path: Path,
) -> None:
    """Submissions to Linnworks confirmed before the ledger had `target_ref` kept the id only in the result's words;
    opening the warehouse moves it into the column, where the storefront parcels are matched from."""
    from resources.warehouse import SCHEMA

    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    db.execute([f"ALTER TABLE {SCHEMA}.wms_submissions DROP COLUMN target_ref"])  # as that version made it
    now = datetime.now(UTC)
    rows = {
        "old-sent": "Linnworks order 22222222-bbbb",
        "old-found": "found at target: Linnworks holds it as order 33333333-cccc",
        "refused": None,
    }
    with db.begin() as conn:
        for key, result in rows.items():
            conn.exec_driver_sql(
                f"INSERT INTO {SCHEMA}.wms_submissions (idempotency_key, order_key, order_ref, status, result, "
                "wms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'linnworks', ?, ?)",
                (key, f"shopify:{key}", key, "failed" if result is None else "sent", result, now, now),
            )
    ensure_tables(db)
    refs = dict(db.read(f"SELECT idempotency_key, target_ref FROM {SCHEMA}.wms_submissions").iter_rows())
    assert refs == {"old-sent": "22222222-bbbb", "old-found": "33333333-cccc", "refused": None}


def test_a_later_report_changes_a_ledger_row_only_from_the_statuses_it_may_follow(tmp_path: Path) -> None:
    """What a target reports later (acknowledged, despatched, rejected, cancelled) applies only where the row's
    status allows: a late acknowledgement never undoes a despatch, and nothing not yet sent is reported on."""
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    rows = pl.DataFrame(
        {
            "idempotency_key": ["a", "b", "c"],
            "order_key": ["o:a", "o:b", "o:c"],
            "payload": ["{}", "{}", "{}"],
            "wms": ["whistl"] * 3,
            "order_ref": ["A", "B", "C"],
        }
    )
    effects.intend(db, "wms_submissions", rows)
    effects.record(db, "wms_submissions", ["a", "b"], effects.Outcome(effects.SENT))

    def status() -> dict[str, str]:
        return dict(db.read("SELECT idempotency_key, status FROM fulfil.wms_submissions").iter_rows())

    assert effects.report(db, "wms_submissions", ["a", "b", "c"], effects.DESPATCHED, confirmed=True) == 2
    assert effects.report(db, "wms_submissions", ["a"], effects.ACKNOWLEDGED) == 0  # late: stays despatched
    assert effects.report(db, "wms_submissions", ["c"], effects.REJECTED, error="x") == 0  # never sent
    assert status() == {"a": effects.DESPATCHED, "b": effects.DESPATCHED, "c": effects.PENDING}
    assert set(effects.REPORTED_FROM) >= {effects.ACKNOWLEDGED, effects.CANCELLED, effects.TOO_LATE}
