"""The HTTP machinery every system client shares: a rate budget, retries with backoff, errors that say what."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class SystemError_(Exception):
    """Base error: names the system, the call and the reason, never a credential."""

    def __init__(self, system: str, call: str, reason: str, status: int | None = None) -> None:
        self.system, self.call, self.reason, self.status = system, call, reason, status
        super().__init__(f"{system} {call}: {reason}")


class TransientError(SystemError_):
    """A failure worth retrying (5xx, 429, timeouts, resets). `maybe_applied`: the system may have carried the
    call out before the failure (a timeout or reset after sending, a 5xx), so a call that changes something must
    not be repeated blindly; a 429 or a refused connection is known not to have been applied."""

    def __init__(
        self,
        system: str,
        call: str,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = True,
    ) -> None:
        super().__init__(system, call, reason, status)
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class DataError(SystemError_):
    """The system refused the request itself (4xx): retrying the same data will not help."""


class AuthError(SystemError_):
    """Credentials rejected."""


class RateBudget:
    """A client-side sliding window: at most `limit` calls per `window_s`, shared by every user of one system's
    account. With a `path`, the window lives in that file under an exclusive `flock`, so it holds across every
    fulfil process on the machine (runs of the daemon, sensors, `fulfil` commands): two runs calling Cin7 at once
    spend the account share `fulfil.yaml` gives, not twice it. Without one it is this process's alone."""

    def __init__(self, limit: int, window_s: float, path: Path | None = None, send_reserve: int = 0) -> None:
        self.limit, self.window_s, self.path = max(1, limit), window_s, path
        self.send_reserve = min(send_reserve, self.limit - 1)
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def acquire(self, send: bool = False) -> float:
        """Block until a call is allowed; return the seconds waited. Reads leave room in the window for as many
        sends as went in it, and while a send waits for `send_reserve` of it, so the next call the window allows is
        that send's: a backlog being read never makes a customer's tracking wait long for the window to turn, and
        room sends do not use is read with rather than left idle. Sends take whatever the reads leave, so a
        tracking backlog never stops the orders being read either."""
        waited = 0.0
        while True:
            with self._state() as state:
                now = time.time()
                # (entries later than now: the clock was set back; they must not hold callers for that long)
                calls = state["calls"] = [t for t in state["calls"] if now - self.window_s < t <= now]
                sends = state["sends"] = [t for t in state["sends"] if now - self.window_s < t <= now]
                state["blocked_until"] = min(state["blocked_until"], now + 3600.0)
                waiting = now < state["send_waiting_until"]
                room = self.send_reserve if waiting else min(self.send_reserve, len(sends))
                reads = [t for t in calls if t not in sends]
                capped = not send and len(reads) >= self.limit - room
                if now < state["blocked_until"]:
                    pause = state["blocked_until"] - now
                elif len(calls) < self.limit and not capped:
                    calls.append(now)
                    if send:
                        sends.append(now)
                    return waited
                elif capped:  # this read's turn: the oldest read leaving the window, or the room the oldest send
                    turn = reads[len(reads) - (self.limit - room)]  # left as it does (room sized to the sends)
                    if sends and not waiting and room == len(sends):
                        turn = min(turn, sends[0])
                    pause = turn + self.window_s - now
                    if waiting:  # the room shrinks back to the sends' once the send waiting has gone
                        pause = min(pause, state["send_waiting_until"] - now)
                else:
                    pause = calls[len(calls) - self.limit] + self.window_s - now
                if send:  # reads hold back meanwhile
                    state["send_waiting_until"] = max(state["send_waiting_until"], now + pause + 1.0)
            time.sleep(pause)
            waited += pause

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (the server said slow down)."""
        with self._state() as state:
            state["blocked_until"] = max(state["blocked_until"], time.time() + seconds)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The window, held for the block: this process's, or the file's under its lock (written back after)."""
        with self._lock:
            if self.path is None:
                yield self._fill(self._memory)
                return
            with open(self.path, "a+") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                file.seek(0)
                try:
                    state = self._fill(json.loads(file.read() or "{}"))
                except ValueError:  # a write cut short by a crash: start the window again
                    state = self._fill({})
                yield state
                file.seek(0)
                file.truncate()
                file.write(json.dumps(state))
                file.flush()

    @staticmethod
    def _fill(state: dict[str, Any]) -> dict[str, Any]:
        """The state's fields, defaulted where missing (a new file, an older one)."""
        for name, empty in (("calls", []), ("sends", []), ("blocked_until", 0.0), ("send_waiting_until", 0.0)):
            state.setdefault(name, empty)
        return state


