"""`fulfil audit` on a seeded world: it finds exactly what the world planted (counted from the world's own record:
its orders' planted faults, its catalogue, its bundles), sends nothing and leaves every emulator's state and every
file of Whistl's drop as they were, byte for byte; the report opens in headless Chromium (screenshot kept in
`test-artifacts/`)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flow_helpers import all_flows_config, world_expectations
from test_ui_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from emulators.server import Emulators
from emulators.world import REFUSED_SKU_CHARS, UNSERVED_METHODS
from fulfil_assets.cli import main

README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "audit-report.png"

# The state each emulator keeps of what it was sent (sessions left out: logging in is a read).
STATE = {
    "linnworks": ("orders", "processed", "cancelled", "shipping_info", "stock", "stock_writes", "created"),
    "cin7": ("sales", "sale_status", "shipments", "ship_state", "adjustments", "available"),
    "shopify": ("orders", "events", "cancelled", "fulfillable", "fulfillments", "levels", "level_writes"),
    "bigcommerce": ("orders", "status", "shipped", "shipments", "inventory", "adjustments"),
    "peoplevox": ("available", "sales_orders", "order_items", "saves", "despatches", "subscriptions"),
    "whistl": ("on_hand", "allocated", "orders", "receipts", "rejections", "cancel_results", "files_written"),
}

API_SYSTEMS = ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox")  # Whistl is files (its digest is below)


def state_of(emu: Emulators) -> dict[str, str]:
    """A digest of each emulator's state and of every file in Whistl's drop, path by path."""
    digest = {
        f"{name}.{attr}": hashlib.sha256(repr(getattr(getattr(emu, name), attr)).encode()).hexdigest()
        for name, attrs in STATE.items()
        for attr in attrs
    }
    for path in sorted(p for p in emu.whistl.root.rglob("*") if p.is_file()):
        digest[str(path.relative_to(emu.whistl.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def order_of(emu: Emulators, oms: str, order_id: str) -> Any:
    """The world's order behind a timeline row (Shopify and BigCommerce key theirs by number)."""
    store = {"linnworks": emu.linnworks.orders, "cin7": emu.cin7.sales}.get(oms)
    if store is not None:
        return store[order_id]
    return {"shopify": emu.shopify.orders, "bigcommerce": emu.bigcommerce.orders}[oms][int(order_id)]


def is_read(system: str, method: str, path: str, body: Any) -> bool:
    """Whether a call only reads: a GET; a Linnworks `Get*`, `Search*` or login; a Peoplevox call that saves,
    subscribes to nothing."""
    if method == "GET":
        return True
    if system == "linnworks":
        return path.rsplit("/", 1)[-1].startswith(("Get", "Search", "Authorize"))
    if system == "peoplevox":
        return not any(w in str(body) for w in ("SaveData", "SubscribePostEvent", "SaveTemplate", "Unsubscribe"))
    return False


def expected_from_the_world(emu: Emulators, bundles: list[tuple[str, str]]) -> dict[str, Any]:
    """What the world planted, from its own record: per flow the SKUs sold that the target lacks, the catalogue
    SKUs each warehouse's rules refuse, the bundles with a component a warehouse lacks, the orders per shipping
    method, and per order not cancelled the reason codes planted in it."""
    w = emu.world
    unknown: dict[str, set[str]] = {}
    methods: Counter[tuple[str, str]] = Counter()
    faults: dict[str, set[str]] = {}
    for row in emu.timeline()["orders"]:
        flow = f"{row['oms']}_{row['target']}"
        order = order_of(emu, row["oms"], row["order_id"])
        methods[(flow, order.shipping_method)] += 1
        known = w.stock_skus if row["target"] == "linnworks" else w.wms_known
        for line in order.lines:
            product = w.by_sku.get(line.sku)
            skus = [line.sku]
            if product is not None and product.is_bundle and row["target"] != "linnworks":
                skus = [s for s, _ in product.components]
            unknown.setdefault(flow, set()).update(s for s in skus if s not in known)
        if not row["cancelled"]:
            faults[row["order_ref"]] = set(row["faults"])
    refused = {wms: {s for s in w.wms_catalogue if set(s) & REFUSED_SKU_CHARS[wms]} for wms in ("whistl", "peoplevox")}
    missing = {(wms, b) for wms in ("whistl", "peoplevox") for b, c in bundles if c not in w.wms_known}
    return {"unknown": unknown, "refused": refused, "missing": missing, "methods": methods, "faults": faults}


