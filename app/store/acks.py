"""Reads for acknowledgements: who was told of an incident.

The ack rows themselves are written with the alert they belong to
(:class:`app.store.alerts.AlertUnit`), in the transaction of the event that
made them; the alert API shows the history (``queries.get_alert``).
"""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import NoticeKind
from app.store.tables import notification_alerts, notifications

# Notices that open or keep open a downstream incident (a trigger, for
# PagerDuty): the destinations that got one for an incident are told of its ack.
_OPENING = (
    NoticeKind.FIRING.value,
    NoticeKind.REMINDER.value,
    NoticeKind.FLAPPING.value,
    NoticeKind.STABLE.value,
)


async def told_of_incident(
    conn: AsyncConnection, fingerprint: str, dedup_key: str
) -> list[tuple[str, str, int]]:
    """(receiver, integration, index) of every destination queued a notice that
    opened the incident ``dedup_key`` of this alert, in a stable order."""
    n = notifications.c
    query = (
        sa.select(n.receiver, n.integration, n.integration_index)
        .where(
            n.fingerprint == fingerprint,
            n.dedup_key == dedup_key,
            n.kind.in_(_OPENING),
        )
        .distinct()
        .order_by(n.receiver, n.integration, n.integration_index)
    )
    return [(r[0], r[1], int(r[2])) for r in await conn.execute(query)]


async def group_messages_of(
    conn: AsyncConnection, fingerprint: str
) -> list[tuple[str, str, int, str]]:
    """(receiver, integration, index, message_key) of every group message that
    changed or listed this alert (``notification_alerts``), in a stable order."""
    n = notifications.c
    link = notification_alerts.c
    query = (
        sa.select(n.receiver, n.integration, n.integration_index, n.message_key)
        .select_from(notification_alerts.join(notifications, n.id == link.notification_id))
        .where(link.fingerprint == fingerprint, n.message_key.is_not(None))
        .distinct()
        .order_by(n.receiver, n.integration, n.integration_index, n.message_key)
    )
    return [(r[0], r[1], int(r[2]), str(r[3])) for r in await conn.execute(query)]
