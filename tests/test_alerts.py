"""Alerts reach a real webhook receiver on loopback: a failed run, and each check as it turns red, once each
(through the `alerts` ledger), again after the webhook was down, and never with the webhook's secret URL in a
log, the ledger or metadata."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import EffectClock
from flow_helpers import emulator_config, queue_run

from emulators.server import Emulators
from fulfil_assets.alerts import queued_run_alert_sensor
from fulfil_assets.config import FulfilConfig
from fulfil_assets.definitions import build_definitions
from resources.warehouse import SCHEMA, WarehouseDb

SECRET = "T0KEN-9f3a-webhook-secret"


class Receiver:
    """A webhook on 127.0.0.1 that keeps what it was sent; `down` answers 503 to the next N posts."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.down = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.down:
                    outer.down -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.posts.append((self.headers["Idempotency-Key"], body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{SECRET}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _send(defs: dg.Definitions, instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> list[str]:
    run_ids = []
    for request in requests:
        result = defs.resolve_job_def("alerts_job").execute_in_process(
            instance=instance, run_config=request.run_config, raise_on_error=False
        )
        run_ids.append(result.run_id)
    return run_ids


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_failed_runs_and_checks_turning_red_reach_the_webhook_once(
    emulators: Emulators,
    fulfil_env: dict,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    effect_clock: EffectClock,
) -> None:
    emu = emulators
    emu.whistl.snapshot()
    monkeypatch.setenv("FULFIL_ALERT_WEBHOOK_URL", receiver.url)
    defs = build_definitions(emulator_config(emu, tmp_path, alerts={"timeout_s": 0.5}))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    sync = defs.resolve_job_def("order_sync_job")

    # A run fails (Linnworks refuses the token); the webhook is down for the first try.
    monkeypatch.setenv("LINNWORKS_TOKEN", "revoked")
    failed = sync.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(),
    ).for_run_failure()
    requests = list(defs.resolve_sensor_def("run_failure_alert_sensor")(context))
    assert [r.run_key for r in requests] == [f"alert:run:{failed.run_id}"]
    receiver.down = 1
    alert_runs = _send(defs, instance, requests)
    assert receiver.posts == []
    assert db.read(f"SELECT status FROM {SCHEMA}.alerts")["status"].to_list() == ["sending"]
    alert_runs += _send(defs, instance, [dg.RunRequest()])  # the retry schedule's run, straight after: too soon
    assert receiver.posts == []
    effect_clock.advance(1.0)  # an unconfirmed post is sent again once it has had 2 x the timeout to land
    alert_runs += _send(defs, instance, [dg.RunRequest()])
    keys = [k for k, _ in receiver.posts]
    assert keys == [f"alert:run:{failed.run_id}"], "posted once, after the webhook came back"
    body = receiver.posts[0][1]
    assert body["job"] == "order_sync_job" and "order_sync_job failed" in body["text"]

    # Checks: the first sync's red checks are announced once; a second sync keeps them red: nothing new.
    monkeypatch.setenv("LINNWORKS_TOKEN", fulfil_env["LINNWORKS_TOKEN"])
    assert sync.execute_in_process(instance=instance).success
    check_sensor = defs.resolve_sensor_def("failed_check_alert_sensor")
    first = check_sensor(dg.build_sensor_context(instance=instance))
    red = {
        (e.asset_key.to_user_string(), e.check_name)
        for run in instance.get_runs(filters=dg.RunsFilter(job_name="order_sync_job"))
        if run.status == dg.DagsterRunStatus.SUCCESS
        for e in _evaluations(instance, run.run_id)
        if not e.passed
    }
    assert red, "the seeded world has orders failing rules: some checks must be red"
    alert_runs += _send(defs, instance, first.run_requests)
    announced = {(b["asset"], b["check"]) for _, b in receiver.posts if b["kind"] == "check_failed"}
    assert announced == red
    assert len(receiver.posts) == 1 + len(red)
    assert sync.execute_in_process(instance=instance).success
    again = check_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert again.run_requests == [], "still red: announced when it turned, not at every evaluation"

    # The webhook's URL is a secret: nowhere in the ledger, the runs' logs or their metadata.
    ledger = db.read(f"SELECT * FROM {SCHEMA}.alerts")
    assert set(ledger["status"]) == {"sent"} and SECRET not in ledger.write_csv()
    for run_id in [*alert_runs, failed.run_id]:
        assert SECRET not in " ".join(str(e) for e in instance.all_logs(run_id))


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    return [
        e.asset_check_evaluation
        for e in instance.all_logs(run_id)
        if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_run_queued_past_the_threshold_is_announced_once(
    warehouse_url: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULFIL_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("FULFIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FULFIL_ALERT_WEBHOOK_URL", receiver.url)
    config = FulfilConfig.model_validate(
        {
            "flows": ["linnworks_whistl"],
            "systems": {"linnworks": {}, "whistl": {"drop_url": str(tmp_path / "drop")}},
            "alerts": {"timeout_s": 2},
        }
    )
    minutes = config.alerts.queued_run_minutes if config.alerts else 0
    assert minutes == 5
    defs = build_definitions(config)
    sensor = queued_run_alert_sensor(minutes)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        stuck = queue_run(instance, "order_sync_job", minutes_ago=12)
        fresh = queue_run(instance, "tracking_job", minutes_ago=1)
        queue_run(instance, "alerts_job", minutes_ago=30)  # an alerts run never announces itself

        first = sensor(dg.build_sensor_context(instance=instance))
        assert len(first.run_requests) == 1
        _send(defs, instance, first.run_requests)
        assert [k for k, _ in receiver.posts] == [f"alert:queued:{stuck.run_id}"]
        body = receiver.posts[0][1]
        assert (body["kind"], body["job"], body["run_id"]) == ("run_queued", "order_sync_job", stuck.run_id)
        assert 12 <= body["minutes_queued"] < 14
        assert "order_sync_job" in body["text"] and stuck.run_id in body["text"] and "queued 12 minutes" in body["text"]

        # Still queued at the next tick: not announced again. A run that passes the threshold later is, alone.
        assert sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor)).run_requests == []
        later = queue_run(instance, "linnworks_order_sync_job", minutes_ago=6)
        second = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        _send(defs, instance, second.run_requests)
        assert [k for k, _ in receiver.posts[1:]] == [f"alert:queued:{later.run_id}"]
        assert fresh.run_id not in json.dumps([b for _, b in receiver.posts])

        # Once a run leaves the queue the cursor forgets it; nothing is announced for it again.
        instance.report_run_failed(stuck)
        third = sensor(dg.build_sensor_context(instance=instance, cursor=second.cursor))
        assert third.run_requests == [] and json.loads(third.cursor or "[]") == [later.run_id]
    db = WarehouseDb(warehouse_url)
    ledger = db.read(f"SELECT idempotency_key, status FROM {SCHEMA}.alerts ORDER BY idempotency_key")
    assert sorted(ledger.rows()) == sorted(
        [(f"alert:queued:{stuck.run_id}", "sent"), (f"alert:queued:{later.run_id}", "sent")]
    )
