"""Which chat message each (destination, message key) is: read at claim, written with the outcome.

The reference (Slack channel and ts, a Discord message id, a Mattermost post
id) is what the sink answered when the message was posted. It is read in the
transaction that claims a row, and written in the transaction that records
the row's outcome, so it survives restarts and every replica sees the same
one. Rows sharing a message key also share an ordering key, so they are
claimed one at a time, in order: the one claimed next sees what the one
before it wrote.

``notification_id`` is the outbox row whose state the message last showed.
A write never goes backwards: a row older than that one changes nothing
(its edit was skipped before sending; the guard here covers races).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import message_refs

r = message_refs.c


@dataclass(frozen=True)
class StoredRef:
    ref: dict[str, str]
    notification_id: int  # the row whose state the message shows


@dataclass(frozen=True)
class RefWrite:
    integration: str  # core.domain.integration_key
    message_key: str
    notification_id: int
    state_at: datetime  # that row's created_at
    ref: dict[str, str] | None  # None: the message is gone, forget it


async def load(
    conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StoredRef]:
    """The stored references for these (integration, message key) pairs."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    out: dict[tuple[str, str], StoredRef] = {}
    for start in range(0, len(wanted), 500):  # bound the statement's size
        chunk = wanted[start : start + 500]
        rows = await conn.execute(
            sa.select(r.integration, r.message_key, r.ref, r.notification_id).where(
                sa.tuple_(r.integration, r.message_key).in_(chunk)
            )
        )
        for row in rows:
            out[(row.integration, row.message_key)] = StoredRef(
                dict(row.ref), int(row.notification_id)
            )
    return out


async def write(conn: AsyncConnection, writes: Iterable[RefWrite], now: datetime) -> None:
    """Record references (or forget gone ones), never over a newer row's.

    One statement for all the references a transaction records (executemany),
    one for the few gone ones.
    """
    writes = list(writes)
    gone = [w for w in writes if w.ref is None]
    kept = [w for w in writes if w.ref is not None]
    if gone:
        await conn.execute(
            message_refs.delete().where(
                r.integration == sa.bindparam("b_integration"),
                r.message_key == sa.bindparam("b_key"),
                r.notification_id <= sa.bindparam("b_id"),
            ),
            [
                {"b_integration": w.integration, "b_key": w.message_key, "b_id": w.notification_id}
                for w in gone
            ],
        )
    if not kept:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(message_refs)
    stmt = stmt.on_conflict_do_update(
        index_elements=[r.integration, r.message_key],
        set_={k: stmt.excluded[k] for k in ("ref", "notification_id", "state_at", "updated_at")},
        where=r.notification_id <= stmt.excluded.notification_id,
    )
    values: list[dict[str, Any]] = [
        {
            "integration": w.integration,
            "message_key": w.message_key,
            "ref": w.ref,
            "notification_id": w.notification_id,
            "state_at": w.state_at,
            "updated_at": now,
        }
        for w in kept
    ]
    await conn.execute(stmt, values)


async def for_notifications(
    conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The current reference of each (integration, message key), as the API shows it."""
    found = await load(conn, keys)
    return {
        key: {"ref": stored.ref, "notification_id": stored.notification_id}
        for key, stored in found.items()
    }
