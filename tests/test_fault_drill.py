"""The fault drill: the Linnworks -> Whistl flow under 5xx, 429 storms, connection resets, expired tokens and
timeouts that Linnworks carries out after the client has given up; a run SIGKILLed as each step starts; two runs
of the same sending job at once on PostgreSQL. Afterwards every valid order is at Whistl exactly once and every
despatch's tracking at Linnworks exactly once, counted from the emulators' own inspection, not from our ledgers.

Run alone with `pytest -m fault_drill`; it is part of the suite CI runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from conftest import EffectClock, deployment_env
from flow_helpers import Drill, emulator_config, set_faults, tick_sensor, world_expectations

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions

pytestmark = [pytest.mark.fault_drill, pytest.mark.postgres, pytest.mark.long, pytest.mark.timeout(900)]

SYNC_STEPS = ("linnworks_raw", "whistl_raw", "staged_orders", "wms_stock", "validation", "wms_submissions")
CLIENT_TIMEOUT_S = 1.0
KILLED_DESPATCH_RUNS = 2
FAULTS = {
    "error_rate": 0.1,
    "error_status": 503,
    "throttle_rate": 0.05,
    "reset_rate": 0.03,
    "timeout_rate": 0.03,
    "timeout_s": 1.5,
}


def settle(emu: Emulators, clock: EffectClock) -> None:
    """Every call Linnworks holds is applied, and every unconfirmed attempt is old enough to be looked up (twice the
    client's timeout): what the drill once slept for."""
    emu.linnworks.apply_pending()
    clock.advance(2 * CLIENT_TIMEOUT_S)


def until_success(defs: dg.Definitions, job: str, instance: dg.DagsterInstance, tries: int = 6, **kw: object) -> None:
    """Run in-process until a run succeeds (faults may exhaust a run's retries; the next run goes on)."""
    for _ in range(tries):
        if defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kw).success:
            return
    pytest.fail(f"{job} never succeeded in {tries} runs")


def test_fault_drill(
    emulators: Emulators, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, effect_clock: EffectClock
) -> None:
    emu = emulators
    deployment_env(monkeypatch, tmp_path, emu, postgres_url)
    config = emulator_config(emu, tmp_path, systems={"linnworks": {"budget_share": 1.0, "timeout_s": CLIENT_TIMEOUT_S}})
    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    drill = Drill(tmp_path, config_file)
    emu.whistl.snapshot()
    emu.whistl.partial_share, emu.whistl.multi_parcel_share = 0.3, 0.3
    set_faults(emu, "linnworks", **FAULTS)

    # What must reach Whistl, and what must not, is the world's own record of what it planted.
    truth = [o for o in emu.timeline()["orders"] if o["oms"] == "linnworks"]
    fit = {o["order_ref"] for o in truth if o["ready"]}
    spoiled = {o["order_ref"] for o in truth if o["faults"]}
    assert fit and spoiled
    sync_config = world_expectations(emu, tmp_path)

    # A SIGKILL as each step of the order sync starts (every planned kill lands), then the order sync to its end.
    killed = [step for step in SYNC_STEPS if drill.kill_at("order_sync_job", step, sync_config, attempts=4)]
    assert killed == list(SYNC_STEPS), f"kills planned at {SYNC_STEPS}, landed at {killed}"
    set_faults(emu, "linnworks", expire_tokens=True)
    until_success(defs, "order_sync_job", instance, run_config=sync_config)
    # Two pushes at once, each its own process and instance (a raised run limit, or the CLI).
    drill.twice_at_once("wms_submissions")

    # The warehouse works; the first despatch files' runs are killed as they start posting tracking (the file
    # taken in, its posts due), then each file is taken in for good.
    cursor = None
    kills = planned = 0
    for steps in range(12):  # six shifts, and more until the planned kills had their files
        if steps >= 6 and planned == KILLED_DESPATCH_RUNS:
            break
        emu.whistl.step()
        result = tick_sensor(defs, instance, cursor)
        cursor = result.cursor
        for request in result.run_requests or []:
            if planned < KILLED_DESPATCH_RUNS and request.tags["fulfil/file"].startswith("shp_"):
                planned += 1
                kills += drill.kill_at("despatch_job", "tracking_posts__linnworks", request.run_config, attempts=4)
            until_success(defs, "despatch_job", instance, run_config=request.run_config)
    assert kills == planned == KILLED_DESPATCH_RUNS, f"{planned} despatch runs to kill, {kills} killed"
    drill.twice_at_once("tracking_posts/linnworks")

    # Faults off: whatever is still due goes out (unconfirmed attempts settle first).
    set_faults(emu, "linnworks", error_rate=0.0, throttle_rate=0.0, reset_rate=0.0, timeout_rate=0.0)
    settle(emu, effect_clock)
    until_success(defs, "order_sync_job", instance, run_config=sync_config)
    for _ in range(3):
        emu.whistl.step()
        result = tick_sensor(defs, instance, cursor)
        cursor = result.cursor
        for request in result.run_requests or []:
            until_success(defs, "despatch_job", instance, run_config=request.run_config)
    settle(emu, effect_clock)
    until_success(defs, "tracking_job", instance)

    # Counted at the emulators: every order the world made fit at Whistl exactly once, and no other...
    receipts = emu.whistl.inspect()["receipts"]
    assert receipts and Counter(receipts.values()) == Counter({1: len(receipts)}), "an order reached Whistl twice"
    assert set(receipts) == fit, "an order fit to send never reached Whistl, or one the world spoiled did"
    # ...and every despatch's tracking at Linnworks exactly once, every completed order processed once.
    order_id = {o["order_ref"]: o["order_id"] for o in truth}
    expected: dict[str, set[str]] = {}
    archive = emu.whistl.root / "out" / "archive"
    for f in sorted(archive.glob("shp_*.csv")):
        for r in pl.read_csv(f, infer_schema=False).iter_rows(named=True):
            if int(r["quantity_despatched"]) > 0:
                expected.setdefault(order_id[r["order_reference"]], set()).add(r["despatch_reference"])
    applied = {k: len(v) for k, v in emu.linnworks.inspect()["shipping_info"].items()}
    assert expected and applied == {k: len(v) for k, v in expected.items()}
    process_calls = Counter(
        c.body["orderId"]
        for c in emu.linnworks.recorder.calls
        if c.path.endswith("Orders/ProcessOrder") and c.status == 200
    )
    assert process_calls and max(process_calls.values()) == 1, "an order was processed twice"
    despatched = {order_id[r] for r, s in emu.whistl.inspect()["stages"].items() if s == "despatched"}
    assert set(emu.linnworks.inspect()["processed"]) == despatched
    faults = emu.linnworks.recorder.status_counts
    assert faults[503] and faults[429], "the drill ran without its faults"
    print(
        f"\nfault drill: {len(receipts)} orders at Whistl once each; {sum(applied.values())} tracking posts on "
        f"{len(applied)} orders once each; {len(despatched)} processed once; SIGKILLs at {killed} and {kills} "
        f"despatch run(s); Linnworks answered {dict(sorted(faults.items()))} (0 = connection reset)"
    )
