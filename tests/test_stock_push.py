"""Stock from the warehouses to every order system, through real Dagster runs against the emulators: each order
system ends up holding the available-to-sell level per mapped location, an unchanged catalogue sends nothing, a
changed SKU sends only itself, nothing is ever written into a warehouse, and a push killed half way resumes
without resending what was confirmed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from flow_helpers import ALL_FLOWS, all_flows_config, kill_run, run_job, world_expectations

from emulators.linnworks import DEFAULT_LOCATION, PEOPLEVOX_LOCATION, WHISTL_LOCATION
from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

REPO = Path(__file__).resolve().parent.parent


def bundles(emu: Emulators) -> dict[str, list[tuple[str, int]]]:
    """The world's own bundles: each bundle SKU's components and how many of each."""
    return {p.sku: list(p.components) for p in emu.world.products if p.components}


def stock_run(emu: Emulators, tmp_path: Path, flow: str) -> dict[str, Any]:
    """Run config giving the flow's stock op this world's bundles table."""
    return world_expectations(emu, tmp_path, (f"{flow}_stock",))


def held_units(emu: Emulators, oms: str, target: str) -> Counter[str]:
    """Units per stock SKU that `oms`'s orders for `target` hold: those not cancelled, by the world's record (none
    has reached its target: no order sync ran), bundles as the world's components."""
    held_by = {
        "linnworks": emu.linnworks.orders,
        "cin7": emu.cin7.sales,
        "bigcommerce": emu.bigcommerce.orders,
        "shopify": emu.shopify.orders,
    }
    orders = {str(k): v for k, v in held_by[oms].items()}
    kits = bundles(emu)
    held: Counter[str] = Counter()
    for truth in emu.timeline()["orders"]:
        if truth["oms"] == oms and truth["target"] == target and not truth["cancelled"]:
            for line in orders[truth["order_id"]].lines:
                for sku, per in kits.get(line.sku, [(line.sku, 1)]):
                    held[sku] += line.quantity * per
    return held


def expected_levels(emu: Emulators, oms: str, wms: str) -> dict[str, int]:
    """What `oms` should sell at its location fed by warehouse `wms`, worked out from the emulators' own state,
    never from fulfil's tables: the warehouse's available units (Whistl: on hand less allocated and quarantined)
    less what the order system's orders for that warehouse hold (`held_units`), never below zero."""
    held = held_units(emu, oms, wms)
    if wms == "whistl":
        w = emu.whistl
        available = {s: w.on_hand[s] - w.allocated[s] - w.quarantined[s] for s in w.catalogue}
    else:
        available = dict(emu.peoplevox.available)
    return {sku: max(0, units - held[sku]) for sku, units in available.items()}


def variant_only_skus(store: Any) -> set[str]:
    """SKUs of BigCommerce products tracked as a whole, other than the product's own: they hold no figure."""
    return {s for skus in store.product_skus.values() for s in skus[1:] if store.tracked_by_product(s)}


def item_sku(store: Any, item: dict[str, Any]) -> str:
    """The SKU a BigCommerce adjustment item set (by SKU, or by product for one tracked as a whole)."""
    return item["sku"] if "sku" in item else store.product_skus[item["product_id"]][0]


