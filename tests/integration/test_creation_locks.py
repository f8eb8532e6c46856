"""How PostgreSQL replicas serialize the creation of new alerts.

A fingerprint with no row yet cannot be locked ``FOR UPDATE``: the ingest
takes an advisory lock on its stripe instead (app/store/alerts.py). These
tests hold the locks open in one transaction and look at them from outside.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.alerts import AlertUnit
from app.store.engine import Database


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite's BEGIN IMMEDIATE excludes every other writer")
    return db_url


@asynccontextmanager
async def database(url: str) -> AsyncIterator[Database]:
    db = Database(url)
    try:
        yield db
    finally:
        await db.dispose()


async def advisory_locks(conn: AsyncConnection) -> int:
    result = await conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
    )
    return int(result.scalar_one())


async def test_new_fingerprints_take_a_bounded_number_of_locks(pg_url: str) -> None:
    """One lock per new fingerprint ran PostgreSQL's lock table out at about
    20,000 (6,400 entries by default, shared by every connection): a webhook
    of that many new alerts failed with "out of shared memory" on every
    retry. Stripes bound one transaction's locks, whatever the batch."""
    fingerprints = [f"{i:016x}" for i in range(5_000)]
    async with database(pg_url) as db, db.write() as conn:
        found = await AlertUnit(conn, db.kind).load(fingerprints)
        held = await advisory_locks(conn)
    assert found == {}
    assert 0 < held <= 1024, held


async def test_a_replica_creating_an_alert_waits_for_the_one_creating_it_first(
    pg_url: str,
) -> None:
    """The second loader of a missing fingerprint waits on its stripe until the
    first commits, then finds the first's row (and locks it) instead of
    creating it again."""
    fp = "00000000000000aa"
    async with database(pg_url) as first_db, database(pg_url) as second_db:
        async with first_db.write() as first:
            assert await AlertUnit(first, "postgresql").load([fp]) == {}

            async def second_load() -> set[str]:
                async with second_db.write() as conn:
                    return set(await AlertUnit(conn, "postgresql").load([fp]))

            waiting = asyncio.create_task(second_load())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # held on the stripe
            await first.execute(
                sa.text(
                    "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at,"
                    " source, first_seen, last_seen, last_changed) VALUES (:fp, '{}', '{}',"
                    " 'firing', now(), 'alertmanager', now(), now(), now())"
                ),
                {"fp": fp},
            )
        assert await asyncio.wait_for(waiting, timeout=10) == {fp}
