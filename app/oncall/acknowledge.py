"""Acknowledging an alert: the one use case behind the API, the CLI, the console
and the one-click link.

An ack is one transaction: the alert row (locked, as ingest locks it), a row
of its ack history, the audit entry, and one outbox row per destination
that must hear of it — every PagerDuty or Opsgenie integration that was
sent a trigger for the incident (``event_action: acknowledge`` with the
same dedup_key; a receiver escalated to, with the key of its own
incident), and every integration that keeps its message up to date
(``update_message``), including the message of the alert's group
(``grouping: group``), edited to show the group with the ack. Those rows
share their destination's ordering key, so each is delivered after the
trigger it acknowledges.

An un-ack clears the ack and records it; PagerDuty and Opsgenie have no
"un-acknowledge", so they hear nothing: alertrelay's reminders and
escalation steps resume (a reminder is a trigger on the same dedup_key,
which PagerDuty logs on the incident; the incident itself stays
acknowledged there until PagerDuty's own acknowledgement timeout, if the
service has one).
"""

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from app.config.compiled import CompiledConfig, Integration
from app.core import ack
from app.core.domain import (
    AlertRecord,
    NoticeKind,
    NotificationRow,
    integration_key,
    isoformat,
)
from app.core.fanout import escalated_rows, notice_payload, rows_for, would_send
from app.core.grouping import group_row, is_grouped, message_key
from app.core.notices import Notice, incident_key
from app.ops.metrics import Metrics
from app.store import acks, audit, groups
from app.store.alerts import AlertChanges, AlertUnit
from app.store.engine import Database