@pytest.mark.world(n_orders=25, n_skus=2000)  # the demo catalogue: a bundle lacks a component
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_the_audit_finds_what_the_world_planted_and_changes_nothing(
    emulators: Emulators,
    fulfil_env: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 0.3  # some Linnworks orders go to Peoplevox
    emu.whistl.snapshot()  # a stock file in Whistl's out/: the audit reads it and must not move it
    config = all_flows_config(emu, tmp_path)
    path = tmp_path / "fulfil.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("FULFIL_CONFIG", str(path))
    exp = Path(world_expectations(emu, tmp_path)["ops"]["validation"]["config"]["expectations_dir"])
    with (exp / "bundles.csv").open() as f:
        bundles = [(r["bundle_sku"], r["component_sku"]) for r in csv.DictReader(f)]
    before = state_of(emu)
    for name in API_SYSTEMS:
        getattr(emu, name).recorder.clear()
    days = (datetime.now(UTC) - emu.world.start).days + 2  # the seeded orders, however long ago the world began

    assert main(["audit", "--days", str(days), "--expectations", str(exp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sections = report["sections"]

    # Nothing was sent and nothing moved: every emulator holds what it held, every file is where it was.
    assert state_of(emu) == before
    calls = [(name, c) for name in API_SYSTEMS for c in getattr(emu, name).recorder.calls]
    assert calls and [c.path for name, c in calls if not is_read(name, c.method, c.path, c.body)] == []

    expected = expected_from_the_world(emu, bundles)
    assert any(expected["unknown"].values()) and expected["missing"]  # the world planted some of each
    catalogue = sections["catalogue"]
    by = lambda problem: [r for r in catalogue if r["problem"] == problem]  # noqa: E731
    found_unknown: dict[str, set[str]] = {}
    for r in by("unknown_at_warehouse"):
        found_unknown.setdefault(r["flow"], set()).add(r["sku"])
    assert found_unknown == {f: s for f, s in expected["unknown"].items() if s}
    assert {(r["system"], r["sku"]) for r in by("refused_by_warehouse_rules")} == {
        (wms, s) for wms, skus in expected["refused"].items() for s in skus
    }
    assert {(r["system"], r["sku"]) for r in by("bundle_component_missing")} == expected["missing"]
    assert by("not_sold") == by("duplicate") == by("variant_without_sku") == []  # the world plants none

    methods = {(r["flow"], r["shipping_method"]): r for r in sections["shipping_methods"]}
    assert {k: r["orders"] for k, r in methods.items()} == dict(expected["methods"])
    assert all(r["mapped"] == (m not in UNSERVED_METHODS) for (_, m), r in methods.items())

    held = {}
    for r in sections["held_orders"]:
        held.setdefault(r["order_ref"], set()).add(r["reason_code"])
    assert {ref: codes for ref, codes in held.items() if ref in expected["faults"]} == {
        ref: codes for ref, codes in expected["faults"].items() if codes
    }
    assert {r["system"] for r in sections["capacity"]} == {"linnworks", "cin7", "shopify", "bigcommerce"}

    page = Path(fulfil_env["FULFIL_DATA_DIR"]) / "audit" / "audit.html"
    text = page.read_text()
    assert "fulfil system audit" in text and "<script" not in text and "http" not in text.split("<body>")[1]
    for secret in (v for k, v in fulfil_env.items() if any(s in k for s in ("TOKEN", "PASSWORD", "KEY", "SECRET"))):
        assert secret not in text and secret not in json.dumps(report)
    if not Path(CHROMIUM).exists():
        if os.environ.get("FULFIL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser check is required (FULFIL_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing: the report was checked, not opened in a browser")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            view = browser.new_page(viewport={"width": 1200, "height": 900})
            view.goto(page.resolve().as_uri())
            assert view.locator("h2").count() >= 9 and view.locator("svg.chart").count() >= 2
            view.screenshot(path=str(ARTIFACTS / "audit-report.png"), full_page=True)
            view.screenshot(path=str(ARTIFACTS / "audit-report-top.png"))  # the README's (docs/audit-report.png)
            if os.environ.get("FULFIL_UPDATE_SCREENSHOTS") == "1":
                view.screenshot(path=str(README_SCREENSHOT))
        finally:
            browser.close()
