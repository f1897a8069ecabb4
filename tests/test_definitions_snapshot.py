"""A renamed asset, check, job, schedule or sensor is a visible diff here (the UI and users depend on names)."""

from __future__ import annotations

import os
from pathlib import Path

from fulfil_assets.config import load_config
from fulfil_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"


def describe() -> str:
    defs = build_definitions(load_config(Path("fulfil.yaml")))
    graph = defs.resolve_asset_graph()
    lines = [
        f"asset {'/'.join(k.path)} group={graph.get(k).group_name}"
        for k in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    ]
    lines += sorted(f"check {'/'.join(c.asset_key.path)}:{c.name}" for c in graph.asset_check_keys)
    lines += sorted(f"job {j.name}" for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    lines += sorted(f"schedule {s.name} {s.cron_schedule}" for s in defs.schedules or [])
    lines += sorted(f"sensor {s.name}" for s in defs.sensors or [])
    return "\n".join(lines) + "\n"


def test_definitions_match_snapshot() -> None:
    """The names are compared with the committed snapshot; `FULFIL_UPDATE_SNAPSHOT=1` rewrites it on purpose (a
    missing snapshot fails: a test that writes what it then compares with could never fail)."""
    current = describe()
    if os.environ.get("FULFIL_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: write it with FULFIL_UPDATE_SNAPSHOT=1 and commit it"
    assert current == SNAPSHOT.read_text(), (
        "definitions changed: rewrite tests/snapshots/definitions.txt with FULFIL_UPDATE_SNAPSHOT=1, on purpose"
    )


def test_every_asset_has_a_description_for_the_ui() -> None:
    graph = build_definitions(load_config(Path("fulfil.yaml"))).resolve_asset_graph()
    missing = [k.to_user_string() for k in graph.get_all_asset_keys() if not (graph.get(k).description or "").strip()]
    assert missing == []
