"""The audit log: who replayed, reloaded, pruned (and acknowledged) what, and when.

Entries are written in the same transaction as the action when the action
is a database change (a replay), so an action without its entry, or an
entry for an action that rolled back, cannot happen. Listing is by keyset
on the id, newest first.
"""

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import isoformat
from app.store.paging import decode_id_cursor, encode_cursor
from app.store.tables import audit_log

ACTOR_CLI = "cli"
ACTOR_ADMIN = "admin"  # the admin token: it names nobody
ACTOR_SIGNAL = "sighup"  # a reload asked for by the process's SIGHUP


class Action(enum.StrEnum):
    REPLAY = "replay"
    RELOAD = "reload"
    PRUNE = "prune"
    ACK = "ack"
    UNACK = "unack"


_MAX_FIELD = 255


async def record(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: Action,
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> int:
    """Add one entry inside the caller's transaction; returns its id."""
    result = await conn.execute(
        audit_log.insert()
        .values(
            at=at,
            actor=actor[:_MAX_FIELD],
            action=action.value,
            target=target[:_MAX_FIELD],
            outcome=outcome[:32],
            details=details or {},
        )
        .returning(audit_log.c.id)
    )
    return int(result.scalar_one())


def _view(m: Any) -> dict[str, Any]:
    return {
        "id": m["id"],
        "at": isoformat(m["at"]),
        "actor": m["actor"],
        "action": m["action"],
        "target": m["target"],
        "outcome": m["outcome"],
        "details": m["details"],
    }


async def list_entries(
    conn: AsyncConnection,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; ``since`` inclusive, ``until`` exclusive."""
    c = audit_log.c
    query = sa.select(audit_log)
    if action is not None:
        query = query.where(c.action == action)
    if actor is not None:
        query = query.where(c.actor == actor)
    if since is not None:
        query = query.where(c.at >= since)
    if until is not None:
        query = query.where(c.at < until)
    if cursor:
        last_id = decode_id_cursor(cursor)
        query = query.where(c.id < last_id)
    rows = [r._mapping for r in await conn.execute(query.order_by(c.id.desc()).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["id"]) if more and rows else None
    return [_view(r) for r in rows], next_cursor
