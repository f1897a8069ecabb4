"""The Dagster UI as the data team sees it: `dagster-webserver` on the shipped code location, driven in headless
Chromium (Debian's `chromium`, through Playwright): the asset catalogue lists every stage's group and the
reconciled tables, and an asset's checks tab lists its checks. Screenshots are kept in `test-artifacts/`; the
lineage one is the README's (`docs/ui-lineage.png`, written afresh with FULFIL_UPDATE_SCREENSHOTS=1).
Without Chromium the test skips, saying so; `.ci/run` sets FULFIL_REQUIRE_BROWSER=1, so CI never skips it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FULFIL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("FULFIL_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Debian's Chromium as root, on a machine with no way out: no sandbox, no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_SCREENSHOT = ROOT / "docs" / "ui-lineage.png"  # shown in the README's quick start
GROUPS = ("linnworks_ingest", "stage", "validate", "push", "despatch", "stock", "reconcile")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("FULFIL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test is required (FULFIL_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); set FULFIL_REQUIRE_BROWSER=1 to fail instead")
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FULFIL_CONFIG": str(ROOT / "fulfil.yaml"),
        "FULFIL_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    command = [sys.executable, "-m", "dagster_webserver", "-m", "fulfil_assets.definitions"]
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {(tmp_path / 'webserver.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("dagster-webserver did not answer in 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_asset_catalogue_shows_every_group_and_an_assets_checks(webserver: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{webserver}/asset-groups")
            for group in GROUPS:
                expect(page.get_by_text(group, exact=True).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "asset-groups.png"), full_page=True)
            # The README's picture of the UI is this page: FULFIL_UPDATE_SCREENSHOTS=1 writes it afresh.
            if os.environ.get("FULFIL_UPDATE_SCREENSHOTS") == "1":
                shutil.copyfile(ARTIFACTS / "asset-groups.png", README_SCREENSHOT)
            assert README_SCREENSHOT.is_file(), f"{README_SCREENSHOT} is missing: FULFIL_UPDATE_SCREENSHOTS=1"
            assert f"]({README_SCREENSHOT.relative_to(ROOT)})" in (ROOT / "README.md").read_text()

            page.goto(f"{webserver}/assets/orders_stuck?view=checks")
            # Long names render middle-truncated; the full name is in the row (attached, measured, not shown whole).
            expect(page.get_by_text("Checks (1)")).to_be_visible()
            expect(page.get_by_text("no_order_stuck_between_systems").first).to_be_attached()
            page.screenshot(path=str(ARTIFACTS / "orders_stuck-checks.png"), full_page=True)

            page.goto(f"{webserver}/assets/wms_submissions?view=checks")
            expect(page.get_by_text("Checks (2)")).to_be_visible()
            for check in ("every_ready_order_reached_the_wms", "orders_stuck_at_warehouse"):
                expect(page.get_by_text(check).first).to_be_attached()
            page.screenshot(path=str(ARTIFACTS / "wms_submissions-checks.png"), full_page=True)
        finally:
            browser.close()
