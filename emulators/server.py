"""Start all six emulators on loopback in one background event loop (the CLI and the pytest fixture use it)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.bigcommerce import BigCommerce
from emulators.cin7 import Cin7
from emulators.linnworks import Linnworks
from emulators.peoplevox import Peoplevox
from emulators.shopify import Shopify
from emulators.whistl import Whistl
from emulators.world import World

HOST = "127.0.0.1"
DEFAULT_PORTS = {
    "linnworks": 8701,
    "cin7": 8702,
    "shopify": 8703,
    "bigcommerce": 8704,
    "peoplevox": 8705,
    "whistl": 8706,
    "whistl_sftp": 8722,
}
SHOPIFY_API_VERSION = "2026-10"


@dataclass
class EmulatorConfig:
    """How to start the emulators. Port 0 picks a free port (tests); `rate_scale` > 1 shortens limit windows."""

    data_dir: Path
    seed: int = 7
    n_skus: int = 2000
    n_orders: int = 300
    rate_scale: float = 1.0
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    sftp_user: str = "brand"
    sftp_password: str = "whistl-sftp-password"
    tick_s: float = 0.0  # >0: orders keep arriving and the warehouse keeps working (demo mode)
    orders_per_tick: int = 3


def sftp_host_key(seed: int) -> asyncssh.SSHKey:
    """The emulated Whistl server's ed25519 host key, fixed by the world's seed so that a `fulfil.yaml` can pin
    its fingerprint (`systems.whistl.host_key`) as it would a real server's. Anyone can derive it: an emulator's
    key, never a real one."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"whistl-sftp-host-key:{seed}".encode()).digest())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return asyncssh.import_private_key(pem)


def sftp_host_key_fingerprint(seed: int) -> str:
    """The emulated server's host key fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it)."""
    return sftp_host_key(seed).get_fingerprint("sha256")


class _SFTPAuth(asyncssh.SSHServer):
    """The SFTP server's login: one user and password; every password tried is recorded (by user) for tests."""

    def __init__(self, user: str, password: str, logins: list[str]) -> None:
        self.user, self.password, self.logins = user, password, logins

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self.logins.append(username)
        return (username, password) == (self.user, self.password)


class PortBusy(RuntimeError):
    """A port an emulator is configured to listen on is taken by another program."""


def _bind(port: int, name: str = "") -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
    # without it every response (headers and body written apart) waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise PortBusy(f"port {port} on {HOST} (the {name or 'an'} emulator) is in use by another program") from exc
    sock.listen(256)
    sock.setblocking(False)
    return sock


