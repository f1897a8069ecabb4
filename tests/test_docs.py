"""The docs a newcomer opens stay readable and whole: the README's quick start fits on a screen and every relative
link in the README and docs/ leads to a file that exists (and to a heading there, for `#anchor` links)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a file's headings."""
    heads = re.findall(r"^#+\s+(.*)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in heads}


def test_the_readme_reads_in_a_few_minutes() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 80, len(lines)
    prose = [line for line in lines if line and not line.startswith(("|", " ", "```", "make"))]
    assert all(len(line) <= 120 for line in prose), [line for line in prose if len(line) > 120]


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file.read_text())):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_runbooks_queries_commands_and_names_are_real(tmp_path: Path) -> None:
    """docs/runbook.md is kept in step with the code: every query it gives runs on a warehouse fulfil made, every
    `fulfil` command it names exists, and every check, sensor and job it names is in the code location."""
    from fulfil_assets.cli import main
    from fulfil_assets.config import AlertsConfig, load_config
    from fulfil_assets.definitions import build_definitions
    from fulfil_assets.warehouse_tables import ensure_tables
    from resources.warehouse import WarehouseDb

    text = (ROOT / "docs" / "runbook.md").read_text()
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    queries = [" ".join(q.split()) for q in re.findall(r"`(SELECT[^`]*)`", text)]
    statements = [s for block in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) for s in block.split(";")]
    assert len(queries) >= 2 and len(statements) >= 5
    for query in queries:
        db.read(query)  # raises, naming the column or table, when the runbook drifts from the tables
    db.execute([s for s in statements if s.strip()])

    for command in set(re.findall(r"`fulfil ([a-z-]+)", text)):
        with pytest.raises(SystemExit) as shown:
            main([command, "--help"])
        assert shown.value.code == 0, command

    shipped = load_config(ROOT / "fulfil.yaml")  # with alerts on, as the runbook's alert entries assume
    defs = build_definitions(shipped.model_copy(update={"alerts": AlertsConfig()}))
    repo = defs.get_repository_def()
    checks = {key.name for a in repo.asset_graph.asset_nodes for key in a.check_keys}
    names = set(re.findall(r"`([a-z_]+)`", text))
    assert {"tracking_reached_the_order_system"} <= names
    assert {n for n in names if n.startswith(("tracking_reached", "every_", "no_"))} <= checks
    assert {n for n in names if n.endswith("_sensor")} <= {s.name for s in repo.sensor_defs}
    assert {n for n in names if n.endswith("_job")} <= {j.name for j in repo.get_all_jobs()}