_BUDGETS: dict[tuple[str, ...], RateBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_path(system: str, base_url: str, bucket: str) -> Path:
    """The file of one account's budget under the data folder: `rate_budgets/<system>-<bucket>-<account>.json`."""
    account = hashlib.sha256(base_url.encode()).hexdigest()[:10]
    system_name, name = (re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_").lower() for part in (system, bucket))
    folder = Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "rate_budgets"
    return folder / f"{system_name}-{name}-{account}.json"


SEND_RESERVE = 1 / 2  # of an account-wide budget's window reads leave to a send waiting (else the room sends use)


def shared_budget(
    system: str, base_url: str, bucket: str, limit: int, window_s: float, send_reserve: float = 0.0
) -> RateBudget:
    """The one budget per (system, account, bucket), kept in a file so that every process and thread calling
    that account draws on it together (ingestion, pushes and tracking posts alike); where reads and sends share
    one bucket (an account-wide limit), `send_reserve` of it is kept for sends."""
    with _BUDGETS_LOCK:
        path = budget_path(system, base_url, bucket)
        key = (str(path), str(limit), str(window_s), str(send_reserve))
        if key not in _BUDGETS:
            _BUDGETS[key] = RateBudget(limit, window_s, path, send_reserve=int(limit * send_reserve))
        return _BUDGETS[key]


@dataclass
class CallStats:
    """What a client did: calls by name and status, retries and time waited for the budget."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
    budget_wait_s: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata."""
        return {
            "calls": sum(self.calls.values()),
            "retries": self.retries,
            "throttled": self.throttled,
            "budget_wait_s": round(self.budget_wait_s, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def _retry_after(response: httpx.Response) -> float | None:
    for header in ("retry-after", "x-retry-after"):
        value = response.headers.get(header)
        if value:
            try:
                return float(value)
            except ValueError:
                return None
    reset_ms = response.headers.get("x-rate-limit-time-reset-ms")
    return float(reset_ms) / 1000 if reset_ms else None


def _wait(state: RetryCallState) -> float:
    """Honour Retry-After when the server gives one; otherwise exponential backoff with full jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return exc.retry_after + random.uniform(0, 0.25)
    return random.uniform(0, min(30.0, 0.5 * 2 ** (state.attempt_number - 1)))


def _user_agent() -> str:
    """`fulfil/<version>`: who is calling, as Shopify and BigCommerce ask an app to say."""
    try:
        return f"fulfil/{version('fulfil')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "fulfil/dev"


USER_AGENT = _user_agent()


class ApiClient:
    """httpx client with a shared rate budget, retries of transient failures and classified errors.

    Subclasses set `system` and may override `auth_headers`, `reauthenticate` and `check_body`.
    """

    system = "system"

    def __init__(self, base_url: str, timeout_s: float = 30.0, max_attempts: int = 6) -> None:
        self.base_url = base_url
        self.http = httpx.Client(timeout=timeout_s, headers={"User-Agent": USER_AGENT})
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.stats = CallStats()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def budget_for(self, call: str) -> RateBudget | None:
        """The budget a call draws on (None: unlimited)."""
        return None

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a call."""
        return {}

    def reauthenticate(self) -> bool:
        """Refresh an expired session; return False when the client has no session to refresh."""
        return False

    def check_body(self, call: str, response: httpx.Response) -> None:
        """Raise for errors a system reports inside a 2xx answer."""

    def request(
        self, method: str, url: str, call: str, *, effect: bool = False, for_send: bool = False, **kwargs: Any
    ) -> Any:
        """Send one logical call and return its parsed JSON (None for an empty body), retrying transient
        failures (a truncated body included); raise a classified error otherwise. A call that changes something
        (`effect=True`) is retried only when it certainly was not applied; otherwise the error goes to the
        effect module, which asks the system before sending again. A read a send needs first (`for_send`: the
        order's fulfillment orders before a Shopify fulfilment, a look-up before sending again) draws on the
        budget as the send does, so a backlog of reads never holds a tracking post back."""
        return self.exchange(method, url, call, effect=effect, for_send=for_send, **kwargs)[0]

    def exchange(
        self, method: str, url: str, call: str, *, effect: bool = False, for_send: bool = False, **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        """`request`, also returning the final response (for paging headers such as `Link`)."""

        def retry(exc: BaseException) -> bool:
            return isinstance(exc, TransientError) and not (effect and exc.maybe_applied)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait,
            reraise=True,
            retry=retry_if_exception(retry),
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.retries += 1
                response = self._once(method, url, call, send=effect or for_send, **kwargs)
                return self.parse(call, response), response
        raise AssertionError("unreachable")  # pragma: no cover

    def parse(self, call: str, response: httpx.Response) -> Any:
        """The answer's body as data: JSON here (None when empty); a body that does not parse is transient."""
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientError(self.system, call, "answer was not valid JSON (truncated?)") from None

    def _once(
        self, method: str, url: str, call: str, reauthed: bool = False, send: bool = False, **kwargs: Any
    ) -> httpx.Response:
        budget = self.budget_for(call)
        if budget is not None:
            self.stats.budget_wait_s += budget.acquire(send=send)
        self.stats.calls[call] += 1
        headers = {**kwargs.pop("headers", {}), **self.auth_headers()}
        try:
            response = self.http.request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            reason = f"could not connect ({type(exc).__name__})"
            raise TransientError(self.system, call, reason, maybe_applied=False) from None
        except httpx.TimeoutException as exc:
            raise TransientError(self.system, call, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(self.system, call, f"connection failed ({type(exc).__name__})") from None
        self.stats.statuses[response.status_code] += 1
        status = response.status_code
        if status == 401 and not reauthed and self.reauthenticate():
            return self._once(method, url, call, reauthed=True, send=send, headers=headers, **kwargs)
        if status in (401, 403):
            raise AuthError(self.system, call, f"credentials rejected by {self.system} (HTTP {status})", status)
        if status in TRANSIENT_STATUS:
            retry_after = _retry_after(response)
            if status == 429:
                self.stats.throttled += 1
                if budget is not None and retry_after:
                    budget.pause(retry_after)
            raise TransientError(
                self.system,
                call,
                f"HTTP {status}: {_snippet(response)}",
                status,
                retry_after,
                maybe_applied=status != 429,
            )
        if status >= 400:
            raise DataError(self.system, call, f"HTTP {status}: {_snippet(response)}", status)
        try:
            self.check_body(call, response)
        except ValueError as exc:
            raise TransientError(self.system, call, f"malformed answer: {exc}") from None
        return response


def _snippet(response: httpx.Response, n: int = 300) -> str:
    """The start of an error body (systems put their message there; it never holds our secrets)."""
    return response.text[:n].replace("\n", " ")
