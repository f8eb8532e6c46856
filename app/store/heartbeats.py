"""The ``heartbeats`` table: proof of life from ingest, missing or not from the sweeper.

Ingest calls :func:`touch` once per batch with the names its firing alerts
proved alive (one statement whatever the batch size). The sweeper calls
:func:`watch` so every configured heartbeat has a row (its clock starts
then, and survives restarts), and :func:`load_locked` to decide them: on
PostgreSQL rows another replica is deciding are skipped, not waited for.
Ingest and the sweeper both lock heartbeat rows before alert rows, so they
cannot deadlock each other.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.heartbeats import HeartbeatState
from app.store.tables import heartbeats


def _insert(dialect: str) -> Any:
    return pg_insert(heartbeats) if dialect == "postgresql" else sqlite_insert(heartbeats)


def _state(row: Any) -> HeartbeatState:
    m = row._mapping
    return HeartbeatState(
        name=m["name"],
        watched_since=m["watched_since"],
        last_seen=m["last_seen"],
        missing=bool(m["missing"]),
        missing_since=m["missing_since"],
    )


async def touch(conn: AsyncConnection, dialect: str, names: Iterable[str], now: datetime) -> bool:
    """Record proof of life for ``names``; True when one of them was missing
    (the sweeper should look now rather than at its next tick)."""
    wanted = sorted(set(names))
    if not wanted:
        return False
    stmt = _insert(dialect).values(
        [{"name": n, "watched_since": now, "last_seen": now} for n in wanted]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[heartbeats.c.name],
        # Never backwards: a batch committed late must not age a fresher proof.
        set_={
            "last_seen": sa.case(
                (
                    sa.or_(heartbeats.c.last_seen.is_(None), heartbeats.c.last_seen < now),
                    stmt.excluded.last_seen,
                ),
                else_=heartbeats.c.last_seen,
            )
        },
    ).returning(heartbeats.c.missing)
    result = await conn.execute(stmt)
    return any(bool(row[0]) for row in result)


async def watch(conn: AsyncConnection, dialect: str, names: Iterable[str], now: datetime) -> None:
    """Give every configured heartbeat a row; a new one's clock starts ``now``."""
    wanted = sorted(set(names))
    if wanted:
        stmt = _insert(dialect).values([{"name": n, "watched_since": now} for n in wanted])
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=[heartbeats.c.name]))


async def load_locked(conn: AsyncConnection, dialect: str) -> list[HeartbeatState]:
    query = sa.select(heartbeats).order_by(heartbeats.c.name)
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_state(r) for r in await conn.execute(query)]


async def save(conn: AsyncConnection, state: HeartbeatState) -> None:
    await conn.execute(
        heartbeats.update()
        .where(heartbeats.c.name == state.name)
        .values(missing=state.missing, missing_since=state.missing_since)
    )


async def list_all(conn: AsyncConnection) -> list[HeartbeatState]:
    result = await conn.execute(sa.select(heartbeats).order_by(heartbeats.c.name))
    return [_state(r) for r in result]
