"""What the data team reads in the Dagster UI after a real order sync and reconcile: counts that add up, numbers
per reason as separate plottable values, rule checks naming example orders, and the reconciled tables' names and
column schemas."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import dagster as dg
import pytest
from flow_helpers import emulator_config, run_job, whistl_world

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.reconcile.reconciled import COLUMNS
from resources.warehouse import SCHEMA


def _materialization(result: dg.ExecuteInProcessResult, key: str) -> dict:
    events = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)]
    assert len(events) == 1, key
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_counts_add_up_and_each_reason_is_its_own_number(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    sync = run_job(defs, "order_sync_job", instance)

    meta = _materialization(sync, "validated_orders")
    validated = db.read(f"SELECT passed, ready FROM {SCHEMA}.validated_orders")
    assert meta["orders_checked"] == validated.height
    assert meta["orders_checked"] == meta["ready"] + meta["held_by_rules"] + meta["passed_not_ready"]
    assert meta["ready"] == int(validated["ready"].sum()) > 0
    assert meta["passed_not_ready"] == int((validated["passed"] & ~validated["ready"]).sum()) > 0  # the unpaid
    failing = db.read(
        f"SELECT v.reason_code, o.order_ref, v.rule FROM {SCHEMA}.order_verdicts v JOIN {SCHEMA}.orders o "
        "USING (order_key) WHERE NOT v.passed"
    )
    per_reason = dict(failing.group_by("reason_code").len().iter_rows())
    assert {k.removeprefix("failing_"): v for k, v in meta.items() if k.startswith("failing_")} == per_reason
    assert all(isinstance(v, int) for k, v in meta.items() if k.startswith("failing_"))

    checks = {e.check_name: e for e in sync.get_asset_check_evaluations()}
    for rule in set(failing["rule"]):
        evaluation = checks[f"rule_{rule}"]
        examples = evaluation.metadata["example_order_refs"].value
        assert not evaluation.passed and examples
        assert set(examples) <= set(failing.filter(failing["rule"] == rule)["order_ref"])

    exceptions = _materialization(sync, "order_exceptions")
    open_rows = db.read(f"SELECT reason_code, owner FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL")
    assert exceptions["open_exceptions"] == open_rows.height
    assert sum(v for k, v in exceptions.items() if k.startswith("open_for_")) == open_rows.height
    assert {k.removeprefix("open_for_") for k in exceptions if k.startswith("open_for_")} == set(open_rows["owner"])

    reconcile = run_job(defs, "reconcile_job", instance)
    stuck = _materialization(reconcile, "orders_stuck")
    rows = db.read(f"SELECT stage FROM {SCHEMA}.orders_stuck")
    assert stuck["dagster/row_count"] == rows.height
    assert f"**{rows.height} orders waiting past their threshold**" in stuck["summary"]
    sent = _materialization(sync, "wms_submissions")
    assert sent["summary"].startswith(f"**{sent['orders_sent']} orders to whistl sent**")
    assert sum(v for k, v in stuck.items() if k.startswith("stuck_")) == rows.height
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    for key, spec in specs.items():  # every asset: an owner, a kind, a description, and its table
        assert spec.owners and spec.kinds and spec.description, key
        # (the analysts' copy is a file; the audit, the go-live plan and a replay are reports, not tables)
        reports = ("analyst_copy", "audit_report", "go_live_plan", "replayed_orders")
        assert key in reports or "dagster/table_name" in spec.metadata, key
        if spec.metadata.get("dagster/table_name", "").startswith(f"{SCHEMA}."):  # fulfil's own: described columns
            undescribed = [c.name for c in spec.metadata["dagster/column_schema"].columns if not c.description]
            assert undescribed == [], (key, undescribed)
    for table, columns in COLUMNS.items():
        schema = specs[table].metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(columns) and all(c.description for c in schema.columns)
        assert specs[table].metadata["dagster/table_name"] == f"{SCHEMA}.{table}"
        assert specs[table].owners[-1] == "team:data" and specs[table].group_name == "reconcile"
    # Who acts on what an asset shows, as the exceptions name them (owners from the world's planted problems).
    assert {"team:office", "team:cx", "team:warehouse"} <= set(specs["order_exceptions"].owners)
    assert set(open_rows["owner"]) <= {o.removeprefix("team:") for o in specs["order_exceptions"].owners}
    assert "team:warehouse" in specs["despatches"].owners
    assert "team:finance" in specs["fulfilment_reconciliation"].owners


def test_the_executor_follows_the_warehouse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run's steps in the run's own process on DuckDB and, by default, on PostgreSQL; a process per step on
    PostgreSQL when asked (never on DuckDB: one writer)."""
    from fulfil_assets.config import load_config

    duckdb = f"duckdb:///{tmp_path / 'w.duckdb'}"
    postgres = "postgresql+psycopg://postgres@127.0.0.1:5432/fulfil"
    for url, asked, executor in (
        (duckdb, None, "in_process"),
        (postgres, None, "in_process"),
        (postgres, "multiprocess", "multiprocess"),
        (duckdb, "multiprocess", "in_process"),
    ):
        monkeypatch.setenv("FULFIL_WAREHOUSE_URL", url)
        if asked:
            monkeypatch.setenv("FULFIL_EXECUTOR", asked)
        else:
            monkeypatch.delenv("FULFIL_EXECUTOR", raising=False)
        defs = build_definitions(load_config())
        assert defs.resolve_job_def("order_sync_job").executor_def.name == executor, (url, asked)
    monkeypatch.setenv("FULFIL_WAREHOUSE_URL", postgres)
    monkeypatch.setenv("FULFIL_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="FULFIL_EXECUTOR='threads': use one of in_process, multiprocess, celery"):
        build_definitions(load_config())


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_data_docs_open_over_http_from_the_validation_metadata(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the demo does: the Data Docs folder served on loopback, the link in the UI is that server's page."""
    import httpx

    from fulfil_assets.cli import serve_data_docs

    server, base = serve_data_docs(Path(fulfil_env["FULFIL_DATA_DIR"]) / "gx_docs", 0)
    try:
        monkeypatch.setenv("FULFIL_DATA_DOCS_URL", base)
        emulators.whistl.snapshot()
        defs = build_definitions(emulator_config(emulators, tmp_path))
        sync = run_job(defs, "order_sync_job", dg.DagsterInstance.ephemeral())
        link = _materialization(sync, "validated_orders")["gx_data_docs"]
        assert link.startswith(f"{base}/") and link.endswith(".html")
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        # Self-contained: nothing is fetched from the internet, and the index lists the run as a plain link.
        docs = Path(fulfil_env["FULFIL_DATA_DIR"]) / "gx_docs"
        pages = list(docs.rglob("*.html"))
        assert len(pages) >= 3
        for doc in pages:
            text = doc.read_text()
            assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=\"https?://", text), doc
            assert "fulfil_offline.css" in text, doc
        runs = re.findall(r'<a href="(validations/[^"]+\.html)">', page.text)
        assert runs and all(httpx.get(urljoin(link, run), timeout=10).status_code == 200 for run in runs)
        assert 'class="failed">Failed<' in page.text or 'class="succeeded">Succeeded<' in page.text
        assert httpx.get(urljoin(link, "static/styles/fulfil_offline.css"), timeout=10).status_code == 200
    finally:
        server.shutdown()


def test_every_check_result_says_in_words_what_it_found() -> None:
    """Each `AssetCheckResult` fulfil yields carries a description (what was found, who acts), so the UI's check
    list reads without opening metadata; found in the source, so a new check cannot forget it."""
    import ast

    root = Path(__file__).resolve().parents[1] / "fulfil_assets"
    results, bare = 0, []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("AssetCheckResult"):
                results += 1
                if "description" not in {k.arg for k in node.keywords}:
                    bare.append(f"{path.relative_to(root)}:{node.lineno}")
    assert results >= 15 and bare == []