class Emulators:
    """The six systems over one seeded world; attributes are the live Python handles for tests."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.started_at = time.time()  # wall clock the seeded orders were placed at (the timeline's start)
        self.world_paused = False  # demo mode: True stops new orders, changes and the warehouses' floor work (a drain)
        self.sftp_logins: list[str] = []  # every password login tried at the SFTP server (the user named)
        self.world = World(config.seed, config.n_skus)
        self.world_rng = random.Random(f"{config.seed}:late-changes")
        scale = config.rate_scale
        self.linnworks = Linnworks(self.world, config.n_orders, rate_scale=scale)
        self.cin7 = Cin7(self.world, config.n_orders, rate_scale=scale)
        self.shopify = Shopify(self.world, config.n_orders, rate_scale=scale)
        self.bigcommerce = BigCommerce(self.world, config.n_orders, rate_scale=scale)
        self.peoplevox = Peoplevox(self.world, rate_scale=scale)
        self.whistl = Whistl(self.world, Path(config.data_dir) / "whistl")
        for system in self.order_systems():
            system.placed(list(system.placed_at), at=self.started_at)
        self.ports: dict[str, int] = {}
        self._servers: list[uvicorn.Server] = []
        self._sftp: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def order_systems(self) -> tuple[Linnworks, Cin7, Shopify, BigCommerce]:
        """The four systems orders are placed in."""
        return (self.linnworks, self.cin7, self.shopify, self.bigcommerce)

    # -- addresses ------------------------------------------------------------------------------
    def url(self, system: str) -> str:
        """The base URL a client of `system` is configured with."""
        root = f"http://{HOST}:{self.ports[system]}"
        return {
            "linnworks": root,
            "cin7": f"{root}/ExternalApi/v2/",
            "shopify": f"{root}/admin/api/{SHOPIFY_API_VERSION}/",
            "bigcommerce": f"{root}/stores/{self.bigcommerce.store_hash}/",
            "peoplevox": f"{root}/{self.peoplevox.credentials[0]}/resources/integrationservicev4.asmx",
            "whistl": root,
        }[system]

    def describe(self) -> dict[str, Any]:
        """Where each system listens and how to log in (emulator credentials, not secrets)."""
        return {
            "linnworks": {
                "url": self.url("linnworks"),
                "application_id": self.linnworks.credentials[0],
                "application_secret": self.linnworks.credentials[1],
                "token": self.linnworks.credentials[2],
            },
            "cin7": {
                "url": self.url("cin7"),
                "account_id": self.cin7.credentials[0],
                "application_key": self.cin7.credentials[1],
            },
            "shopify": {"url": self.url("shopify"), "access_token": self.shopify.access_token},
            "bigcommerce": {"url": self.url("bigcommerce"), "access_token": self.bigcommerce.access_token},
            "peoplevox": {
                "url": self.url("peoplevox"),
                "client_id": self.peoplevox.credentials[0],
                "username": self.peoplevox.credentials[1],
                "password": self.peoplevox.credentials[2],
            },
            "whistl": {
                "control_url": self.url("whistl"),
                "folder": str(self.whistl.root),
                "sftp": f"sftp://{self.config.sftp_user}@{HOST}:{self.ports['whistl_sftp']}/",
                "sftp_password": self.config.sftp_password,
                "sftp_host_key": self.sftp_host_key,
            },
        }

    @property
    def sftp_host_key(self) -> str:
        """The SFTP server's host key fingerprint, to pin in `fulfil.yaml` (`systems.whistl.host_key`)."""
        return sftp_host_key_fingerprint(self.config.seed)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> Emulators:
        """Start every server in a background thread and wait until all listen."""
        self._thread = threading.Thread(target=self._run, name="emulators", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("emulators did not start in time")
        if isinstance(self._error, PortBusy):
            raise self._error
        if isinstance(self._error, OSError) and self._error.errno == 98:  # the SFTP port
            raise PortBusy(
                f"port {self.config.ports.get('whistl_sftp')} on {HOST} (the Whistl SFTP emulator) is in use"
            )
        if self._error:
            raise RuntimeError(f"emulators failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop every server and the background loop."""
        for server in self._servers:
            server.should_exit = True
        if self._loop and self._sftp is not None:
            self._loop.call_soon_threadsafe(self._sftp.close)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> Emulators:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start()
            self._error = exc
            self._ready.set()
        finally:  # what is still running (servers that never started, SFTP sessions) ends here, not at exit
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        apps = {
            "linnworks": self.linnworks.app(),
            "cin7": self.cin7.app(),
            "shopify": self.shopify.app(),
            "bigcommerce": self.bigcommerce.app(),
            "peoplevox": self.peoplevox.app(),
            "whistl": self._whistl_app(),
        }
        tasks = []
        for name, app in apps.items():
            sock = _bind(self.config.ports.get(name, 0), name)
            self.ports[name] = sock.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
            self._servers.append(server)
            tasks.append(asyncio.ensure_future(server.serve(sockets=[sock])))
        self.linnworks.base_url = self.url("linnworks")
        self.shopify.base_url = f"http://{HOST}:{self.ports['shopify']}"
        key = sftp_host_key(self.config.seed)
        root = str(self.whistl.root)
        self._sftp = await asyncssh.create_server(
            lambda: _SFTPAuth(self.config.sftp_user, self.config.sftp_password, self.sftp_logins),
            HOST,
            self.config.ports.get("whistl_sftp", 0),
            server_host_keys=[key],
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
        )
        self.ports["whistl_sftp"] = self._sftp.get_port()
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
            await asyncio.sleep(0.01)
        if self.config.tick_s > 0:
            tasks.append(asyncio.ensure_future(self._tick()))
        self._ready.set()
        await asyncio.gather(*tasks[: len(apps)])
        for t in tasks[len(apps) :]:
            t.cancel()
        self._sftp.close()
        await self._sftp.wait_closed()

    async def _tick(self) -> None:
        """Demo mode: new orders arrive in every OMS, the warehouse works a stage, stock files appear."""
        n = 0
        while True:
            await asyncio.sleep(self.config.tick_s)
            if self.world_paused:  # no new orders, no changes, no floor work; files are still taken in
                self.whistl.intake()
                continue
            n += 1
            now = datetime.now(UTC)
            k = self.config.orders_per_tick
            for system in (self.linnworks, self.cin7, self.shopify, self.bigcommerce):
                # Linnworks imports channel orders under the time they were placed, up to a tick ago; the others
                # stamp an order (its `Updated`, `updated_at`, `date_modified`) as they save it.
                since = self.config.tick_s if system is self.linnworks else 1.0
                with system.lock:
                    system.spawn(k, now - timedelta(seconds=since), now)
            self._late_changes(now)
            self.whistl.step(now)
            self.peoplevox.step(now)
            if n % 6 == 0:
                self.whistl.snapshot(now)

    def timeline(self) -> dict[str, Any]:
        """The emulated world's own record of each order's way, wall-clock epoch seconds throughout, JSON-ready:

        - `orders`: one `{oms, order_id, order_ref, placed_at, source_ref}` per order each order system holds;
          `order_id` is the system's own id (str), `order_ref` the reference a warehouse sees for it (Linnworks
          `LW<NumOrderId>`, Cin7 `SO-<n>`, Shopify `SH<order_number>`, BigCommerce `BC<id>`), `placed_at` when the
          emulator created it (the seeded ones: `started_at`), `source_ref` the reference a Linnworks order was
          created under by `CreateOrders` (e.g. a Shopify `SH...`; None otherwise); and the world's own truth about
          it (`World.order_truth`): its `target`, `paid`, `cancelled`, the reason codes planted in it (`faults`)
          and whether it must reach its target (`ready`);
        - `wms_received`: `{whistl: {ref: epoch}, peoplevox: {ref: epoch}}`, when each warehouse first held the
          reference (Whistl: mtime of the order file it was accepted from; Peoplevox: its first SaveData);
        - `despatches`: `{wms, order_ref, despatch_ref, at}` per despatch (Whistl: when the shp_ file was written);
        - `tracking_held`: `{oms: {order_id: epoch}}`, the first time each order system accepted tracking on it.
        """
        orders: list[dict[str, Any]] = []
        tracking: dict[str, dict[str, float]] = {}
        for system in self.order_systems():
            part = system.timeline()  # copied under the system's lock
            orders += [{"source_ref": None, **o} for o in part["orders"]]
            tracking[system.name] = part["tracking_held"]
        whistl, peoplevox = self.whistl.wms_timeline(), self.peoplevox.wms_timeline()
        return {
            "started_at": self.started_at,
            "orders": orders,
            "wms_received": {"whistl": whistl["received"], "peoplevox": peoplevox["received"]},
            "despatches": whistl["despatches"] + peoplevox["despatches"],
            "tracking_held": tracking,
        }

    def _late_changes(self, now: datetime) -> None:
        """What customers and the warehouse floor do between shifts: a late cancellation, a late address
        edit, a cycle-count or damage adjustment."""
        rng = self.world_rng
        for system, cancel in ((self.linnworks, "cancel"), (self.cin7, "void")):
            with system.lock:
                ids = list(system.orders if system is self.linnworks else system.sales)
                if not ids:
                    continue
                key = "order_id" if system is self.linnworks else "sale_id"
                if rng.random() < 0.3:
                    system.control(cancel, {key: rng.choice(ids[-50:])})
                if rng.random() < 0.3:
                    system.control("edit_address", {key: rng.choice(ids[-50:])})
        if rng.random() < 0.5 and self.whistl.catalogue:
            sku = rng.choice(self.world.wms_catalogue)
            self.whistl.adjust(sku, rng.choice((-2, -1, 1, 3)))

    def _whistl_app(self) -> Starlette:
        """Control and inspection for the file-based Whistl warehouse."""

        async def state(request: Request) -> Response:
            return JSONResponse(json.loads(json.dumps(self.whistl.inspect(), default=str)))

        async def action(request: Request) -> Response:
            name = request.path_params["action"]
            body = await request.json() if await request.body() else {}
            if name == "step":
                return JSONResponse(json.loads(json.dumps(self.whistl.step(), default=str)))
            if name == "snapshot":
                return JSONResponse({"file": self.whistl.snapshot()})
            if name == "adjust":
                self.whistl.adjust(body["sku"], int(body["delta"]))
                return JSONResponse({"on_hand": self.whistl.on_hand.get(body["sku"])})
            return JSONResponse({"error": f"unknown action {name}"}, 400)

        async def timeline(request: Request) -> Response:
            """The whole world's record (`timeline`), for a watcher in another process (`bench/live.py --attach`):
            served here, on the one control app that stands for no vendor's API."""
            return JSONResponse(json.loads(json.dumps(self.timeline(), default=str)))

        return Starlette(
            routes=[
                Route("/_emulator/state", state),
                Route("/_emulator/timeline", timeline),
                Route("/_emulator/action/{action}", action, methods=["POST"]),
            ]
        )