class AckStatus(enum.StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"  # no alert with that fingerprint
    NOT_FIRING = "not_firing"  # resolved and not flapping: nothing to acknowledge
    OTHER_OCCURRENCE = "other_occurrence"  # a link for an occurrence that is over
    NOT_ACKED = "not_acked"  # un-ack of an alert with no ack in force


@dataclass(frozen=True)
class AckResult:
    status: AckStatus
    record: AlertRecord | None = None
    notifications: int = 0  # outbox rows queued


def covers(record: AlertRecord, occurrence: datetime) -> bool:
    """Does a link made for ``occurrence`` still name the alert's current incident?

    Its own occurrence, or, while the alert flaps, any occurrence of the
    incident the flap holds open (a flap re-fires with new startsAt values
    but is one incident).
    """
    if occurrence == record.starts_at:
        return True
    return record.flapping and record.incident_key == incident_key(record.fingerprint, occurrence)


def _notice(kind: NoticeKind, rec: AlertRecord, now: datetime) -> Notice:
    key = rec.incident_key or incident_key(rec.fingerprint, rec.starts_at)
    return Notice(
        kind,
        rec.status,
        rec.starts_at,
        key,
        f"{kind}|{isoformat(rec.starts_at)}|{isoformat(now)}",
        rec.flap_score,
    )


async def _queue(
    unit: AlertUnit,
    changes: AlertChanges,
    kind: NoticeKind,
    rec: AlertRecord,
    runtime: CompiledConfig,
    now: datetime,
) -> int:
    notice = _notice(kind, rec, now)
    told = await acks.told_of_incident(unit.conn, rec.fingerprint, notice.dedup_key)
    integrations: list[Integration] = []
    for receiver, name, index in told:
        found = runtime.integrations.get(integration_key(receiver, name, index))
        if found is not None and found.name == name:
            integrations.append(found)
    payload = notice_payload(rec, notice, now)
    rows = rows_for(rec, notice, payload, integrations, runtime, now)
    # Receivers escalated to have incidents of their own: acknowledged too.
    escalated = replace(notice, escalated_to=rec.escalated_to)
    rows += escalated_rows(rec, escalated, payload, runtime, now)
    rows += await _group_rows(unit, notice, rec, runtime, now)
    changes.notifications.extend(rows)
    return len(rows)


async def _group_rows(
    unit: AlertUnit, notice: Notice, rec: AlertRecord, runtime: CompiledConfig, now: datetime
) -> list[NotificationRow]:
    """An edit of each kept group message (``grouping: group`` with
    ``update_message``) of the group's current occurrence that announced or
    listed the alert: the group as it is now, the alert's line saying who
    acknowledged it. A group row like any other (same message key, same
    ordering key), so it is delivered after the group's earlier messages and
    never shows an older state over a newer one. Grouped destinations that
    cannot edit hear nothing: a new message for one ack would be noise."""
    if not rec.group_key:
        return []
    told = await acks.group_messages_of(unit.conn, rec.fingerprint)
    if not told:
        return []
    state = (await groups.load_states(unit.conn, unit.dialect, [rec.group_key])).get(rec.group_key)
    if state is None or state.occurrence is None:
        return []
    members = (await groups.load_members(unit.conn, [rec.group_key])).get(rec.group_key, {})
    members = {**members, rec.fingerprint: rec}
    rows: list[NotificationRow] = []
    seen: set[str] = set()
    for receiver, name, index, key in told:
        found = runtime.integrations.get(integration_key(receiver, name, index))
        if (
            found is None
            or found.key in seen
            or not is_grouped(found, rec)
            or would_send(notice.kind, found) is not None
            or key != message_key(found, state.group_key, state.occurrence)
        ):
            continue  # another occurrence's message, or a destination that cannot edit
        seen.add(found.key)
        rows.append(
            group_row(
                found, {rec.fingerprint: notice}, state, members, runtime, now, source=rec.source
            )
        )
    return rows


async def acknowledge(
    db: Database,
    runtime: CompiledConfig,
    fingerprint: str,
    now: datetime,
    *,
    actor: str,
    via: str,
    comment: str | None = None,
    duration: timedelta | None = None,
    occurrence: datetime | None = None,
    receiver: str | None = None,
    credential: str | None = None,
    metrics: Metrics | None = None,
) -> AckResult:
    """Acknowledge the alert's current occurrence (or, from a link, the one it names).

    ``occurrence`` (links only) must still be the alert's current one:
    otherwise the answer is :attr:`AckStatus.OTHER_OCCURRENCE`, and for a
    resolved alert :attr:`AckStatus.NOT_FIRING`. ``receiver`` is the
    receiver whose message carried the link, for the audit log.
    ``actor`` is who the ack names; ``credential`` who the audit log names
    (the credential used, when it differs from ``actor``).
    """
    async with db.write() as conn:
        unit = AlertUnit(conn, db.kind)
        rec = (await unit.load([fingerprint])).get(fingerprint)
        if rec is None:
            result = AckResult(AckStatus.NOT_FOUND)
        elif occurrence is not None and not covers(rec, occurrence):
            result = AckResult(AckStatus.OTHER_OCCURRENCE, rec)
        elif not ack.ackable(rec):
            result = AckResult(AckStatus.NOT_FIRING, rec)
        else:
            until = now + duration if duration else None
            new, row = ack.acknowledge(
                rec, actor=actor, via=via, comment=comment, until=until, now=now
            )
            changes = AlertChanges(changed=[new], acks=[row])
            queued = await _queue(unit, changes, NoticeKind.ACK, new, runtime, now)
            await unit.write(changes)
            result = AckResult(AckStatus.DONE, new, queued)
        details: dict[str, object] = {"via": via}
        if result.status is AckStatus.DONE and result.record is not None:
            r = result.record
            details |= {
                "occurrence": isoformat(r.starts_at),
                "comment": r.ack_comment,
                "until": isoformat(r.ack_until) if r.ack_until else None,
                "notifications": result.notifications,
            }
        if receiver is not None:
            details["receiver"] = receiver
        if credential is not None and credential != actor:
            details["by"] = actor
        await audit.record(
            conn,
            at=now,
            actor=credential or actor,
            action=audit.Action.ACK,
            target=f"alert/{fingerprint[:32]}",
            outcome=result.status.value,
            details=details,
        )
    if metrics is not None and result.status is AckStatus.DONE:
        metrics.child(metrics.acks, via).inc()
    return result


async def unacknowledge(
    db: Database,
    runtime: CompiledConfig,
    fingerprint: str,
    now: datetime,
    *,
    actor: str,
    via: str,
    credential: str | None = None,
) -> AckResult:
    """Take back the ack in force; reminders and escalation resume."""
    async with db.write() as conn:
        unit = AlertUnit(conn, db.kind)
        rec = (await unit.load([fingerprint])).get(fingerprint)
        if rec is None:
            result = AckResult(AckStatus.NOT_FOUND)
        else:
            taken = ack.unacknowledge(rec, actor=actor, via=via, now=now)
            if taken is None:
                result = AckResult(AckStatus.NOT_ACKED, rec)
            else:
                new, row = taken
                changes = AlertChanges(changed=[new], acks=[row])
                queued = await _queue(unit, changes, NoticeKind.UNACK, new, runtime, now)
                await unit.write(changes)
                result = AckResult(AckStatus.DONE, new, queued)
        details = {"via": via} | (
            {"by": actor} if credential is not None and credential != actor else {}
        )
        await audit.record(
            conn,
            at=now,
            actor=credential or actor,
            action=audit.Action.UNACK,
            target=f"alert/{fingerprint[:32]}",
            outcome=result.status.value,
            details=details,
        )
    return result