def test_every_order_system_holds_available_to_sell_and_only_changes_travel(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    for sku in sorted(emu.whistl.catalogue)[:3]:  # damaged units held in quarantine at the warehouse
        emu.whistl.quarantined[sku] = min(4, emu.whistl.on_hand[sku])
    assert sum(emu.whistl.quarantined.values()) > 0
    emu.whistl.snapshot()
    defs = build_definitions(all_flows_config(emu, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    for flow in ALL_FLOWS:
        if flow != "shopify_linnworks":  # after linnworks_whistl: Linnworks is Shopify's stock master
            run_job(defs, f"{flow}_stock_job", instance, stock_run(emu, tmp_path, flow))
    run_job(defs, "shopify_linnworks_stock_job", instance, stock_run(emu, tmp_path, "shopify_linnworks"))
    ledger = db.read(f"SELECT * FROM {SCHEMA}.stock_pushes")
    assert set(ledger["status"]) == {"sent"}

    # Linnworks (Whistl location): the level worked out independently from the emulators, for every SKU.
    expected = expected_levels(emu, "linnworks", "whistl")
    at_whistl = {sku: lvl for (sku, loc), lvl in emu.linnworks.stock.items() if loc == WHISTL_LOCATION}
    assert {s: at_whistl[s] for s in expected if s in at_whistl} == {s: expected[s] for s in expected if s in at_whistl}
    assert sum(expected.values()) > 0 and any(v == 0 for v in expected.values())
    # Linnworks stock the warehouse does not hold sells 0 (never left at an old figure).
    assert all(at_whistl[s] == 0 for s in at_whistl if s not in expected)

    # Every other order system holds the level worked out from the emulators, for every SKU it lists there.
    cin7_expected = expected_levels(emu, "cin7", "whistl")
    assert emu.cin7.available == {s: cin7_expected.get(s, 0) for s in emu.cin7.available}
    assert sum(emu.cin7.available.values()) > 0 and cin7_expected != expected  # its own open orders, not Linnworks'
    store = emu.bigcommerce
    # A product tracked as a whole holds one figure, on its own SKU (set by product id); its other variants none.
    variant_only = {s for s in store.product_skus.values() for s in s[1:] if store.tracked_by_product(s)}
    assert variant_only and any(store.tracked_by_product(s[0]) for s in store.product_skus.values())
    bc_expected = expected_levels(emu, "bigcommerce", "whistl")
    at_store = {(str(loc), s): lvl for (s, loc), lvl in store.inventory.items() if loc == 1 and s not in variant_only}
    bc = {("1", s): bc_expected.get(s, 0) for (_, s) in at_store}
    assert at_store == bc
    assert all(store.inventory[(s, 1)] == 0 for s in variant_only)
    assert all(lvl == 0 for (s, loc), lvl in emu.bigcommerce.inventory.items() if loc == 2)  # not mapped: untouched
    pvx_expected = expected_levels(emu, "linnworks", "peoplevox")
    at_pvx = {s: lvl for (s, loc), lvl in emu.linnworks.stock.items() if loc == PEOPLEVOX_LOCATION}
    assert at_pvx == {s: pvx_expected.get(s, 0) for s in at_pvx} and sum(at_pvx.values()) > 0
    items = emu.shopify.inventory_items
    shop = {(str(loc), items[item]): lvl for (item, loc), lvl in emu.shopify.levels.items()}
    # Each Shopify location follows the Linnworks location it is mapped to (stock_locations.csv; Linnworks ->
    # Shopify, one way), less what open Shopify orders hold (Linnworks' level drops only once it processes them).
    held = held_units(emu, "shopify", "linnworks")
    assert sum(held.values()) > 0
    for shop_location, linnworks_location in (("71000001", WHISTL_LOCATION), ("71000002", DEFAULT_LOCATION)):
        source = {s: lvl for (s, loc), lvl in emu.linnworks.stock.items() if loc == linnworks_location}
        at_shop = {s: lvl for (loc, s), lvl in shop.items() if loc == shop_location}
        assert at_shop and at_shop == {s: max(0, source.get(s, 0) - held[s]) for s in at_shop}, shop_location
    # Calls: ceil(changed / batch maximum) for each system.
    assert len(emu.bigcommerce.adjustments) == -(-len([v for v in bc.values() if v]) // 2000)
    assert len(emu.cin7.adjustments) == -(-sum(1 for v in emu.cin7.available.values() if v) // 500)
    # Nothing was written into a warehouse.
    assert emu.whistl.inspect()["receipts"] == {}
    assert not [c for c in emu.peoplevox.recorder.calls if "SaveData" in str(c.body)]

    # Unchanged: a second pass sends nothing anywhere.
    writes = (len(emu.linnworks.stock_writes), len(emu.cin7.adjustments), len(emu.bigcommerce.adjustments))
    shopify_writes = len(emu.shopify.level_writes)
    for flow in ALL_FLOWS:
        result = run_job(defs, f"{flow}_stock_job", instance, stock_run(emu, tmp_path, flow))
        pushed = result.asset_materializations_for_node(f"{flow}_stock")[-1].metadata
        assert pushed["calls"].value == 0 and pushed["skus_changed"].value == 0
    assert (len(emu.linnworks.stock_writes), len(emu.cin7.adjustments), len(emu.bigcommerce.adjustments)) == writes
    assert len(emu.shopify.level_writes) == shopify_writes

    # One SKU damaged at Whistl: only that SKU travels, to each Whistl flow's order system.
    sku = max((s for s in expected if s not in variant_only), key=expected.get)  # type: ignore[arg-type]
    emu.whistl.on_hand[sku] -= 5
    time.sleep(1.1)  # a new snapshot file (its name carries the second)
    emu.whistl.snapshot()
    for flow in ("linnworks_whistl", "cin7_whistl", "bigcommerce_whistl"):
        run_job(defs, f"{flow}_stock_job", instance, stock_run(emu, tmp_path, flow))
    new = emu.linnworks.stock_writes[writes[0] :]
    assert [(w["sku"], w["location"], w["level"]) for w in new] == [(sku, WHISTL_LOCATION, expected[sku] - 5)]
    cin7_before, bc_before = cin7_expected[sku], bc[("1", sku)]
    assert min(cin7_before, bc_before) >= 5  # each order system's own open orders, less 5
    cin7_lines = [(ln["SKU"], ln["Quantity"]) for a in emu.cin7.adjustments[writes[1] :] for ln in a["Lines"]]
    assert cin7_lines == [(sku, cin7_before - 5)]
    bc_items = [
        (item_sku(store, i), i["quantity"]) for a in emu.bigcommerce.adjustments[writes[2] :] for i in a["items"]
    ]
    assert bc_items == [(sku, bc_before - 5)]


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_push_killed_half_way_resumes_without_resending_confirmed_levels(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    config = all_flows_config(emu, tmp_path, flows=["bigcommerce_whistl"], stock={"bigcommerce_whistl": {"batch": 20}})
    path = tmp_path / "fulfil.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    emu.bigcommerce.faults.update({"latency_ms": 400, "only_path": "adjustments/absolute"})
    env = {**os.environ, "FULFIL_CONFIG": str(path), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "fulfil_assets.definitions",
            "-j",
            "bigcommerce_whistl_stock_job",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(emu.bigcommerce.adjustments) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    kill_run(child)
    emu.bigcommerce.apply_pending()  # a call in flight when the process died is still applied by BigCommerce
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    confirmed = set(db.read(f"SELECT sku FROM {SCHEMA}.stock_pushes WHERE status = 'sent'")["sku"])
    calls_before = len(emu.bigcommerce.adjustments)
    due = db.read(f"SELECT sku, ats FROM {SCHEMA}.stock_deltas WHERE to_push").filter(
        ~pl.col("sku").is_in(list(variant_only_skus(emu.bigcommerce)))
    )
    assert confirmed and len(confirmed) < due.height, "the push was to be killed half way"

    emu.bigcommerce.faults.update({"latency_ms": 0})
    run_job(build_definitions(config), "bigcommerce_whistl_stock_job", dg.DagsterInstance.ephemeral())
    assert set(db.read(f"SELECT status FROM {SCHEMA}.stock_pushes")["status"]) == {"sent"}
    store = emu.bigcommerce
    resent = [item_sku(store, i) for a in store.adjustments[calls_before:] for i in a["items"]]
    # What the first run confirmed is never sent again. The batch in flight when the process died is either
    # found at BigCommerce (the run read its levels: it had applied the call) or sent once more; the rest once.
    found = set(db.read(f"SELECT sku FROM {SCHEMA}.stock_pushes WHERE result LIKE 'found at target%'")["sku"])
    assert len(found) <= 20 and not found & confirmed
    assert not set(resent) & confirmed
    assert Counter(resent) == Counter(set(due["sku"]) - confirmed - found)
    assert {s: emu.bigcommerce.inventory[(s, 1)] for s in due["sku"]} == dict(due.iter_rows())


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_each_despatch_run_asks_for_a_stock_run_of_every_whistl_flow(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    defs = build_definitions(all_flows_config(emulators, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    despatch = run_job(defs, "despatch_job", instance)
    sensor = defs.resolve_sensor_def("stock_after_despatch_sensor")

    def after(run: dg.ExecuteInProcessResult) -> list[dg.RunRequest]:
        """The sensor's requests for one successful run."""
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=run.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=run.dagster_run,
        )
        return list(sensor(context) or [])

    requests = after(despatch)
    assert sorted(r.job_name for r in requests) == [
        "bigcommerce_whistl_stock_job",
        "cin7_whistl_stock_job",
        "linnworks_whistl_stock_job",
    ]
    assert len({r.run_key for r in requests}) == 3 and all(despatch.run_id in r.run_key for r in requests)
    # Any other job's success asks for nothing.
    assert after(run_job(defs, "tracking_job", instance)) == []


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_shadow_stock_sends_nothing_then_live_sends_exactly_what_was_recorded(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    shadow = all_flows_config(emu, tmp_path, flows=["cin7_whistl"], modes={"cin7_whistl": "shadow"})
    run_job(build_definitions(shadow), "cin7_whistl_stock_job", instance)
    recorded = db.read(f"SELECT sku, level, status, payload FROM {SCHEMA}.stock_pushes")
    assert recorded.height > 0 and set(recorded["status"]) == {"shadow"}
    assert emu.cin7.adjustments == [] and emu.cin7.inspect()["adjustments"] == []
    run_job(build_definitions(shadow), "cin7_whistl_stock_job", instance)  # still shadow: still nothing
    assert emu.cin7.adjustments == []

    live = all_flows_config(emu, tmp_path, flows=["cin7_whistl"])
    run_job(build_definitions(live), "cin7_whistl_stock_job", instance)
    lines = [line for a in emu.cin7.inspect()["adjustments"] for line in a["Lines"]]
    assert sorted(json.dumps(line, sort_keys=True) for line in lines) == sorted(
        json.dumps(json.loads(p), sort_keys=True) for p in recorded["payload"]
    )
    assert set(db.read(f"SELECT status FROM {SCHEMA}.stock_pushes")["status"]) == {"sent"}
    run_job(build_definitions(live), "cin7_whistl_stock_job", instance)
    assert len(emu.cin7.adjustments) == 1  # once
