"""Engines and transactions for SQLite (embedded) and PostgreSQL (scale-out).

SQLite runs in WAL with ``synchronous=FULL`` (a committed alert survives a
power loss) and every write transaction starts with
``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes fails
at once with "database is locked" instead of waiting. Writers share one
connection, so in-process writers queue in asyncio rather than on file locks;
readers have their own pool and never block the writer.
"""

import asyncio
import contextlib
import json
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.ops.clock import SystemClock


class DatabaseUnavailable(Exception):
    """The database cannot take the work now (down, locked, or too slow)."""


@dataclass(frozen=True)
class WriteFailure:
    at: datetime  # when the latest write failed
    error: str  # its first line (driver and message; never SQL parameters)


class DatabaseSetupError(Exception):
    """The database cannot be used safely at all (refuse to start)."""


_json = partial(json.dumps, separators=(",", ":"), ensure_ascii=False)
# SQLite's page cache on the one write connection, in KiB (SQLite's default
# is 2,000). A 10,000-alert webhook writes about 44 MB of rows and index
# pages in one transaction; with 2 MB of cache SQLite spilled dirty pages to
# the WAL mid-transaction and read index pages back. 32 MB took SQLite's own
# CPU for that webhook from 1.32-1.37 s to 0.89-0.93 s and 64 MB no further
# (tests/perf/stages.py, docs/performance.md, seventh stop). The pages stay
# cached between transactions: the process keeps up to this much more.
WRITE_CACHE_KIB = 32_768
# The page size a new SQLite file is created with (SQLite's default is
# 4,096). An alert's row is about 1 kB and an outbox row about 1.4 kB, so
# 4 KB pages hold two or three rows and a big webhook's transaction is tens
# of thousands of pages, each a B-tree step, a WAL frame and a write() at
# commit. 16 KB pages took SQLite's own CPU for a 10,000-alert webhook down
# by about a third (docs/performance.md, eighth stop). A file's page size is
# fixed once it is in WAL mode: existing files keep theirs (docs/operations.md
# says how to convert one).
NEW_FILE_PAGE_SIZE = 16_384


def sqlite_use_wal(cursor: Any) -> None:
    """Put an SQLite file in WAL mode; a file with no pages yet first gets
    :data:`NEW_FILE_PAGE_SIZE`, which can only be chosen before WAL is on."""
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    cursor.execute("PRAGMA page_count")
    if int(cursor.fetchone()[0]) == 0:
        cursor.execute(f"PRAGMA page_size={NEW_FILE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")


def _driver_url(url: str, *, sync: bool) -> str:
    """Map plain SQLAlchemy URLs to the drivers alertrelay uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        driver = "pysqlite" if sync else "aiosqlite"
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseSetupError("SQLite needs a file path (sqlite:///path.db), not memory")
        return parsed.set(drivername=f"sqlite+{driver}").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise DatabaseSetupError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def async_url(url: str) -> str:
    return _driver_url(url, sync=False)


def sync_url(url: str) -> str:
    return _driver_url(url, sync=True)


def redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database URL>"


# PostgreSQL plans from statistics that a burst makes stale: right after a
# 10,000-alert webhook a table still reads as empty, and the planner picks a
# sequential scan (and, once psycopg prepares the statement, checks each row
# against the key list one by one). Told not to scan whole tables, it walks
# the index whatever the statistics say. A statement with no other way than
# a scan still gets one, at a cost inflated by 10^10, and that cost once
# made PostgreSQL compile the statement with JIT: 20-100 ms for a lookup of
# a few rows (the claim's read of message references, by key pairs). So
# JIT goes off too; no statement of these short transactions gains from it.
# Local to the caller's transaction (``set_config(…, true)``); the claim and
# the ingest's locking read take it (docs/performance.md).
PREFER_INDEX_WALKS = text(
    "SELECT set_config('enable_bitmapscan', 'off', true), "
    "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)"
)


def _replace_if_closed(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Hand out no pooled PostgreSQL connection that the server has closed.

    A restart or ``pg_terminate_backend`` closes idle connections; the pool
    must replace them before a transaction uses one, or that webhook answers
    503. SQLAlchemy's ``pool_pre_ping`` asks the server (``SELECT 1``): a
    round trip on every transaction, ~160 µs of this process's CPU against
    ~850 µs for a whole one-statement transaction (measured). A server that
    closes a connection sends its reason and then end-of-file, so the
    socket of an idle connection turns readable: one ``poll`` sees it.
    """
    if _closed_by_server(record.driver_connection):
        raise DisconnectionError("the server closed this connection")  # the pool connects anew


