"""Alertmanager groups for grouped notifications: their stored state and their alerts.

A grouped message lists its group's alerts as they are when it is decided,
so ingest and the sweeper read them here, inside their own transaction: the
group's stored state (:class:`~app.core.grouping.GroupState`, locked) and the
alerts that share its group key (read, not locked: the alerts the change
itself touches are already locked by :class:`~app.store.alerts.AlertUnit`).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import AlertRecord
from app.core.grouping import GroupState, group_id
from app.store.alerts import record_from_row
from app.store.tables import alert_groups, alerts

_CHUNK = 200  # group keys per SELECT

# Serializes the groups' occurrence decisions across replicas (taken after
# the alert locks, in sorted order, so no two transactions wait on each other).
_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended('alert-group/' || g, 0)) "
    "FROM unnest(CAST(:ids AS text[])) AS g ORDER BY g"
)


async def load_states(
    conn: AsyncConnection, dialect: str, group_keys: Iterable[str]
) -> dict[str, GroupState]:
    """The stored state of these groups, by group key (absent: never seen)."""
    ids = sorted({group_id(k) for k in group_keys})
    if not ids:
        return {}
    if dialect == "postgresql":
        await conn.execute(_ADVISORY_LOCKS, {"ids": ids})
    out: dict[str, GroupState] = {}
    g = alert_groups.c
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            sa.select(alert_groups).where(g.group_id.in_(ids[start : start + _CHUNK]))
        )
        for row in rows:
            m = row._mapping
            out[m["group_key"]] = GroupState(
                group_id=m["group_id"],
                group_key=m["group_key"],
                labels=dict(m["labels"] or {}),
                occurrence=m["occurrence"],
                open=bool(m["open"]),
            )
    return out


async def load_members(
    conn: AsyncConnection, group_keys: Iterable[str]
) -> dict[str, dict[str, AlertRecord]]:
    """Every stored alert of these groups: group key -> fingerprint -> record."""
    keys = sorted(set(group_keys))
    out: dict[str, dict[str, AlertRecord]] = {k: {} for k in keys}
    for start in range(0, len(keys), _CHUNK):
        query = sa.select(alerts).where(alerts.c.group_key.in_(keys[start : start + _CHUNK]))
        for row in await conn.execute(query):
            rec = record_from_row(row)
            out.setdefault(rec.group_key, {})[rec.fingerprint] = rec
    return out


def _values(state: GroupState, now: datetime) -> dict[str, Any]:
    return {
        "group_id": state.group_id,
        "group_key": state.group_key,
        "labels": state.labels,
        "occurrence": state.occurrence,
        "open": state.open,
        "updated_at": now,
    }


async def save_states(
    conn: AsyncConnection, dialect: str, states: list[GroupState], now: datetime
) -> None:
    if not states:
        return
    insert = pg_insert(alert_groups) if dialect == "postgresql" else sqlite_insert(alert_groups)
    statement = insert.on_conflict_do_update(
        index_elements=["group_id"],
        set_={
            "labels": insert.excluded.labels,
            "occurrence": insert.excluded.occurrence,
            "open": insert.excluded.open,
            "updated_at": insert.excluded.updated_at,
        },
    )
    latest = {s.group_id: s for s in states}  # the last state of each group wins
    await conn.execute(statement, [_values(s, now) for s in latest.values()])
