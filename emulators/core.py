"""What every HTTP emulator shares: rate limiters, switchable faults, the call recorder, the control routes."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_emulator"


class SlidingWindow:
    """At most `limit` calls per key in any `window_s` seconds (Linnworks, Cin7, BigCommerce style)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> tuple[bool, float, int]:
        """Record one call; return (allowed, seconds until a slot frees, calls left in the window)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = self._calls[key]
            while calls and calls[0] <= now - self.window_s:
                calls.popleft()
            if len(calls) >= self.limit:
                return False, max(calls[0] + self.window_s - now, 0.001), 0
            calls.append(now)
            return True, 0.0, self.limit - len(calls)

    def remaining(self, key: str, now: float | None = None) -> int:
        """Calls left in the current window, without taking one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return self.limit - sum(1 for t in self._calls.get(key, ()) if t > now - self.window_s)

    def reset_in(self, key: str, now: float | None = None) -> float:
        """Seconds until the oldest call in the window expires."""
        now = time.monotonic() if now is None else now
        calls = self._calls.get(key)
        return max(calls[0] + self.window_s - now, 0.0) if calls else 0.0


class LeakyBucket:
    """Shopify's bucket: `capacity` deep, leaking `rate` per second; a call costs `cost`."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.level = 0.0
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, cost: float = 1.0) -> tuple[bool, float]:
        """Try to add `cost`; return (allowed, level after)."""
        with self._lock:
            now = time.monotonic()
            self.level = max(0.0, self.level - (now - self._at) * self.rate)
            self._at = now
            if self.level + cost > self.capacity:
                return False, self.level
            self.level += cost
            return True, self.level


@dataclass
class Faults:
    """Faults a test or the demo switches on at runtime; `*_rate` is a share of calls, `*_next` a count."""

    latency_ms: float = 0.0
    reply_delay_ms: float = 0.0  # the call is carried out at once, its answer comes this much later (a slow way back)
    error_rate: float = 0.0
    error_next: int = 0
    error_status: int = 500
    throttle_rate: float = 0.0
    throttle_next: int = 0
    timeout_rate: float = 0.0
    timeout_next: int = 0
    timeout_s: float = 30.0
    reset_rate: float = 0.0
    reset_next: int = 0
    malformed_rate: float = 0.0
    malformed_next: int = 0
    expire_tokens: bool = False
    only_path: str = ""  # when set, faults strike only requests whose path ends with it (e.g. "Orders/CreateOrders")
    pass_next: int = 0  # this many (matching) calls pass the faults above unharmed first: "the 10th call times out"
    # system specific switches
    throttle_503: bool = False  # Cin7's old "60 calls per minute" 503 instead of 429
    error_in_200_next: int = 0  # Cin7: an ErrorCode body with HTTP 200
    graphql_throttle_status: int = 200  # Shopify: HTTP status of a THROTTLED GraphQL answer
    bare_429_next: int = 0  # BigCommerce: 429 without rate-limit headers (platform overload)

    def update(self, values: dict[str, Any]) -> None:
        """Apply a partial update, rejecting unknown names."""
        names = {f.name for f in fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault(s): {sorted(unknown)}; known: {sorted(names)}")
        for key, value in values.items():
            setattr(self, key, type(getattr(self, key))(value))

    def draw(self, kind: str, rng: random.Random) -> bool:
        """Whether this call suffers fault `kind` (consumes one of `<kind>_next` first)."""
        nxt = f"{kind}_next"
        if getattr(self, nxt, 0) > 0:
            setattr(self, nxt, getattr(self, nxt) - 1)
            return True
        rate = getattr(self, f"{kind}_rate", 0.0)
        return rate > 0 and rng.random() < rate


_NO_FAULTS = Faults()


@dataclass
class Call:
    """One request an emulator answered, for inspection by tests."""

    method: str
    path: str
    query: str
    body: Any
    status: int
    at: float
    agent: str = ""  # the client's User-Agent (fulfil's own clients send `fulfil/<version>`)


@dataclass
class Recorder:
    """Every call per system (bounded) and counters by status, for tests and benchmarks."""

    max_calls: int = 200_000
    calls: deque[Call] = field(default_factory=deque)
    status_counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    history: deque[Call] = field(default_factory=deque)  # every call, which `clear()` leaves: checks at the end

    def add(self, call: Call) -> None:
        """Keep `call`, dropping the oldest past `max_calls`."""
        for kept in (self.calls, self.history):
            kept.append(call)
            if len(kept) > self.max_calls:
                kept.popleft()
        self.status_counts[call.status] += 1

    def clear(self) -> None:
        """Forget what was recorded (a test counting from here); `history` keeps it."""
        self.calls.clear()
        self.status_counts.clear()


class EmulatedSystem:
    """Base of each HTTP emulator: state, faults, limiter scale, recorder and the shared ASGI wrapper.

    Subclasses define `routes()`, `throttled()` (the system's own over-limit answer), `error_body()`,
    `authorised()` and `check_rate()`.
    """

    name = "system"

    def __init__(self, rate_scale: float = 1.0, seed: int = 7) -> None:
        self.rate_scale = rate_scale  # >1 makes every limit window shorter (fast tests); 0 switches limits off
        self.faults = Faults()
        self.recorder = Recorder()
        self.rng = random.Random(f"{seed}:faults:{self.name}")
        self.lock = threading.RLock()
        # The emulated world's own record, for latency measured outside fulfil (`Emulators.timeline`).
        self.placed_at: dict[str, float] = {}  # order id -> wall-clock epoch the emulator created the order
        self.tracking_at: dict[str, float] = {}  # order id -> first wall-clock epoch tracking was accepted on it
        self.held_calls = 0  # calls inside the system (held by latency or a timeout, or being carried out)
        self._release = 0  # bumped by `apply_pending`: every held call goes on at once

    # -- to override -------------------------------------------------------------------------
    def routes(self) -> list[Route]:  # pragma: no cover - abstract
        """The system's own endpoints."""
        raise NotImplementedError

    def throttled(self, request: Request, retry_after: float) -> Response:
        """The system's answer when over its rate limit."""
        return JSONResponse({"errors": "Too many requests"}, 429, {"Retry-After": f"{retry_after:.1f}"})

    def error_body(self, status: int, message: str) -> Response:
        """The system's error shape."""
        return JSONResponse({"error": message}, status)

    def check_rate(self, request: Request) -> Response | None:
        """Apply the system's real limit; return the over-limit answer or None."""
        return None

    def add_headers(self, request: Request, response: Response) -> None:
        """Add rate-limit headers to a normal answer."""

    def inspect(self) -> dict[str, Any]:
        """Domain state a test asserts on."""
        return {}

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """System-specific control actions (spawn orders, advance the warehouse, ...)."""
        raise ValueError(f"unknown action {action!r} for {self.name}")

    def expire_sessions(self) -> None:
        """Invalidate every issued token or session."""

    def timeline_orders(self) -> list[dict[str, Any]]:
        """One `{oms, order_id, order_ref, placed_at}` per order held (order systems override; lock held)."""
        return []

    def apply_pending(self, timeout_s: float = 30.0) -> None:
        """Carry out now every call the system is holding (injected latency, or a timeout that lands after the
        client gave up) and return once each is applied: a test waits on the system, not on a sleep sized to it."""
        self._release += 1
        deadline = time.monotonic() + timeout_s
        while self.held_calls:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {self.held_calls} call(s) still held after {timeout_s} s")
            time.sleep(0.005)

    async def hold(self, seconds: float) -> None:
        """Wait `seconds` inside a call, or less if `apply_pending` releases it."""
        release, deadline = self._release, time.monotonic() + seconds
        while self._release == release and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.02))

    # -- timeline --------------------------------------------------------------------------------
    def placed(self, order_ids: list[str], at: float | None = None) -> None:
        """Note when the emulator created these orders (now unless `at` is given)."""
        when = time.time() if at is None else at
        for order_id in order_ids:
            self.placed_at[str(order_id)] = when

    def tracking_held(self, order_id: str) -> None:
        """Note the moment tracking was accepted on `order_id`; only the first is kept."""
        self.tracking_at.setdefault(str(order_id), time.time())

    def timeline(self) -> dict[str, Any]:
        """A copy, under the lock, of the orders held (`orders`) and when tracking reached each (`tracking_held`)."""
        with self.lock:
            return {"orders": self.timeline_orders(), "tracking_held": dict(self.tracking_at)}

    # -- shared machinery --------------------------------------------------------------------
    def window(self, limit: int, seconds: float) -> SlidingWindow:
        """A sliding window scaled by `rate_scale` (limits off when 0)."""
        return SlidingWindow(limit if self.rate_scale else 10**9, seconds / (self.rate_scale or 1.0))

    def app(self) -> ASGIApp:
        """The ASGI app: control routes, then faults, limits and recording around the system's routes."""
        from starlette.applications import Starlette

        control = [
            Route(f"{CONTROL_PREFIX}/faults", self._faults_route, methods=["GET", "POST", "DELETE"]),
            Route(f"{CONTROL_PREFIX}/calls", self._calls_route, methods=["GET", "DELETE"]),
            Route(f"{CONTROL_PREFIX}/state", self._state_route, methods=["GET"]),
            Route(f"{CONTROL_PREFIX}/action/{{action}}", self._action_route, methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/apply_pending", self._apply_pending_route, methods=["POST"]),
        ]
        inner = Starlette(routes=control + self.routes())
        return _Guard(self, inner)

    async def _faults_route(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.update(await request.json())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        elif request.method == "DELETE":
            self.faults = Faults()
        return JSONResponse(asdict(self.faults))

    async def _calls_route(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.recorder.clear()
            return JSONResponse({"cleared": True})
        path = request.query_params.get("path")
        calls = [asdict(c) for c in self.recorder.calls if path is None or c.path.endswith(path)]
        return JSONResponse({"calls": calls, "status_counts": dict(self.recorder.status_counts)})

    async def _apply_pending_route(self, request: Request) -> Response:
        """`apply_pending` over HTTP (answers once no call is held; the held calls share this event loop)."""
        self._release += 1
        while self.held_calls:
            await asyncio.sleep(0.005)
        return JSONResponse({"held_calls": 0})

    async def _state_route(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(json.loads(json.dumps(self.inspect(), default=str)))

    async def _action_route(self, request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        try:
            with self.lock:
                result = self.control(request.path_params["action"], body)
        except (ValueError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(json.loads(json.dumps(result, default=str)))


class _Guard:
    """ASGI wrapper: injects faults, enforces the limit and records each call of the system's own routes."""

    def __init__(self, system: EmulatedSystem, inner: ASGIApp) -> None:
        self.system, self.inner = system, inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.inner(scope, receive, send)
            return
        system, faults = self.system, self.system.faults
        if faults.only_path and not scope["path"].endswith(faults.only_path):
            faults = _NO_FAULTS
        elif faults.pass_next > 0:
            faults.pass_next -= 1
            faults = Faults(latency_ms=faults.latency_ms, reply_delay_ms=faults.reply_delay_ms)
        body_bytes = b""
        more = True
        while more:
            message = await receive()
            body_bytes += message.get("body", b"")
            more = message.get("more_body", False)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body_bytes, "more_body": False}

        system.held_calls += 1
        try:
            await self._serve(scope, send, faults, body_bytes, replay)
        finally:
            system.held_calls -= 1

    async def _serve(
        self, scope: Scope, send: Send, faults: Faults, body_bytes: bytes, replay: Callable[[], Awaitable[Message]]
    ) -> None:
        system = self.system
        request = Request(scope, replay)
        recorded = [False]

        async def recording_send(message: dict[str, Any]) -> None:
            # Kept before the first byte leaves: a client that has its answer finds its call already recorded.
            if message["type"] == "http.response.start" and not recorded[0]:
                recorded[0] = True
                self._record(scope, body_bytes, message["status"])
            await send(message)

        if faults.expire_tokens:
            faults.expire_tokens = False
            system.expire_sessions()
        if faults.latency_ms:
            await system.hold(faults.latency_ms / 1000)
        response: Response | None = None
        if faults.draw("timeout", system.rng):
            await system.hold(faults.timeout_s)
        if faults.draw("reset", system.rng):
            # Promise more bytes than are sent: the server drops the connection mid-response.
            self._record(scope, body_bytes, 0)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"partial":', "more_body": False})
            return
        if faults.draw("throttle", system.rng):
            response = system.throttled(request, 2.0)
        elif faults.draw("error", system.rng):
            response = system.error_body(faults.error_status, "Internal Server Error (injected fault)")
        else:
            response = system.check_rate(request)
        if response is not None:
            await response(scope, replay, recording_send)
            return
        if faults.draw("malformed", system.rng):
            await Response(b'{"Data": [{"truncated', 200, media_type="application/json")(scope, replay, recording_send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if faults.reply_delay_ms:
                    await system.hold(faults.reply_delay_ms / 1000)
                extra = Response()
                extra.raw_headers = []
                system.add_headers(request, extra)
                message = {**message, "headers": list(message.get("headers", [])) + extra.raw_headers}
            await recording_send(message)

        try:
            await self.inner(scope, replay, with_headers)
        finally:
            if not recorded[0]:  # the call ended without an answer (the app raised, or the server dropped it)
                self._record(scope, body_bytes, 0)

    def _record(self, scope: Scope, body: bytes, status: int) -> None:
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")[:20_000]
        agent = dict(scope.get("headers") or []).get(b"user-agent", b"").decode("latin-1")
        query = scope.get("query_string", b"").decode()
        self.system.recorder.add(Call(scope["method"], scope["path"], query, parsed, status, time.time(), agent))


Handler = Callable[[Request], Awaitable[Response]]


def paginate(items: list[Any], page: int, per_page: int) -> list[Any]:
    """The 1-based page `page` of `items`."""
    start = (max(page, 1) - 1) * per_page
    return items[start : start + per_page]
