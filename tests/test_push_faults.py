"""5,000 orders each to Peoplevox and to Linnworks through the effect module while the target answers 10% 503s,
429 storms, connection resets and timeouts it applies after the client gave up: every order reaches the target
exactly once (counted from what the emulator applied), and the ledger says so row for row. (Whistl's file
exchange has its own drill in test_fault_drill.py.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from flow_helpers import set_faults

from emulators.server import Emulators
from emulators.workloads import ready_orders
from fulfil_assets import effects
from fulfil_assets.push.assets import keyed_intents
from fulfil_assets.push.linnworks_orders import LinnworksOrders, linnworks_payloads
from fulfil_assets.push.peoplevox_orders import PeoplevoxOrders, peoplevox_payloads
from fulfil_assets.warehouse_tables import ensure_tables
from resources.linnworks import LinnworksClient
from resources.peoplevox import PeoplevoxClient
from resources.warehouse import SCHEMA, WarehouseDb

N = 5_000
# 10% 5xx, resets and timeouts the target applies after the client gave up, and a 429 storm (each 429 asks for
# a 2 s wait, which the client honours).
FAULTS = {
    "error_rate": 0.1,
    "error_status": 503,
    "throttle_next": 12,
    "throttle_rate": 0.02,
    "reset_rate": 0.05,
    "timeout_rate": 0.05,
}


def _deliver_under_faults(emu: Emulators, system: str, db: WarehouseDb, sender: object) -> list[effects.DeliveryReport]:
    set_faults(emu, system, **FAULTS, timeout_s=0.6)
    reports = []
    for _ in range(6):  # rounds under faults, as scheduled runs would be
        reports.append(effects.deliver(db, "wms_submissions", sender, batches=sender.batches))  # type: ignore[arg-type]
        getattr(emu, system).apply_pending()  # a call the client gave up on is applied by now
    set_faults(emu, system, error_rate=0, throttle_rate=0, reset_rate=0, timeout_rate=0)
    for _ in range(6):
        reports.append(effects.deliver(db, "wms_submissions", sender, batches=sender.batches))  # type: ignore[arg-type]
        pending = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.wms_submissions WHERE status <> 'sent'")["n"][0]
        if pending == 0:
            break
    return reports


@pytest.mark.fault_drill
@pytest.mark.parametrize(
    ("target", "warehouse_url"), [("peoplevox", "postgres"), ("linnworks", "duckdb")], indirect=["warehouse_url"]
)
def test_every_order_reaches_the_target_once_under_faults(
    emulators: Emulators, warehouse_url: str, target: str, tmp_path: Path
) -> None:
    emu = emulators
    db = WarehouseDb(warehouse_url)
    ensure_tables(db)
    if target == "peoplevox":
        orders, lines = ready_orders(emu, N, "linnworks_peoplevox")
        intents = keyed_intents(peoplevox_payloads(orders, lines), "peoplevox")
        client = PeoplevoxClient(emu.url("peoplevox"), *emu.peoplevox.credentials, budget_share=1e6, timeout_s=0.3)
        sender: object = PeoplevoxOrders(client)
    else:
        orders, lines = ready_orders(emu, N, "shopify_linnworks")
        intents = keyed_intents(linnworks_payloads(orders, lines), "linnworks")
        client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=1e6, timeout_s=0.3)
        sender = LinnworksOrders(client)
    emu.peoplevox.limit = emu.peoplevox.window(10**9, 60.0)  # limits off: the faults are the test
    for name in list(emu.linnworks.limits):
        emu.linnworks.limits[name] = emu.linnworks.window(10**9, 60.0)
    effects.intend(db, "wms_submissions", intents)

    reports = _deliver_under_faults(emu, target, db, sender)

    refs = set(orders["order_ref"])
    if target == "peoplevox":
        applied = Counter(emu.peoplevox.inspect()["saves"])
        lines_held = sum(len(items) for items in emu.peoplevox.inspect()["order_items"].values())
        assert lines_held == lines.height
    else:
        applied = Counter(r for call in emu.linnworks.create_calls for r in call)
        assert set(emu.linnworks.inspect()["created_orders"]) == refs
    assert set(applied) == refs and set(applied.values()) == {1}, "an order was applied twice or not at all"
    ledger = db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions")
    assert ledger.height == N and set(ledger["status"]) == {"sent"}
    # The faults really happened: calls refused, throttled, cut off, and orders that needed more than one attempt.
    statuses = emu.peoplevox.recorder.status_counts if target == "peoplevox" else emu.linnworks.recorder.status_counts
    assert statuses[503] > 0 and statuses[429] > 0
    retried = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.wms_submissions WHERE attempts > 1")["n"][0]
    assert retried > 0 and len(reports) > 1


def test_a_peoplevox_lookup_that_times_out_is_asked_again_in_halves(emulators: Emulators) -> None:
    """Unconfirmed orders are looked up in Peoplevox before anything is resent; a search that times out (a long
    search answers slowly) is asked again in halves, so the orders are still confirmed in the same delivery."""
    emu = emulators
    orders, lines = ready_orders(emu, 40, "linnworks_peoplevox")
    rows = keyed_intents(peoplevox_payloads(orders, lines), "peoplevox")
    client = PeoplevoxClient(
        emu.url("peoplevox"), *emu.peoplevox.credentials, budget_share=1e6, timeout_s=0.3, max_attempts=2
    )
    sender = PeoplevoxOrders(client)
    outcomes = [o for batch in sender.batches(rows) for _, o in sender.send(batch)]
    assert {o.status for o in outcomes} == {effects.SENT}
    calls_before = len(emu.peoplevox.recorder.calls)
    # The whole search times out on every attempt the client makes (2); its halves answer.
    set_faults(emu, "peoplevox", timeout_next=2, timeout_s=0.6)
    found = sender.holds(rows)
    assert set(found) == set(rows["idempotency_key"])
    searches = [c for c in list(emu.peoplevox.recorder.calls)[calls_before:] if "getRequest" in str(c.body)]
    assert len(searches) > 2  # the whole search, then its halves
