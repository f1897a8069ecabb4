"""Shared fixtures: the emulators on loopback, a warehouse on DuckDB and on PostgreSQL, Dagster definitions."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from emulators.documented import product_requests_undocumented
from emulators.server import EmulatorConfig, Emulators

PG_ADMIN_URL = os.environ.get("FULFIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("FULFIL_REQUIRE_POSTGRES") == "1"


@pytest.fixture
def emulators(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Emulators]:
    """All six systems on free loopback ports over a small seeded world (`@pytest.mark.world(n_orders=...)`
    makes it smaller, for tests whose every call waits on an order system's real rate limit)."""
    marker = request.node.get_closest_marker("world")
    config = EmulatorConfig(
        data_dir=tmp_path / "emulators",
        n_skus=(marker.kwargs.get("n_skus", 300) if marker else 300),
        n_orders=(marker.kwargs.get("n_orders", 40) if marker else 40),
        ports={
            name: 0 for name in ("linnworks", "cin7", "shopify", "bigcommerce", "peoplevox", "whistl", "whistl_sftp")
        },
    )
    with Emulators(config) as emu:
        yield emu
        # Whatever the test did, fulfil's own clients asked the systems only what their vendors document.
        assert product_requests_undocumented(emu) == []


def _postgres_url() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"fulfil_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (FULFIL_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}; set FULFIL_REQUIRE_POSTGRES=1 to make this fail")
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from resources import warehouse

        db = warehouse._DBS.pop(url, None)
        if db is not None:
            db.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty warehouse: an embedded DuckDB file, or a new PostgreSQL database."""
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
        yield url
        from resources import warehouse

        warehouse._DBS.pop(url, None)
    else:
        yield from _postgres_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for what only a multi-writer warehouse can show (concurrent runs)."""
    yield from _postgres_url()


@pytest.fixture
def fulfil_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emulators: Emulators, warehouse_url: str) -> dict:
    """Environment as a deployment has it: secrets in env vars, the warehouse URL, the data folder."""
    return deployment_env(monkeypatch, tmp_path, emulators, warehouse_url)


def deployment_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emulators: Emulators, warehouse_url: str) -> dict:
    """Set the environment a deployment has: secrets in env vars, the warehouse URL, the data folder."""
    lw = emulators.linnworks.credentials
    env = {
        "LINNWORKS_APPLICATION_ID": lw[0],
        "LINNWORKS_APPLICATION_SECRET": lw[1],
        "LINNWORKS_TOKEN": lw[2],
        "WHISTL_SFTP_PASSWORD": emulators.config.sftp_password,
        "CIN7_ACCOUNT_ID": emulators.cin7.credentials[0],
        "CIN7_APPLICATION_KEY": emulators.cin7.credentials[1],
        "SHOPIFY_ACCESS_TOKEN": emulators.shopify.access_token,
        "BIGCOMMERCE_ACCESS_TOKEN": emulators.bigcommerce.access_token,
        "PEOPLEVOX_CLIENT_ID": emulators.peoplevox.credentials[0],
        "PEOPLEVOX_USERNAME": emulators.peoplevox.credentials[1],
        "PEOPLEVOX_PASSWORD": emulators.peoplevox.credentials[2],
        "FULFIL_WAREHOUSE_URL": warehouse_url,
        "FULFIL_DATA_DIR": str(tmp_path / "data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(autouse=True)
def environment_restored() -> Iterator[None]:
    """The process environment as it was before the test, whatever the code under test set in it (`fulfil demo`
    sets DAGSTER_HOME for its own runs): one test's instance or warehouse never becomes a later test's."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):  # key by key: the emulators' threads read it meanwhile
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def own_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's own data folder (rate budget files, dlt state), also for tests that use only the emulators:
    nothing carries over between tests or lands in the repository's `data/`."""
    monkeypatch.setenv("FULFIL_DATA_DIR", str(tmp_path / "data"))


class EffectClock:
    """The effect module's clock, moved on by a test instead of sleeping through a settle window: an attempt with
    no known outcome is looked up once it is `settle_s` old by this clock (runs in this process only)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from fulfil_assets import effects

        self.offset = timedelta(0)
        monkeypatch.setattr(effects, "now_utc", self.now)

    def now(self) -> datetime:
        """Real UTC time plus every advance so far."""
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the effect module's time on by `seconds`."""
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def effect_clock(monkeypatch: pytest.MonkeyPatch) -> EffectClock:
    """The effect module's clock, for this test to move on."""
    return EffectClock(monkeypatch)


@pytest.fixture
def demo_ports() -> Iterator[None]:
    """`fulfil demo`'s fixed emulator ports for this test alone: two such tests on two xdist workers at once would
    each find the other's emulators on them."""
    with open(Path(tempfile.gettempdir()) / "fulfil-tests-demo-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `long` first (in their own order), so that xdist's workers start on them and the suite
    does not end with one worker running a four-minute test alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


if os.environ.get("FULFIL_TEST_CPU"):
    import json
    import resource

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        """With `FULFIL_TEST_CPU=FILE`, one JSON line per test: its wall seconds and the CPU seconds its worker and
        the processes it waited for spent (a killed process's own children are not counted): where the suite's
        time goes on a 2-core machine, beside `--durations`."""

        def cpu() -> tuple[float, float]:
            own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime

        start, (own0, children0) = time.monotonic(), cpu()
        yield
        wall, (own1, children1) = time.monotonic() - start, cpu()
        with open(os.environ["FULFIL_TEST_CPU"], "a") as out:
            row = {"id": item.nodeid, "wall": wall, "self": own1 - own0, "children": children1 - children0}
            out.write(json.dumps(row) + "\n")