def _closed_by_server(driver: Any) -> bool:
    """Whether psycopg's connection is closed, broken, or its socket readable
    while idle (the server's reason and end-of-file); True if that cannot be read."""
    try:
        return bool(driver.closed or driver.broken or _readable(driver.pgconn.socket))
    except Exception:
        return True


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


# PostgreSQL's deadlock_detected and serialization_failure: retry the transaction.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def is_lock_conflict(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in _CONFLICT_SQLSTATES


def is_dropped_connection(exc: BaseException) -> bool:
    """The connection broke under the transaction (the server closed it); the
    pool has already thrown it away, and every connection as old."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "try again later" rather than a bug."""
    return isinstance(
        exc,
        OperationalError | PoolTimeoutError | DBAPIError | OSError | asyncio.TimeoutError,
    )


class Database:
    """The engines and the two kinds of transaction the store uses."""

    def __init__(self, url: str, *, busy_timeout_s: float = 5.0, pool_size: int = 5) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.pool_size = pool_size
        self.write_failure: WriteFailure | None = None
        driver_url = async_url(url)
        self.kind = make_url(driver_url).get_backend_name()
        if self.kind == "sqlite":
            self.write_engine = self._sqlite_engine(driver_url, immediate=True, pool_size=1)
            self.read_engine = self._sqlite_engine(driver_url, immediate=False, pool_size=pool_size)
        else:
            timeout_ms = int(busy_timeout_s * 1000)
            self.write_engine = create_async_engine(
                driver_url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=busy_timeout_s,
                json_serializer=_json,
                connect_args={
                    "connect_timeout": max(1, min(int(busy_timeout_s), 5)),
                    # Row locks and statements wait this long, then the
                    # webhook answers 503 and Alertmanager retries. UTC
                    # sessions: psycopg renders timestamptz in the session's
                    # zone and refuses years outside 1..9999, which Go's zero
                    # time and 9999-12-31 reach in any other zone.
                    "options": (
                        f"-c lock_timeout={timeout_ms} -c statement_timeout={timeout_ms * 6}"
                        " -c TimeZone=UTC"
                    ),
                },
            )
            self.read_engine = self.write_engine
            event.listen(self.write_engine.sync_engine, "checkout", _replace_if_closed)

    def _sqlite_engine(self, url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=self.busy_timeout_s,
            json_serializer=_json,
            connect_args={"timeout": self.busy_timeout_s},
        )
        busy_ms = int(self.busy_timeout_s * 1000)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the sqlite3 module, which would
            # not BEGIN before a SELECT and cannot do BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            # WAL is a property of the file, set by the migrations: switching
            # needs a lock another connection may hold, so only a file that is
            # not in WAL yet (one copied in unmigrated) is switched here.
            sqlite_use_wal(cursor)
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if immediate:
                cursor.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    async def check(self) -> None:
        """Verify the database is usable as configured; raise DatabaseSetupError if not."""
        try:
            async with self.write_engine.connect() as conn:
                if self.kind == "sqlite":
                    mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
                    sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
                    if str(mode).lower() != "wal" or int(sync or 0) != 2:
                        raise DatabaseSetupError(
                            f"SQLite must run with journal_mode=WAL and synchronous=FULL, "
                            f"got journal_mode={mode} synchronous={sync}"
                        )
                    await conn.rollback()
                async with conn.begin():
                    # A no-op write proves the file is writable (DB-S6): better
                    # to refuse to start than to accept webhooks we cannot store.
                    await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        except DatabaseSetupError:
            raise
        except Exception as exc:
            raise DatabaseSetupError(
                f"cannot use database {redact_url(self.url)}: {_short(exc)}"
            ) from None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on exit, rolled back on error.

        Its outcome is remembered for health: the database can answer reads
        and still refuse every write (a full disk), and then health must not
        say "healthy". The next write that commits clears it.
        """
        try:
            async with self.write_engine.connect() as conn:
                async with conn.begin():
                    yield conn
        except Exception as exc:
            self.note_write_failure(exc)
            raise
        self.write_failure = None

    def note_write_failure(self, exc: BaseException) -> None:
        """Remember a write that failed for a reason health should show."""
        if is_unavailable(exc) and not is_lock_conflict(exc):
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.write_failure = WriteFailure(SystemClock().now(), first[:200])

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot."""
        async with self.read_engine.connect() as conn:
            async with conn.begin():
                yield conn

    async def ping(self) -> float:
        """Round-trip time of ``SELECT 1`` in seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with asyncio.timeout(self.busy_timeout_s):
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return loop.time() - start

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


class KeptWriter:
    """Write transactions for one writer that runs them one at a time (the
    ingest batcher), on a PostgreSQL connection kept between them.

    :meth:`Database.write` checks a connection out of the pool and back in
    around every transaction. On PostgreSQL that is about 100 µs of this
    process's CPU, a quarter of a one-statement transaction (measured,
    docs/performance.md), paid by every batch; under two replicas batches
    are half as big, so it is paid twice as often per alert. The kept
    connection gets the pool's check before each transaction (a closed one
    is replaced) and is given back after any failure, so the next
    transaction starts on a clean one, as it would from the pool. SQLite's
    writers share one pooled connection, and a PostgreSQL pool of one would
    leave the other writers only overflow connections, opened anew for each
    transaction: there this is :meth:`Database.write`.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """Like :meth:`Database.write`: committed on exit, rolled back on error."""
        if self._db.kind != "postgresql" or self._db.pool_size < 2:
            async with self._db.write() as pooled:
                yield pooled
            return
        try:
            conn = await self._connection()
            try:
                async with conn.begin():
                    yield conn
            except BaseException:
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()  # back to the pool, which resets or drops it
                raise
        except Exception as exc:
            self._db.note_write_failure(exc)
            raise
        self._db.write_failure = None

    async def _connection(self) -> AsyncConnection:
        conn = self._conn
        if conn is not None:
            if not conn.closed and not conn.invalidated and _still_open(conn):
                return conn
            self._conn = None
            # Known dead: dropped rather than handed back to the pool's reset.
            with contextlib.suppress(Exception):
                if not conn.invalidated:
                    await conn.invalidate()
                await conn.close()
        conn = self._conn = await self._db.write_engine.connect()
        return conn

    async def close(self) -> None:
        """Give the connection back to the pool (before the engine is disposed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _still_open(conn: AsyncConnection) -> bool:
    """The pool's check on checkout (:func:`_replace_if_closed`), for a kept connection."""
    try:
        sync = conn.sync_connection
        driver = sync.connection.driver_connection if sync is not None else None
    except Exception:
        return False
    return driver is not None and not _closed_by_server(driver)


def _short(exc: BaseException) -> str:
    message = (
        str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    )
    return message[:300]


def url_problem(url: str) -> str | None:
    """What ``serve`` would refuse about a database URL, or None."""
    try:
        async_url(url)
    except DatabaseSetupError as exc:
        return str(exc)
    except (ArgumentError, ValueError):
        return "not a database URL (sqlite:///path.db or postgresql://user@host/db)"
    return None


def missing_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist (opening it would create an empty one)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    return not Path(parsed.database).exists()
