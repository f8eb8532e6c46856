"""The ingest batcher's kept connection (``app.store.engine.KeptWriter``).

On PostgreSQL the batcher keeps one connection between its transactions
instead of checking one out of the pool for each; whatever happens to that
connection, a transaction must start on a working one and a failed one must
leave nothing behind. On SQLite it is the shared pooled writer.
"""

import pytest
from sqlalchemy import text

from app.store.engine import Database, KeptWriter
from tests.helpers import terminate_backends

_PID = text("SELECT pg_backend_pid()")


def _checked_out(db: Database) -> int:
    return int(db.write_engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


def _postgres_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")


@pytest.mark.postgres
async def test_transactions_share_one_connection_until_closed(db_url: str) -> None:
    _postgres_only(db_url)
    db = Database(db_url)
    writer = KeptWriter(db)
    try:
        pids = []
        for _ in range(3):
            async with writer.write() as conn:
                pids.append((await conn.execute(_PID)).scalar_one())
            assert _checked_out(db) == 1  # kept between transactions
        assert len(set(pids)) == 1
        await writer.close()
        assert _checked_out(db) == 0  # back in the pool
        async with db.write() as conn:  # the pool hands the same one out again
            assert (await conn.execute(_PID)).scalar_one() == pids[0]
    finally:
        await writer.close()
        await db.dispose()


@pytest.mark.postgres
async def test_a_kept_connection_the_server_closed_is_replaced_before_use(db_url: str) -> None:
    """A restart or an idle timeout closes the kept connection between two
    batches: the next transaction runs on a new one, with no error (the
    ingest's own retry is not needed for it)."""
    _postgres_only(db_url)
    db = Database(db_url)
    writer = KeptWriter(db)
    try:
        async with writer.write() as conn:
            first = (await conn.execute(_PID)).scalar_one()
        await terminate_backends(db_url, [first])
        async with writer.write() as conn:
            second = (await conn.execute(_PID)).scalar_one()
            await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        assert second != first
        assert db.write_failure is None
        assert _checked_out(db) == 1
    finally:
        await writer.close()
        await db.dispose()


@pytest.mark.postgres
async def test_a_failed_transaction_leaves_nothing_and_the_next_starts_clean(
    db_url: str,
) -> None:
    """What a failed transaction wrote is rolled back, its connection goes back
    to the pool (which resets it), and the next transaction commits."""
    _postgres_only(db_url)
    db = Database(db_url)
    writer = KeptWriter(db)
    insert = text(
        "INSERT INTO audit_log (at, actor, action, target, outcome, details) "
        "VALUES (now(), 'test', 'kept', :target, 'ok', '{}')"
    )
    try:
        with pytest.raises(Exception, match="division by zero"):
            async with writer.write() as conn:
                await conn.execute(insert, {"target": "rolled back"})
                await conn.execute(text("SELECT 1 / 0"))
        assert _checked_out(db) == 0  # given back, not kept
        async with writer.write() as conn:
            await conn.execute(insert, {"target": "committed"})
        async with db.read() as conn:
            rows = (await conn.execute(text("SELECT target FROM audit_log"))).scalars().all()
        assert rows == ["committed"]
    finally:
        await writer.close()
        await db.dispose()


async def test_on_sqlite_it_is_the_shared_pooled_writer(sqlite_url: str) -> None:
    """SQLite's writers share one pooled connection: the batcher must not keep
    it, or the delivery loop and the sweeper could never write."""
    db = Database(sqlite_url)
    writer = KeptWriter(db)
    try:
        async with writer.write() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            assert _checked_out(db) == 1
        assert _checked_out(db) == 0
        async with db.write() as conn:  # free for the next writer
            await conn.execute(text("SELECT 1"))
    finally:
        await writer.close()
        await db.dispose()


@pytest.mark.postgres
async def test_a_pool_of_one_is_not_kept(db_url: str) -> None:
    """With ``database.pool_size: 1`` the batcher keeping the pool's one
    connection would leave the delivery loop, the sweeper and the API only
    overflow connections, each opened for one transaction."""
    _postgres_only(db_url)
    db = Database(db_url, pool_size=1)
    writer = KeptWriter(db)
    try:
        async with writer.write() as conn:
            await conn.execute(text("SELECT 1"))
        assert _checked_out(db) == 0
    finally:
        await writer.close()
        await db.dispose()
