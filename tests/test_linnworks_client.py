"""The shared Linnworks client against the emulator: retries, re-auth, budgets and errors that say what."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from emulators.server import Emulators
from resources.http import AuthError, DataError, RateBudget, TransientError
from resources.linnworks import LinnworksClient

ROOT = Path(__file__).resolve().parent.parent


def client_for(emu: Emulators, **kwargs: object) -> LinnworksClient:
    app_id, secret, token = emu.linnworks.credentials
    return LinnworksClient(emu.url("linnworks"), app_id, secret, token, **kwargs)  # type: ignore[arg-type]


def all_open_ids(client: LinnworksClient) -> list[str]:
    return [o["OrderId"] for page in client.open_orders(page_size=7) for o in page]


def set_faults(emu: Emulators, **values: object) -> None:
    httpx.post(f"http://127.0.0.1:{emu.ports['linnworks']}/_emulator/faults", json=values).raise_for_status()


def test_reads_every_open_order_once(emulators: Emulators) -> None:
    client = client_for(emulators)
    ids = all_open_ids(client)
    assert sorted(ids) == sorted(o.uid for o in emulators.linnworks.orders.values())
    assert client.stats.calls["Orders/GetOpenOrders"] == 6 and client.stats.retries == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"throttle_next": 2},
        {"error_next": 3, "error_status": 502},
        {"reset_next": 2},
        {"malformed_next": 2},
        {"timeout_next": 1, "timeout_s": 3.0},
    ],
)
def test_transient_faults_are_retried_to_a_complete_result(emulators: Emulators, fault: dict) -> None:
    expected = sorted(o.uid for o in emulators.linnworks.orders.values())
    client = client_for(emulators, timeout_s=1.0)
    client.session()
    set_faults(emulators, **fault)
    assert sorted(all_open_ids(client)) == expected
    assert client.stats.retries >= 1
    if "throttle_next" in fault:
        assert client.stats.throttled == 2


def test_expired_session_reauthorises_once(emulators: Emulators) -> None:
    client = client_for(emulators)
    first = len(all_open_ids(client))
    set_faults(emulators, expire_tokens=True)
    assert len(all_open_ids(client)) == first
    assert client.stats.calls["Auth/AuthorizeByApplication"] == 2


def test_rejected_credentials_say_so_without_the_secret(emulators: Emulators) -> None:
    app_id, _, token = emulators.linnworks.credentials
    client = LinnworksClient(emulators.url("linnworks"), app_id, "s3cr3t-not-this-one", token)
    with pytest.raises(AuthError) as info:
        client.session()
    assert "credentials rejected by Linnworks" in str(info.value)
    assert "s3cr3t-not-this-one" not in str(info.value) and token not in str(info.value)


def test_persistent_failure_names_system_and_call(emulators: Emulators) -> None:
    client = client_for(emulators, max_attempts=2)
    client.session()
    set_faults(emulators, error_rate=1.0, error_status=500)
    with pytest.raises(TransientError) as info:
        client.call("Orders/GetOpenOrders", {})
    assert str(info.value).startswith("Linnworks Orders/GetOpenOrders: HTTP 500")


def test_refusal_is_a_data_error(emulators: Emulators) -> None:
    client = client_for(emulators)
    with pytest.raises(DataError) as info:
        client.call("Orders/GetOpenOrders", {"entriesPerPage": 5000})
    assert info.value.status == 400 and "entriesPerPage" in info.value.reason


def test_budget_share_scales_each_method_limit(emulators: Emulators) -> None:
    client = client_for(emulators, budget_share=0.02)
    assert client.budget_for("Orders/GetOpenOrders").limit == 5  # type: ignore[union-attr]  # 250/min x 2%
    assert client.budget_for("Orders/CancelOrder").limit == 3  # type: ignore[union-attr]  # 150/min x 2%


def test_rate_budget_waits_instead_of_overrunning() -> None:
    budget = RateBudget(3, 0.4)
    waits = [budget.acquire() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and 0.3 < waits[3] < 0.6
    budget.pause(0.3)
    assert budget.acquire() >= 0.25


def test_reads_leave_the_send_reserve_to_sends_and_sends_never_starve_reads() -> None:
    """Reads take the room sends are not using (the whole window with no send about), and a send waiting for the
    window to turn gets the next call it allows before any read waiting with it; sends filling the window never
    keep the orders from being read."""
    reads_alone = RateBudget(4, 2.0, send_reserve=2)
    assert [reads_alone.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    budget = RateBudget(4, 2.0, send_reserve=2)
    assert budget.acquire(send=True) == 0.0
    time.sleep(0.5)
    assert [budget.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # one send went: three slots are the reads'
    done: dict[str, float] = {}

    def send() -> None:
        budget.acquire(send=True)
        done["send"] = time.monotonic()

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.1)
    budget.acquire()  # waiting beside the send: the window's first slot to turn is the send's
    done["read"] = time.monotonic()
    sender.join()
    assert done["send"] < done["read"]
    sends_first = RateBudget(4, 2.0, send_reserve=2)
    assert [sends_first.acquire(send=True) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert sends_first.acquire() == 0.0  # three sends in the window: a read still has its turn
    assert sends_first.acquire(send=True) > 1.0  # the window is full


def test_a_read_held_for_a_send_goes_when_that_send_leaves_the_window() -> None:
    """The room reads leave follows the sends in the window: when the oldest send leaves it, a read waiting goes
    then, not only once the oldest read has left too."""
    budget = RateBudget(4, 4.0, send_reserve=2)
    budget.acquire(send=True)
    time.sleep(1.5)
    assert [budget.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    waited = budget.acquire()  # the send leaves at 4.0 s, the oldest read at 5.5 s
    assert 2.0 < waited < 3.2


def test_stock_items_end_on_a_short_page_or_a_400_past_the_end(emulators: Emulators) -> None:
    client = client_for(emulators)
    stock_skus = [p.sku for p in emulators.world.products if not p.is_bundle]
    assert len(stock_skus) == 300  # a multiple of 100: the last full page is followed by a 400
    items = [i for page in client.stock_items(page_size=100) for i in page]
    assert [i["ItemNumber"] for i in items] == stock_skus
    assert client.stats.statuses[400] == 1
    assert all(len(i["StockLevels"]) == 3 for i in items)  # Default, Whistl and Peoplevox locations
    short = [i for page in client.stock_items(page_size=128) for i in page]
    assert len(short) == 300 and client.stats.statuses[400] == 1
    assert {s["PostalServiceName"] for s in client.postal_services()} >= {"Next Day", "Standard Delivery"}


_OTHER_PROCESS = """
import json, sys, time
from pathlib import Path
from resources.http import RateBudget
budget = RateBudget(4, 1.0, Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # both processes start calling together
calls = []
for _ in range(4):
    budget.acquire()
    calls.append(time.time())
print(json.dumps(calls))
"""


def test_a_rate_budget_file_holds_across_processes(tmp_path: Path) -> None:
    """Two processes calling one account (a stock push and tracking posts in two runs) draw on one window: at no
    moment more than the limit in any window, where two budgets of their own would have allowed twice it."""
    path = tmp_path / "budget.json"
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None and other.stdout is not None and other.stdout.readline().strip() == "ready"
    budget = RateBudget(4, 1.0, path)
    other.stdin.write("go\n")
    other.stdin.flush()
    mine = []
    for _ in range(4):
        budget.acquire()
        mine.append(time.time())
    out, _ = other.communicate(timeout=30)
    calls = sorted(mine + json.loads(out))
    assert len(calls) == 8
    # Times are taken as `acquire` returns, up to tens of milliseconds after the grant on a loaded machine (CI
    # once showed 5 in 0.99 s for that): a 0.9 s window still holds 8 where two budgets of their own were used.
    busiest = max(sum(1 for t in calls if start <= t < start + 0.9) for start in calls)
    assert busiest <= 4, calls
    assert calls[-1] - calls[0] >= 0.99  # the eight calls took at least a second window
