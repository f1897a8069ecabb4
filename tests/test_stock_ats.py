"""Available to sell and which levels are due: the arithmetic, pure polars (no Dagster, no emulator)."""

from __future__ import annotations

import polars as pl

from fulfil_assets import effects
from fulfil_assets.stock.ats import available_to_sell, deltas, open_unsent
from fulfil_assets.stock.pushes import last_confirmed, payloads, push_intents

BUNDLES = pl.DataFrame({"bundle_sku": ["KIT", "KIT"], "component_sku": ["A", "B"], "quantity": [2, 1]})
NO_BUFFERS = pl.DataFrame(schema={"sku": pl.String, "buffer": pl.Int64})
LOCATIONS = pl.DataFrame({"location": ["L1"], "source_location": ["main"]})


def source(**available: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"source_location": ["main"] * len(available), "sku": list(available), "available": list(available.values())}
    )


def listed(*skus: str, level: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"location": ["L1"] * len(skus), "sku": list(skus), "level": [level] * len(skus)})


def ats_of(frame: pl.DataFrame) -> dict[str, int]:
    return dict(frame.select("sku", "ats").iter_rows())


def test_open_unsent_counts_only_open_orders_not_at_the_warehouse_with_bundles_as_components() -> None:
    orders = pl.DataFrame({"order_key": ["o1", "o2", "o3", "o4"], "status": ["open", "open", "cancelled", "open"]})
    lines = pl.DataFrame(
        {"order_key": ["o1", "o1", "o2", "o3", "o4"], "sku": ["A", "KIT", "A", "A", "B"], "quantity": [1, 2, 5, 7, 3]}
    )
    sent = pl.DataFrame({"order_key": ["o4"]})  # already at the warehouse: its allocation is in `available`
    got = dict(open_unsent(orders, lines, sent, BUNDLES).iter_rows())
    # o1: A 1 + KIT 2 (= A 4, B 2); o2: A 5; o3 cancelled; o4 sent.
    assert got == {"A": 10, "B": 2}


def test_buffer_open_unsent_zero_floor_and_negative_stock() -> None:
    unsent = pl.DataFrame({"sku": ["A", "C"], "open_unsent": [3, 50]})
    buffers = pl.DataFrame({"sku": ["B"], "buffer": [0]})  # B's own buffer beats the flow's 2
    frame = available_to_sell(
        source(A=10, B=4, C=20, D=-3), LOCATIONS, listed("A", "B", "C", "D", "E"), unsent, buffers, BUNDLES, 2
    )
    assert ats_of(frame) == {"A": 10 - 3 - 2, "B": 4, "C": 0, "D": 0, "E": 0}
    row = frame.filter(pl.col("sku") == "D").row(0, named=True)
    assert row["wms_available"] == 0  # oversold at the warehouse: counted as 0, not dropped
    assert frame.filter(pl.col("sku") == "E")["wms_available"].to_list() == [0]  # not held by the source: sells 0


def test_bundle_sells_as_many_as_its_scarcest_component_allows() -> None:
    unsent = pl.DataFrame({"sku": ["B"], "open_unsent": [1]})
    frame = available_to_sell(source(A=9, B=4), LOCATIONS, listed("KIT", "A", "B"), unsent, NO_BUFFERS, BUNDLES, 0)
    # A: floor(9 / 2) = 4 kits; B: 4 - 1 = 3 kits.
    assert ats_of(frame)["KIT"] == 3
    missing = available_to_sell(source(A=9), LOCATIONS, listed("KIT"), unsent, NO_BUFFERS, BUNDLES, 0)
    assert ats_of(missing) == {"KIT": 0}


def test_only_mapped_locations_receive_stock_from_their_own_source() -> None:
    two = pl.DataFrame({"source_location": ["main", "north"], "sku": ["A", "A"], "available": [5, 8]})
    locations = pl.DataFrame({"location": ["L1", "L2"], "source_location": ["north", "main"]})
    oms = pl.DataFrame({"location": ["L1", "L2", "L3"], "sku": ["A", "A", "A"], "level": [0, 0, 0]})
    frame = available_to_sell(
        two, locations, oms, pl.DataFrame(schema={"sku": pl.String, "open_unsent": pl.Int64}), NO_BUFFERS, BUNDLES, 0
    )
    assert dict(frame.select("location", "ats").iter_rows()) == {"L1": 8, "L2": 5}


