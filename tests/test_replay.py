"""`fulfil replay`: orders held for a shipping method with no service code are released once, and nothing else,
after the mapping is fixed and their window replayed. The replay itself calls no system (not one request, every
emulator's state and Whistl's folders as they were); the push run after it sends exactly the window's orders the
world holds fit now, each once, counted at the emulated Whistl; a second replay releases nothing more."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from flow_helpers import emulator_config, run_job, world_expectations
from test_audit import API_SYSTEMS, order_of, state_of

from emulators.server import Emulators
from emulators.world import UNSERVED_METHODS
from fulfil_assets.cli import main
from fulfil_assets.definitions import build_definitions

FLOW = "linnworks_whistl"


def replay(start: str, end: str, exp: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """`fulfil replay --json` for the window, its printed answer."""
    capsys.readouterr()
    assert main(["replay", "--from", start, "--to", end, "--flow", FLOW, "--expectations", str(exp), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)  # the SQL is the shared ledger's, as in every flow
def test_a_replayed_window_releases_its_held_orders_once_and_nothing_else(
    emulators: Emulators,
    fulfil_env: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    # Four more otherwise fit orders whose customer chose a method the warehouse account has no service for.
    fit = [o for o in emu.timeline()["orders"] if o["ready"] and o["target"] == "whistl" and o["oms"] == "linnworks"]
    for o in fit[:4]:
        order_of(emu, "linnworks", o["order_id"]).shipping_method = sorted(UNSERVED_METHODS)[0]
    # The world's record: the Linnworks orders held for their service alone, in the order they were placed.
    held = sorted(
        (order_of(emu, "linnworks", o["order_id"]).created_at, o["order_ref"])
        for o in emu.timeline()["orders"]
        if o["oms"] == "linnworks"
        and o["target"] == "whistl"
        and o["paid"]
        and not o["cancelled"]
        and set(o["faults"]) == {"SERVICE_UNMAPPED"}
    )
    assert len(held) >= 4

    config = emulator_config(emu, tmp_path)
    path = tmp_path / "fulfil.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("FULFIL_CONFIG", str(path))
    run_config = world_expectations(emu, tmp_path)
    exp = Path(run_config["ops"]["validation"]["config"]["expectations_dir"])
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    sync = defs.resolve_job_def("order_sync_job")
    run_job(defs, "order_sync_job", instance, run_config)
    emu.whistl.step()
    first = dict(emu.whistl.inspect()["receipts"])
    assert first and not set(first) & {ref for _, ref in held}

    # The office maps both methods to a service the account has, then replays a window holding all but the last
    # two of those orders.
    with (exp / "service_codes.csv").open("a", newline="") as out:
        csv.writer(out).writerows(["linnworks", m, "whistl", "WHISTL-T48"] for m in sorted(UNSERVED_METHODS))
    start, end = (held[0][0] - timedelta(seconds=1)).isoformat(), held[-2][0].isoformat()
    in_window = {ref for placed, ref in held if placed < held[-2][0]}
    before = state_of(emu)
    for name in API_SYSTEMS:
        getattr(emu, name).recorder.clear()

    assert replay("2000-01-01", "2000-01-02", exp, capsys)["per_flow"] == []  # a window with no order in it
    answer = replay(start, end, exp, capsys)

    assert [c.path for name in API_SYSTEMS for c in getattr(emu, name).recorder.calls] == []  # no system called
    assert state_of(emu) == before  # nor anything moved in Whistl's folders
    assert [(r["flow"], r["released"]) for r in answer["per_flow"]] == [(FLOW, len(in_window))]

    # The next push run sends the window's orders, each once, and nothing else.
    assert sync.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("wms_submissions")]).success
    emu.whistl.step()
    after = emu.whistl.inspect()["receipts"]
    assert {ref: n for ref, n in after.items() if ref not in first} == dict.fromkeys(in_window, 1)
    assert {ref: after[ref] for ref in first} == first  # nothing sent before went again

    # A window backwards, or a flow fulfil.yaml does not run, is named, and nothing is replayed.
    assert main(["replay", "--from", end, "--to", start, "--flow", FLOW, "--expectations", str(exp)]) == 2
    assert "must be before" in capsys.readouterr().err
    assert main(["replay", "--from", start, "--to", end, "--flow", "cin7_whistl", "--expectations", str(exp)]) == 1
    assert "cin7_whistl" in capsys.readouterr().err

    # Replayed again, the window has nothing more to release; the push run after it sends nothing.
    again = replay(start, end, exp, capsys)
    assert [(r["flow"], r["released"]) for r in again["per_flow"]] == [(FLOW, 0)]
    assert sync.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("wms_submissions")]).success
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"] == after


def test_released_per_flow_counts_what_the_replay_made_due() -> None:
    """Released: a row new since the replay, held or refused before and due now; one sent, or due already, is
    already recorded."""
    import polars as pl

    from fulfil_assets.audit.replay import parse_moment, released_per_flow

    window = pl.DataFrame(
        {"order_key": ["a", "b", "c", "d", "e", "g"], "flow": ["f"] * 6, "ready": [True] * 5 + [False]}
    )
    intents = pl.DataFrame({"idempotency_key": ["w:a", "w:b", "w:c", "w:d", "w:e"], "flow": ["f"] * 5})
    before = pl.DataFrame(
        {"idempotency_key": ["w:b", "w:c", "w:d", "w:e"], "status": ["held", "sent", "failed", "pending"]}
    )
    after = pl.DataFrame(
        {
            "idempotency_key": ["w:a", "w:b", "w:c", "w:d", "w:e"],
            "status": ["pending", "pending", "sent", "pending", "pending"],
        }
    )
    assert released_per_flow(window, intents, before, after).to_dicts() == [
        {"flow": "f", "orders_in_window": 6, "released": 3, "already_recorded": 2, "still_held": 1}
    ]
    assert parse_moment("2026-12-01").isoformat() == "2026-12-01T00:00:00+00:00"
    assert parse_moment("2026-12-01T10:00:00+01:00").isoformat() == "2026-12-01T09:00:00+00:00"
