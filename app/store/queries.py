"""Read models for the API, the status page, health checks and metrics.

Lists are paginated by keyset (an opaque cursor naming the last row seen),
so pages stay fast and stable while alerts keep changing.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import NotificationStatus as NS
from app.store.paging import (
    BadCursor,
    decode_change_cursor,
    decode_id_cursor,
    encode_cursor,
    timestamp,
)
from app.store.tables import (
    alert_acks,
    alert_escalations,
    alert_transitions,
    alerts,
    delivery_attempts,
    notification_alerts,
    notifications,
    quarantined_alerts,
)

__all__ = ["BadCursor"]  # re-exported: the web layer catches it from here


def attempt_view(m: Any) -> dict[str, Any]:
    """One delivery attempt as the API and the console show it."""
    return {
        "attempt": m["attempt"],
        "worker": m["worker"],
        "started_at": timestamp(m["started_at"]),
        "finished_at": timestamp(m["finished_at"]),
        "outcome": m["outcome"],
        "status_code": m["status_code"],
        "error": m["error"],
        "duration_ms": m["duration_ms"],
    }


def ack_state(m: Any, now: datetime | None) -> dict[str, Any] | None:
    """The ack of the alert's current occurrence, or None.

    ``active`` is False once its ``until`` has passed (the expiry is written
    down at the next event that looks at the alert)."""
    if m["ack_at"] is None:
        return None
    until = m["ack_until"]
    return {
        "active": until is None or now is None or until > now,
        "by": m["ack_by"],
        "via": m["ack_via"],
        "at": timestamp(m["ack_at"]),
        "comment": m["ack_comment"],
        "until": timestamp(until),
    }


def alert_summary(m: Any, now: datetime | None = None) -> dict[str, Any]:
    return {
        "fingerprint": m["fingerprint"],
        "alertname": m["alertname"],
        "status": m["status"],
        "severity": m["severity"],
        "labels": m["labels"],
        "annotations": m["annotations"],
        "starts_at": timestamp(m["starts_at"]),
        "ends_at": timestamp(m["ends_at"]),
        "generator_url": m["generator_url"],
        "runbook_url": m["runbook_url"],
        "runbook_source": m["runbook_source"],
        "first_seen": timestamp(m["first_seen"]),
        "last_seen": timestamp(m["last_seen"]),
        "last_changed": timestamp(m["last_changed"]),
        "duplicates": m["duplicate_count"],
        "stale": m["stale_count"],
        "flap": {
            "score": round(m["flap_score"], 3),
            "score_at": timestamp(m["flap_score_at"]),
            "flapping": bool(m["flapping"]),
            "started_at": timestamp(m["flap_started_at"]),
            "transitions": m["flap_transitions"],
        },
        "incident_key": m["incident_key"],
        "clock_skew": (
            {"fields": m["clock_skew"].split(","), "ordered_at": timestamp(m["skewed_at"])}
            if m["clock_skew"]
            else None
        ),
        "source": m["source"],
        "group_key": m["group_key"],
        "ack": ack_state(m, now),
    }


async def list_alerts(
    conn: AsyncConnection,
    *,
    state: str | None,
    limit: int,
    cursor: str | None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Most recently changed first; ``state`` is firing, resolved or flapping."""
    query = sa.select(alerts)
    if state == "flapping":
        query = query.where(alerts.c.flapping.is_(True))
    elif state is not None:
        query = query.where(alerts.c.status == state)
    if cursor:
        changed_at, fp = decode_change_cursor(cursor)
        query = query.where(
            sa.tuple_(alerts.c.last_changed, alerts.c.fingerprint)
            < sa.tuple_(sa.literal(changed_at, alerts.c.last_changed.type), sa.literal(fp))
        )
    query = query.order_by(alerts.c.last_changed.desc(), alerts.c.fingerprint.desc()).limit(
        limit + 1
    )
    rows = [r._mapping for r in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor(rows[-1]["last_changed"], rows[-1]["fingerprint"]) if more and rows else None
    )
    return [alert_summary(r, now) for r in rows], next_cursor


def notification_view(m: Any, *, with_payload: bool = False) -> dict[str, Any]:
    out = {
        "id": m["id"],
        "fingerprint": m["fingerprint"],
        "receiver": m["receiver"],
        "integration": m["integration"],
        "integration_index": m["integration_index"],
        "kind": m["kind"],
        "status": m["status"],
        "dedup_key": m["dedup_key"],
        "attempts": m["attempts"],
        "created_at": timestamp(m["created_at"]),
        "next_attempt_at": timestamp(m["next_attempt_at"]),
        "sent_at": timestamp(m["sent_at"]),
        "dead_at": timestamp(m["dead_at"]),
        "last_error": m["last_error"],
        "last_status_code": m["last_status_code"],
        "replays": m["replays"],
        # The chat message the row belongs to, and what its delivery did with
        # it: posted, edited, replied, reposted (the old one was gone) or
        # skipped (the message already showed a newer state), with the
        # sink's reference (Slack channel+ts, Discord message_id, Mattermost post_id).
        "message_key": m["message_key"],
        "message": m["message_ref"],
        # A group's message (grouping: group): ``fingerprint`` is its group's id.
        "grouped": bool(m["message_key"] and m["message_key"].startswith("g:")),
    }
    if with_payload:
        out["payload"] = m["payload"]
    return out