def test_due_when_different_from_the_last_confirmed_or_never_pushed_from_what_the_oms_shows() -> None:
    frame = available_to_sell(
        source(A=5, B=7, C=3, D=4),
        LOCATIONS,
        pl.DataFrame({"location": ["L1"] * 4, "sku": ["A", "B", "C", "D"], "level": [5, 0, 2, 9]}),
        pl.DataFrame(schema={"sku": pl.String, "open_unsent": pl.Int64}),
        NO_BUFFERS,
        BUNDLES,
        0,
    )
    confirmed = pl.DataFrame({"location": ["L1", "L1"], "sku": ["C", "D"], "level": [3, 4]})
    due = deltas(frame, confirmed, "f", "bigcommerce")
    # A: never pushed, the OMS shows 5 already; B: shows 0, should be 7; C: confirmed 3, the OMS shows 2 (a sale
    # fulfil has not read yet): equal to the last confirmed push, not due; D: confirmed 4, but someone raised it
    # to 9 by hand in the OMS: more than may be sold, due again.
    assert dict(due.select("sku", "to_push").iter_rows()) == {"A": False, "B": True, "C": False, "D": True}


def ledger(*rows: tuple[str, str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"idempotency_key": k, "status": s, "location": "L1", "sku": "A", "level": lv} for k, s, lv in rows],
        schema={
            "idempotency_key": pl.String,
            "status": pl.String,
            "location": pl.String,
            "sku": pl.String,
            "level": pl.Int64,
        },
    )


def due_at(level: int) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"location": ["L1"], "sku": ["A"], "ats": [level], "wms_available": [level], "open_unsent": [0], "buffer": [0]}
    )
    return payloads(frame, "linnworks")


def test_generations_reuse_an_unattempted_row_and_supersede_an_older_due_one() -> None:
    first, older = push_intents(due_at(4), ledger(), "f", "linnworks")
    assert first["idempotency_key"].to_list() == ["f:stock:L1:A:1"] and older == []
    # Never attempted yet: the same row takes the new level.
    again, older = push_intents(due_at(6), ledger(("f:stock:L1:A:1", effects.PENDING, 4)), "f", "linnworks")
    assert again["idempotency_key"].to_list() == ["f:stock:L1:A:1"] and older == []
    # Attempted with no known outcome, same level: the same row (the effect module settles it).
    same, older = push_intents(due_at(4), ledger(("f:stock:L1:A:1", effects.SENDING, 4)), "f", "linnworks")
    assert same["idempotency_key"].to_list() == ["f:stock:L1:A:1"] and older == []
    # Attempted, a new level now: a new generation, and the old one is superseded.
    newer, older = push_intents(due_at(9), ledger(("f:stock:L1:A:1", effects.SENDING, 4)), "f", "linnworks")
    assert newer["idempotency_key"].to_list() == ["f:stock:L1:A:2"] and older == ["f:stock:L1:A:1"]
    assert newer["payload"].to_list() == ['{"SKU":"A","LocationId":"L1","Level":9}']
    # Confirmed at this very level, due again (the OMS drifted from it since): a new generation, never the sent row.
    drifted, older = push_intents(due_at(4), ledger(("f:stock:L1:A:1", effects.SENT, 4)), "f", "linnworks")
    assert drifted["idempotency_key"].to_list() == ["f:stock:L1:A:2"] and older == []
    confirmed = last_confirmed(ledger(("f:stock:L1:A:1", effects.SENT, 4), ("f:stock:L1:A:2", effects.SENT, 9)))
    assert confirmed["level"].to_list() == [9]


def test_negative_warehouse_stock_is_kept_not_quarantined() -> None:
    from fulfil_assets.stage.stock import whistl_stock

    rows = pl.DataFrame(
        {
            "sku": ["A", "B"],
            "on_hand": ["-1", "4"],
            "allocated": ["0", "x"],
            "available": ["-1", "4"],
            "snapshot_at": ["2026-12-01T10:00:00Z"] * 2,
            "_file_name": ["inv_1.csv"] * 2,
            "_row_no": [1, 2],
        }
    )
    good, bad = whistl_stock(rows)
    assert good.select("sku", "on_hand", "available").rows() == [("A", -1, -1)]  # oversold at the warehouse
    assert bad["reason"].to_list() == ["allocated x is not a whole number"]


def test_quarantined_units_are_never_available() -> None:
    from fulfil_assets.stage.stock import whistl_stock

    rows = pl.DataFrame(
        {
            "sku": ["A", "B", "C", "D"],
            "on_hand": ["10", "10", "10", "10"],
            "allocated": ["2", "2", "2", "2"],
            "available": ["8", "5", "8", "8"],  # A's available still counts its 3 quarantined units; B's does not
            "quarantine": ["3", "3", "", "?"],
            "snapshot_at": ["2026-12-01T10:00:00Z"] * 4,
            "_file_name": ["inv_1.csv"] * 4,
            "_row_no": [1, 2, 3, 4],
        }
    )
    good, bad = whistl_stock(rows)
    assert dict(good.select("sku", "available").iter_rows()) == {"A": 5, "B": 5, "C": 8}
    assert bad["reason"].to_list() == ["quarantine ? is not a whole number"]
