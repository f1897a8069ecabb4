"""The audit's findings as pure functions on small frames: each catalogue problem found once and only where it is,
and the capacity section's arithmetic against a system's published limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from fulfil_assets.audit.findings import capacity, catalogue_findings, rule_failures, volumes
from resources.limits import LIMITS


def test_each_catalogue_problem_is_found_where_it_is() -> None:
    checked = pl.DataFrame(
        {
            "flow": ["cin7_whistl"] * 3 + ["shopify_linnworks"],
            "target": ["whistl"] * 3 + ["linnworks"],
            "order_key": ["c:1", "c:1", "c:2", "s:1"],
            "wms_sku": ["ABC1", "NOPE9", "NOPE9", "LW1"],
        }
    )
    catalogues = pl.DataFrame(
        {
            "system": ["whistl", "whistl", "whistl", "whistl", "linnworks", "linnworks"],
            "sku": ["ABC1", "AB-2", "SPARE7", "CMP1", "LW1", "lw1 "],
        }
    )
    oms_skus = pl.DataFrame({"system": ["cin7", "cin7", "cin7"], "sku": ["ABC1", "AB-2", "BUNDLE1"]})
    bundles = pl.DataFrame({"bundle_sku": ["BUNDLE1", "BUNDLE1"], "component_sku": ["CMP1", "GONE1"]})
    variants = pl.DataFrame(
        {"system": ["shopify", "shopify"], "variant_id": ["11", "12"], "product": ["Mug", "Cap"], "sku": ["LW1", ""]}
    )
    found = catalogue_findings(checked, catalogues, oms_skus, bundles, variants, ["cin7_whistl", "shopify_linnworks"])
    got = {(r["problem"], r["system"], r["sku"]) for r in found.iter_rows(named=True)}
    assert got == {
        ("unknown_at_warehouse", "whistl", "NOPE9"),
        ("refused_by_warehouse_rules", "whistl", "AB-2"),
        ("refused_by_warehouse_rules", "linnworks", "lw1 "),
        ("not_sold", "whistl", "SPARE7"),
        ("duplicate", "linnworks", "LW1"),
        ("duplicate", "linnworks", "lw1 "),
        ("bundle_component_missing", "whistl", "BUNDLE1"),
        ("variant_without_sku", "shopify", "variant 12"),
    }
    unknown = found.filter(pl.col("problem") == "unknown_at_warehouse").row(0, named=True)
    assert (unknown["flow"], unknown["orders"]) == ("cin7_whistl", 2)
    assert found.filter(pl.col("problem") == "not_sold")["flow"].to_list() == ["cin7_whistl"]


def test_rule_failures_count_orders_not_lines_and_name_the_owner() -> None:
    verdicts = pl.DataFrame(
        {
            "order_key": ["a", "a", "b", "c"],
            "rule": ["phone", "service", "phone", "phone"],
            "passed": [False, False, False, True],
            "reason_code": ["PHONE_INVALID", "SERVICE_UNMAPPED", "PHONE_MISSING", None],
        }
    )
    refs = pl.DataFrame({"order_key": ["a", "b", "c", "d"], "order_ref": ["A", "B", "C", "D"], "flow": ["f"] * 4})
    rows = {
        (r["reason_code"], r["failing"], r["share"], r["owner"])
        for r in rule_failures(verdicts, refs).iter_rows(named=True)
    }
    assert rows == {
        ("PHONE_INVALID", 1, 0.25, "cx"),
        ("SERVICE_UNMAPPED", 1, 0.25, "office"),
        ("PHONE_MISSING", 1, 0.25, "cx"),
    }


def test_capacity_gives_the_fastest_safe_intervals_and_says_when_a_peak_day_does_not_fit() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    orders = pl.DataFrame(
        {
            "source_system": ["cin7"] * 1440,
            "order_key": [f"cin7:{i}" for i in range(1440)],
            "created_at": [now - timedelta(minutes=i) for i in range(1440)],
            "lines": [2] * 1440,
        }
    )
    skus = pl.DataFrame({"system": ["cin7"] * 1000, "sku": [f"S{i}" for i in range(1000)], "location": ["Main"] * 1000})
    volume = volumes(orders, skus, now, days=30)
    assert volume.row(0, named=True)["orders_per_day"] == 1440  # a day's orders, over the one day they span
    row = capacity(volume, {"cin7": 0.5}, order_minutes=1, stock_minutes=15).row(0, named=True)
    share = LIMITS["cin7"].calls_per_minute * 0.5  # 30 a minute
    assert row["share_per_minute"] == share and row["order_calls_per_minute"] == 2.0  # a read and a post each
    # Stock every 15 minutes: one list page and ceil(30 changed levels / 500) pushes: 2 calls, 0.13 a minute.
    assert row["fastest_order_sync_minutes"] == 1  # 1 / (30 - 2 - 0.13) is well under a minute
    assert row["fastest_stock_sync_minutes"] == 1
    assert row["peak_day_fits"] is True  # ten times: 20 calls a minute for the orders, within 30
    # Sixteen times today's orders need 32 calls a minute for the orders alone: no interval is safe.
    busy = capacity(volume.with_columns(pl.col("orders_per_day") * 16), {"cin7": 0.5}, 1, 15).row(0, named=True)
    assert busy["fastest_order_sync_minutes"] is None and busy["fastest_stock_sync_minutes"] is None
    assert busy["peak_day_fits"] is False and busy["peak_day_calls"] > busy["calls_allowed_a_day"]
