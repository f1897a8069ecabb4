"""The warehouse database: an embedded DuckDB file by default, PostgreSQL for teams, through one code path."""

from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import sqlalchemy as sa
import tenacity
from pydantic import Field
from sqlalchemy.pool import NullPool

DEFAULT_URL = "duckdb:///data/warehouse.duckdb"
SCHEMA = "fulfil"
LOCK_WAIT_S = 300.0  # how long a step waits for another process to let go of the DuckDB file
_DBS: dict[str, WarehouseDb] = {}


class WarehouseLocked(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than a step waits."""


class WriterLock:
    """The DuckDB file's writer lock across fulfil's processes: an exclusive `flock` on `<file>.writer-lock`, taken
    before a process opens the file and let go when it closes it, so that processes wait their turn in the kernel
    instead of racing DuckDB's own lock (a dlt load lost that race to steps opening the file every few
    milliseconds). Within a process it is shared and counted: DuckDB serialises a process's own connections."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.Lock()
        self._count = 0
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (process id and command)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self, timeout_s: float) -> bool:
        """Take the lock (at once if this process holds it already); False if another process kept it past
        `timeout_s`."""
        with self._mutex:
            if self._count:
                self._count += 1
                return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            with self._mutex:
                if self._count:  # another thread of this process took it meanwhile
                    self._count += 1
                    os.close(fd)
                    return True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    self._fd, self._count = fd, 1
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"PID {os.getpid()} ({' '.join(sys.argv[:3])})".encode(), 0)
                    return True
            if time.monotonic() > deadline:
                os.close(fd)
                return False
            time.sleep(0.01)

    def release(self) -> None:
        """Let go once; the last release in this process frees the file for the others."""
        with self._mutex:
            self._count -= 1
            if self._count == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None


_WRITER_LOCKS: dict[str, WriterLock] = {}


def _lock_conflict(exc: BaseException) -> bool:
    """Another process holds the file, or (threads of one process) it is being closed while opened again."""
    text = str(exc)
    return isinstance(exc, sa.exc.OperationalError) and (
        "Could not set lock" in text or "Unique file handle conflict" in text
    )


def lock_holder(exc: BaseException) -> str | None:
    """Who holds the DuckDB file, when `exc` (or what caused it: dlt wraps what its steps meet) is DuckDB
    refusing the file because another process has it; None for any other error."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        text = str(seen)
        if "Could not set lock" in text:
            holder = re.search(r"held in (.*?)\. See", text)
            return holder.group(1) if holder else "unknown"
        seen = getattr(seen, "exception", None) or seen.__cause__ or seen.__context__
    return None


def warehouse_url() -> str:
    """`FULFIL_WAREHOUSE_URL`, or the embedded DuckDB file."""
    return os.environ.get("FULFIL_WAREHOUSE_URL", DEFAULT_URL)


def redact_url(url: str) -> str:
    """The URL without its password, for logs and metadata."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable warehouse url>"


