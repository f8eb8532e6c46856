"""SQLite as the embedded default: WAL, synchronous=FULL, and BEGIN IMMEDIATE writers.

A deferred transaction that reads and then writes, while
another connection holds the write lock, fails at once with "database is
locked" whatever the busy timeout (SQLite cannot wait without risking a
deadlock). Writers that take the lock up front (BEGIN IMMEDIATE) wait their
turn instead. Two ``Database`` objects on one file stand in for two processes.
"""

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from app.store.engine import WRITE_CACHE_KIB, Database
from app.store.migrate import upgrade


async def test_every_connection_runs_wal_and_synchronous_full(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        async with db.write() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
        await db.check()  # the start-up check agrees
    finally:
        await db.dispose()


async def test_only_the_write_connection_gets_the_large_page_cache(sqlite_url: str) -> None:
    """Big webhooks write through the one write connection; readers keep
    SQLite's default, so the extra memory is spent once per process."""
    db = Database(sqlite_url)
    try:
        async with db.write() as conn:
            size = (await conn.exec_driver_sql("PRAGMA cache_size")).scalar()
            assert size == -WRITE_CACHE_KIB
        plain = sqlite3.connect(":memory:")
        default = plain.execute("PRAGMA cache_size").fetchone()[0]
        plain.close()
        assert default != -WRITE_CACHE_KIB
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("PRAGMA cache_size")).scalar() == default
    finally:
        await db.dispose()


async def test_two_writers_that_read_then_write_both_commit(sqlite_url: str) -> None:
    """Each reads the version row, yields (so the other starts), then writes."""
    first, second = Database(sqlite_url), Database(sqlite_url)
    order: list[str] = []

    async def writer(db: Database, name: str) -> None:
        async with db.write() as conn:
            await conn.execute(text("SELECT version_num FROM alembic_version"))
            order.append(f"{name} read")
            await asyncio.sleep(0.2)  # the other writer tries its BEGIN meanwhile
            await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            order.append(f"{name} wrote")

    try:
        await asyncio.gather(writer(first, "a"), writer(second, "b"))
    finally:
        await first.dispose()
        await second.dispose()
    # Both committed, one after the other: the lock was taken at BEGIN, so
    # the second never read before the first had written.
    assert sorted(order) == ["a read", "a wrote", "b read", "b wrote"]
    assert order[1].endswith("wrote") and order[0][0] == order[1][0], order


def test_the_pitfall_it_avoids_deferred_read_then_write_fails_at_once(tmp_path: Path) -> None:
    """The same pattern with the sqlite3 module's deferred BEGIN: "database is locked"."""
    path = tmp_path / "plain.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.execute("INSERT INTO t VALUES (0)")
    setup.commit()
    setup.close()

    holder = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    reader = sqlite3.connect(path, timeout=5, isolation_level=None)
    holder.execute("BEGIN")
    holder.execute("UPDATE t SET n = 1")  # holds the write lock
    reader.execute("BEGIN")  # deferred
    reader.execute("SELECT n FROM t").fetchall()  # a read snapshot
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            reader.execute("UPDATE t SET n = 2")  # upgrade refused, not waited for
    finally:
        release.join()
        reader.close()
        holder.close()


def test_the_migrations_leave_the_file_in_wal(tmp_path: Path) -> None:
    """Connections never switch an existing file's mode, so none waits on another's switch.

    Two connections that both switched a new file to WAL at once answered
    "database is locked" to the second; the migrations set it first.
    """
    path = tmp_path / "fresh.db"
    upgrade(f"sqlite:///{path}")
    plain = sqlite3.connect(path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()
