"""Peoplevox calls back on despatch: the subscription is made once (its id kept), the emulated Peoplevox posts
to the real receiver over HTTP, a sensor tick starts the despatch run, and the run that success launches posts
the tracking to Linnworks. A callback without the secret is refused and starts nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
import uvicorn
from flow_helpers import all_flows_config, run_job

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.despatch.peoplevox_callbacks import callback_app, inbox_dir
from resources.warehouse import SCHEMA, WarehouseDb

SECRET = "cb-secret-3f9a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver(fulfil_env: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`fulfil peoplevox-callbacks`' app, listening on a free loopback port; its URL."""
    monkeypatch.setenv("PEOPLEVOX_CALLBACK_TOKEN", SECRET)
    port = free_port()
    url = f"http://127.0.0.1:{port}/peoplevox/despatches"
    server = uvicorn.Server(
        uvicorn.Config(callback_app(inbox_dir(), "/peoplevox/despatches", SECRET), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(timeout=5)


def wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_a_peoplevox_callback_starts_the_run_that_posts_tracking(
    emulators: Emulators, fulfil_env: dict, receiver: str, tmp_path: Path
) -> None:
    emu = emulators
    emu.linnworks.peoplevox_share = 1.0
    config = all_flows_config(
        emu, tmp_path, flows=["linnworks_peoplevox"], systems={"peoplevox": {"base_url": emu.url("peoplevox"),
                                                                               "callback_url": receiver}}
    )  # fmt: skip
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    run_job(defs, "order_sync_job", instance)
    run_job(defs, "peoplevox_despatch_job", instance)
    run_job(defs, "peoplevox_despatch_job", instance)  # a second run subscribes no second time
    subs = emu.peoplevox.inspect()["subscriptions"]
    assert [(s["event"], s["url"]) for s in subs.values()] == [("TrackingNumberReceived", receiver)]
    ledger = db.read(f"SELECT status, result, payload, last_error FROM {SCHEMA}.peoplevox_subscriptions")
    assert ledger.select("status", "result").rows() == [("sent", "subscription 1")]
    assert SECRET not in " ".join(str(v) for v in ledger.row(0))  # the secret is sent, never stored

    sensor = defs.resolve_sensor_def("peoplevox_callback_sensor")
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=None, definitions=defs))
    assert not tick.run_requests  # nothing despatched yet

    ref = sorted(emu.peoplevox.sales_orders)[0]
    tracking = emu.peoplevox.control("despatch", {"order": ref})["tracking_number"]
    wait_for(lambda: emu.peoplevox.inspect()["callbacks"])
    assert emu.peoplevox.inspect()["callbacks"][0]["status"] == 200
    forged = httpx.post(receiver, data={"order": ref, "token": "guess"})
    assert forged.status_code == 401 and len(list(inbox_dir().glob("*.json"))) == 1

    tick = sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, definitions=defs))
    assert len(tick.run_requests) == 1 and tick.run_requests[0].tags["fulfil/orders"] == ref
    again = sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, definitions=defs))
    assert not again.run_requests  # each callback starts one run

    run_job(defs, "peoplevox_despatch_job", instance)  # takes the despatch in and posts its tracking: no second run
    order_id = db.read(f"SELECT source_order_id FROM {SCHEMA}.orders WHERE order_ref = :r", {"r": ref})[0, 0]
    assert [i["TrackingNumber"] for i in emu.linnworks.inspect()["shipping_info"][order_id]] == [tracking]
    assert order_id in emu.linnworks.inspect()["processed"]