def alert_notifications_query(fingerprint: str, limit: int) -> Any:
    """The alert's newest ``limit`` notifications: its own rows, and the rows
    of group messages that changed or listed it (``notification_alerts``),
    each side an index walk of at most ``limit`` ids."""
    n = notifications.c
    link = notification_alerts.c
    own = sa.select(n.id).where(n.fingerprint == fingerprint).order_by(n.id.desc()).limit(limit)
    grouped = (
        sa.select(link.notification_id)
        .where(link.fingerprint == fingerprint)
        .order_by(link.notification_id.desc())
        .limit(limit)
    )
    ids = sa.union(own.subquery().select(), grouped.subquery().select())
    return sa.select(notifications).where(n.id.in_(ids)).order_by(n.id.desc()).limit(limit)


async def alert_row(conn: AsyncConnection, fingerprint: str) -> Any:
    """The alert's row (for a record of it), or None."""
    query = sa.select(alerts).where(alerts.c.fingerprint == fingerprint)
    return (await conn.execute(query)).first()


async def get_alert(
    conn: AsyncConnection, fingerprint: str, history: int = 200, now: datetime | None = None
) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(alerts).where(alerts.c.fingerprint == fingerprint))).first()
    if row is None:
        return None
    out = alert_summary(row._mapping, now)
    t = alert_transitions.c
    trans = await conn.execute(
        sa.select(alert_transitions)
        .where(t.fingerprint == fingerprint)
        .order_by(t.id.desc())
        .limit(history)
    )
    out["transitions"] = [
        {
            "id": m["id"],
            "occurrence": timestamp(m["occurrence"]),
            "from": m["from_status"],
            "to": m["to_status"],
            "at": timestamp(m["at"]),
            "received_at": timestamp(m["received_at"]),
            "implied": bool(m["implied"]),
            "suppressed": m["suppressed"],
        }
        for m in (r._mapping for r in trans)
    ]
    notes = await conn.execute(alert_notifications_query(fingerprint, history))
    out["notifications"] = [notification_view(r._mapping) for r in notes]
    a = alert_acks.c
    acks = await conn.execute(
        sa.select(alert_acks)
        .where(a.fingerprint == fingerprint)
        .order_by(a.id.desc())
        .limit(history)
    )
    out["acks"] = [ack_history_view(r._mapping) for r in acks]
    m = row._mapping
    e = alert_escalations.c
    steps = await conn.execute(
        sa.select(alert_escalations)
        .where(e.fingerprint == fingerprint)
        .order_by(e.id.desc())
        .limit(history)
    )
    out["escalation"] = {
        # The open incident's clock, and when its next step is due (None: none left).
        "since": timestamp(m["escalation_since"]),
        "next_step_at": timestamp(m["next_escalation_at"]),
        "escalated_to": list(m["escalated_to"] or []),
        # Every step taken, newest first (earlier incidents too).
        "steps": [
            {
                "incident_key": s["incident_key"],
                "step": s["step"],
                "receiver": s["receiver"],
                "after_s": s["after_s"],
                "fired_at": timestamp(s["fired_at"]),
            }
            for s in (r._mapping for r in steps)
        ],
    }
    return out


def ack_history_view(m: Any) -> dict[str, Any]:
    """One row of an alert's ack history."""
    return {
        "id": m["id"],
        "occurrence": timestamp(m["occurrence"]),
        "action": m["action"],
        "by": m["actor"],
        "via": m["via"],
        "comment": m["comment"],
        "until": timestamp(m["until"]),
        "at": timestamp(m["at"]),
    }


async def list_notifications(
    conn: AsyncConnection,
    *,
    status: str | None,
    fingerprint: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    n = notifications.c
    query = sa.select(notifications)
    if status is not None:
        query = query.where(n.status == status)
    if fingerprint is not None:
        query = query.where(n.fingerprint == fingerprint)
    if cursor:
        last_id = decode_id_cursor(cursor)
        query = query.where(n.id < last_id)
    query = query.order_by(n.id.desc()).limit(limit + 1)
    rows = [r._mapping for r in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["id"]) if more and rows else None
    return [notification_view(r) for r in rows], next_cursor


async def get_notification(conn: AsyncConnection, notification_id: int) -> dict[str, Any] | None:
    row = (
        await conn.execute(sa.select(notifications).where(notifications.c.id == notification_id))
    ).first()
    if row is None:
        return None
    out = notification_view(row._mapping, with_payload=True)
    d = delivery_attempts.c
    attempts = await conn.execute(
        sa.select(delivery_attempts).where(d.notification_id == notification_id).order_by(d.id)
    )
    out["delivery_attempts"] = [attempt_view(m) for m in (r._mapping for r in attempts)]
    return out


async def outbox_counts(conn: AsyncConnection) -> dict[str, int]:
    n = notifications.c
    rows = await conn.execute(
        sa.select(n.status, sa.func.count())
        .where(n.status.in_([NS.PENDING.value, NS.IN_FLIGHT.value, NS.DEAD.value]))
        .group_by(n.status)
    )
    counts = {s.value: 0 for s in NS}
    counts.update({str(k): int(v) for k, v in rows})
    return counts


async def flapping_count(conn: AsyncConnection) -> int:
    query = sa.select(sa.func.count()).select_from(alerts).where(alerts.c.flapping.is_(True))
    return int((await conn.execute(query)).scalar_one())


async def alert_counts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(sa.select(alerts.c.status, sa.func.count()).group_by(alerts.c.status))
    return {str(k): int(v) for k, v in rows}


async def list_quarantine(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    q = quarantined_alerts.c
    rows = await conn.execute(sa.select(quarantined_alerts).order_by(q.id.desc()).limit(limit))
    return [
        {
            "id": m["id"],
            "received_at": timestamp(m["received_at"]),
            "source": m["source"],
            "group_key": m["group_key"],
            "reason": m["reason"],
            "alert": m["alert_json"],
        }
        for m in (r._mapping for r in rows)
    ]