class WarehouseDb:
    """SQL access for the pipeline: DDL, polars reads, batched writes, upserts. Works on DuckDB and PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = sa.make_url(url)
        self.is_duckdb = parsed.get_backend_name() == "duckdb"
        if self.is_duckdb and parsed.database and Path(parsed.database).stem == SCHEMA:
            raise ValueError(f"a DuckDB file named {SCHEMA}.* clashes with schema {SCHEMA!r}; pick another name")
        # Read-only (`?access_mode=READ_ONLY`: `fulfil trace`, the analysts' copy): creates no folder, file or lock.
        self.read_only = str(parsed.query.get("access_mode", "")).upper() == "READ_ONLY"
        if self.is_duckdb and parsed.database and parsed.database != ":memory:" and not self.read_only:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # DuckDB allows one writing process: never hold a connection open between steps (see `session`).
        self.engine = (
            sa.create_engine(url, poolclass=NullPool) if self.is_duckdb else sa.create_engine(url, pool_pre_ping=True)
        )
        self._held = threading.local()
        self.lock_wait_s = float(os.environ.get("FULFIL_LOCK_WAIT_S", LOCK_WAIT_S))
        self.writer_lock: WriterLock | None = None
        if self.is_duckdb and parsed.database and parsed.database != ":memory:" and not self.read_only:
            path = Path(parsed.database).resolve()
            lock = WriterLock(path.with_name(f"{path.name}.writer-lock"))
            self.writer_lock = _WRITER_LOCKS.setdefault(str(path), lock)

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the DuckDB file's writer lock for a block that opens the file itself (dlt's state sync and load),
        waiting for other fulfil processes to let go first; PostgreSQL needs none."""
        if self.writer_lock is None:
            yield
            return
        if not self.writer_lock.acquire(self.lock_wait_s):
            raise self.locked(self.writer_lock.holder())
        try:
            yield
        finally:
            self.writer_lock.release()

    def _open(self) -> sa.Connection:
        """A new connection. DuckDB lets one process at a time hold the file: fulfil's processes take turns
        through the writer lock; while a process outside fulfil holds it (an analyst's session), wait and try
        again, then fail saying who holds it."""
        if not self.is_duckdb:
            return self.engine.connect()
        if self.writer_lock is not None and not self.writer_lock.acquire(self.lock_wait_s):
            raise self.locked(self.writer_lock.holder())
        try:
            return self._connect_waiting()
        except BaseException:
            if self.writer_lock is not None:
                self.writer_lock.release()
            raise

    def _close(self, conn: sa.Connection) -> None:
        """Close a connection `_open` made, letting go of the writer lock."""
        try:
            conn.close()
        finally:
            if self.is_duckdb and self.writer_lock is not None:
                self.writer_lock.release()

    def _connect_waiting(self) -> sa.Connection:
        """Connect, waiting out a DuckDB lock held by a process outside fulfil."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_lock_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(self.lock_wait_s),
            reraise=True,
        )
        try:
            return retrying(self.engine.connect)
        except sa.exc.OperationalError as exc:
            if not _lock_conflict(exc):
                raise
            raise self.locked(lock_holder(exc) or "unknown") from None

    def locked(self, holder: str) -> WarehouseLocked:
        """The error for a DuckDB file another process (`holder`) kept for longer than a step waits."""
        return WarehouseLocked(
            f"the warehouse file {sa.make_url(self.url).database} stayed locked for {self.lock_wait_s:.0f} s "
            f"by another process ({holder}): another run writing it, or a DuckDB session left open on it (an "
            "analyst's, say). Close that session or raise FULFIL_LOCK_WAIT_S."
        )

    @contextmanager
    def _fresh(self) -> Iterator[sa.Connection]:
        conn = self._open()
        try:
            yield conn
        finally:
            self._close(conn)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one connection for a block of work (an asset's body, a delivery): opening a DuckDB connection
        costs ~20 ms and a step makes hundreds of statements. Nested sessions share it; it closes when the outer
        block ends, so the file is free for other processes (and dlt) between steps."""
        if getattr(self._held, "conn", None) is not None:
            yield
            return
        self._held.conn = self._open()
        try:
            yield
        finally:
            held, self._held.conn = self._held.conn, None
            if held is not None:  # the one it opened, or the one taken after a `released` block
                self._close(held)

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let go of the session's connection for a block that waits on another system (an API call under
        its rate limit), so other processes can use the file meanwhile; the session takes a new one after."""
        conn: sa.Connection | None = getattr(self._held, "conn", None)
        if conn is None or conn.in_transaction() or not self.is_duckdb:
            yield
            return
        self._close(conn)
        self._held.conn = None
        try:
            yield
        finally:
            self._held.conn = self._open()

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction that commits at the end of the block (rolls back on an error): the
        session's connection when one is held (inside another `begin`, the same transaction), else a new one."""
        conn: sa.Connection | None = getattr(self._held, "conn", None)
        if conn is None:
            with self._fresh() as fresh, fresh.begin():
                yield fresh
        elif conn.in_transaction():
            yield conn
        else:
            with conn.begin():
                yield conn

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads: the session's when one is held (ending the read's implicit transaction,
        unless it runs inside a `begin`), else a new one."""
        conn: sa.Connection | None = getattr(self._held, "conn", None)
        if conn is None:
            with self._fresh() as fresh:
                yield fresh
        elif conn.in_transaction():
            yield conn
        else:
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()

    def analyst_copy_path(self) -> Path | None:
        """Where the copy analysts query is published (beside the DuckDB file), or None on PostgreSQL."""
        if not self.is_duckdb:
            return None
        main = Path(sa.make_url(self.url).database or "warehouse.duckdb")
        return main.with_name(f"{main.stem}.analysts{main.suffix or '.duckdb'}")

    def publish_analyst_copy(self) -> Path | None:
        """Copy the whole DuckDB warehouse (every schema) to `analyst_copy_path()`, written beside it and renamed
        into place: analysts hold connections on the copy, never on the file runs write, and a connection already
        open on the copy keeps reading the version it opened. PostgreSQL needs none (readers never block runs)."""
        target = self.analyst_copy_path()
        if target is None:
            return None
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)
        with self._fresh() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar()
            conn.execute(sa.text(f"ATTACH '{partial}' AS fulfil_published"))
            conn.commit()
            try:
                conn.execute(sa.text(f'COPY FROM DATABASE "{name}" TO fulfil_published'))
                conn.commit()
            finally:
                conn.rollback()
                conn.execute(sa.text("DETACH fulfil_published"))
                conn.commit()
        os.replace(partial, target)
        return target

    def any_of(self, column: str, param: str) -> str:
        """SQL true when `column` is one of the list bound to `:param` (the dialect's own list test)."""
        return f"list_contains(:{param}, {column})" if self.is_duckdb else f"{column} = ANY(:{param})"

    def execute(self, statements: str | Iterable[str]) -> None:
        """Run DDL or other parameterless statements in one transaction."""
        if isinstance(statements, str):
            statements = [statements]
        with self.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def read(
        self, sql: str, params: Mapping[str, Any] | None = None, schema: Mapping[str, pl.DataType] | None = None
    ) -> pl.DataFrame:
        """Run a query and return a polars frame (typed by `schema` when the result may be empty)."""
        with self.connect() as conn:
            result = conn.execute(sa.text(sql), dict(params or {}))
            columns = list(result.keys())
            rows = result.fetchall()
        if schema:
            return pl.DataFrame(
                [tuple(r) for r in rows],
                schema={c: schema.get(c, pl.String) for c in columns},
                orient="row",
                strict=False,
            )
        if not rows:  # no values to infer from: text columns join and filter like the real ones would
            return pl.DataFrame(schema={c: pl.String for c in columns})
        frame = pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)
        # Drivers name UTC differently (Etc/UTC, UTC): one name, so frames from here stack with our own. A column
        # null in every row (a ledger's `file_name` while its sends are all still going) is text, as when empty.
        return frame.with_columns(
            pl.col(pl.Datetime("us", "*")).dt.convert_time_zone("UTC"), pl.col(pl.Null).cast(pl.String)
        )

    def table_names(self, schema: str = SCHEMA) -> set[str]:
        """The tables in `schema` (one catalogue query, for a caller asking about many)."""
        with self.connect() as conn:
            return set(sa.inspect(conn).get_table_names(schema=schema))

    def table_exists(self, table: str, schema: str = SCHEMA) -> bool:
        """Whether `schema.table` exists."""
        with self.connect() as conn:
            return sa.inspect(conn).has_table(table, schema=schema)

    def write(
        self,
        table: str,
        frame: pl.DataFrame,
        mode: str = "append",
        key: Sequence[str] = (),
        update: Sequence[str] | None = None,
        replace_where: str = "TRUE",
        keep_whole: Sequence[str] = (),
    ) -> int:
        """Write a frame to `fulfil.<table>`: `append`, `replace` (the rows matching `replace_where`, in one
        transaction; with `keep_whole`, the columns naming a group of rows, a group still there after the delete,
        which `replace_where` no longer covered because another run changed it since this one read, is kept as it
        is and gets none of the frame's rows), or `upsert` on `key` (update the `update` columns, or all non-key
        columns)."""
        if mode not in ("append", "replace", "upsert"):
            raise ValueError(f"unknown write mode {mode!r}")
        columns = frame.columns
        target = f"{SCHEMA}.{table}"
        col_sql = ", ".join(columns)
        tail = ""  # of the INSERT: ON CONFLICT for an upsert, WHERE for a replace keeping groups whole
        if mode == "upsert":
            if not key:
                raise ValueError("upsert needs a key")
            changed = [c for c in (update if update is not None else columns) if c not in key]
            action = (
                "DO NOTHING" if not changed else "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in changed)
            )
            tail = f" ON CONFLICT ({', '.join(key)}) {action}"
        elif keep_whole:
            match = " AND ".join(f"t.{c} = l.{c}" for c in keep_whole)
            tail = f" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {match})"
        with self.begin() as conn:
            if mode == "replace":
                if not self.is_duckdb:  # two runs replacing one table at once: the second waits for the first, or
                    # its DELETE misses the rows the first inserted and its INSERT meets them on the key
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext('fulfil.write'), hashtext(:t))"), {"t": target}
                    )
                conn.execute(sa.text(f"DELETE FROM {target} WHERE {replace_where}"))
            if frame.is_empty():
                return 0
            # Bulk paths (row-by-row inserts are far too slow on DuckDB): a Parquet file DuckDB reads
            # natively, or COPY into a temporary table on PostgreSQL; then one INSERT ... SELECT.
            if self.is_duckdb:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "load.parquet"
                    frame.write_parquet(path)
                    conn.execute(
                        sa.text(
                            f"INSERT INTO {target} ({col_sql}) SELECT {col_sql} FROM read_parquet('{path}') l{tail}"
                        )
                    )
            else:
                conn.exec_driver_sql(f"CREATE TEMP TABLE _fulfil_load (LIKE {target}) ON COMMIT DROP")
                with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
                    with cur.copy(f"COPY _fulfil_load ({col_sql}) FROM STDIN") as copy:
                        for row in frame.iter_rows():
                            copy.write_row(row)
                conn.exec_driver_sql(f"INSERT INTO {target} ({col_sql}) SELECT {col_sql} FROM _fulfil_load l{tail}")
                conn.exec_driver_sql("DROP TABLE _fulfil_load")  # a later write in the same transaction makes its own
        return frame.height

    @property
    def dlt_file_format(self) -> str | None:
        """The loader file format dlt should use here: JSON lines for DuckDB (its default, INSERT statements,
        loads ~20x slower); PostgreSQL keeps dlt's default."""
        return "jsonl" if self.is_duckdb else None

    def dlt_destination(self) -> Any:
        """The matching dlt destination (raw tables land in the same database)."""
        import dlt

        if self.is_duckdb:
            return dlt.destinations.duckdb(sa.make_url(self.url).database)
        url = sa.make_url(self.url).set(drivername="postgresql")
        if url.password is None:  # trust/peer auth: dlt insists on a password field, an empty one is sent
            url = url.set(password="")
        return dlt.destinations.postgres(url.render_as_string(hide_password=False))


class Warehouse(dg.ConfigurableResource):
    """Where fulfil keeps raw, canonical, ledger and reconciliation tables (`FULFIL_WAREHOUSE_URL`)."""

    url: str = Field(
        default_factory=warehouse_url, description="SQLAlchemy URL: duckdb:///path or postgresql+psycopg://"
    )

    def bootstrap(self, db: WarehouseDb) -> None:
        """What a new handle needs before first use (nothing here: the code location's subclass creates its
        tables; the resource itself knows nothing of them)."""

    def get_db(self) -> WarehouseDb:
        """The database handle for this URL, bootstrapped on first use."""
        if self.url not in _DBS:
            db = WarehouseDb(self.url)
            self.bootstrap(db)
            _DBS[self.url] = db
        return _DBS[self.url]

    @contextmanager
    def session(self) -> Iterator[WarehouseDb]:
        """The database with one connection held for the block (an asset's body; see `WarehouseDb.session`)."""
        db = self.get_db()
        with db.session():
            yield db
