"""Acknowledgement of an alert's occurrence, as pure functions over records.

An ack says "someone is on it": it belongs to the occurrence that fires when
it is given, records who, how (``via``: api, cli, link, console), why and
until when, and while it holds, reminders (and escalation steps) of that
occurrence stay quiet. It ends in one of four ways, each a row of the
alert's ack history (:class:`~app.core.domain.AckRow`):

* ``unack``: someone takes it back; reminders resume at their schedule;
* ``expired``: its ``for`` ran out while the alert still fired; reminders
  resume (the next one is due at the expiry, see
  :func:`app.core.lifecycle.on_reminder`);
* ``ended``: the alert resolved, or a new occurrence began.

Flapping: an ack covers the incident while the alert flaps. The
transitions of a flap are suppressed and the flap holds one incident open
(:mod:`app.core.notices`), so they do not end the ack; the ack ends when
the alert is resolved and no longer flaps, or when a new occurrence begins
outside a flap. Flapping and stable notices still go out: they report a
change of state, not a reminder.

Expiry is recorded lazily, at the next event that looks at the alert (a
reminder, a sweep, an arrival, an API read does not write), with the time
it actually expired: :func:`is_acked` is what every decision asks.
"""

from dataclasses import replace
from datetime import datetime
from typing import Any

from app.core.domain import AckAction, AckRow, AlertRecord, Status

VIAS = ("api", "cli", "link", "console")
# The history's ``via`` for ends the life cycle decides (expiry, resolve).
VIA_LIFECYCLE = "lifecycle"
MAX_COMMENT = 1000
MAX_ACTOR = 255


class NotAckable(Exception):
    """The alert does not fire or flap: there is nothing to acknowledge."""


def is_acked(record: AlertRecord, now: datetime) -> bool:
    """True while ``record``'s current occurrence has an ack that has not expired."""
    return record.ack_at is not None and (record.ack_until is None or record.ack_until > now)


def ack_expired(record: AlertRecord, now: datetime) -> bool:
    """An ack is stored but its ``for`` has run out (not yet recorded as expired)."""
    return record.ack_at is not None and record.ack_until is not None and record.ack_until <= now


def ackable(record: AlertRecord) -> bool:
    """Only a firing or flapping alert can be acknowledged."""
    return record.status is Status.FIRING or record.flapping


_CLEARED: dict[str, Any] = {
    "ack_at": None,
    "ack_by": None,
    "ack_via": None,
    "ack_comment": None,
    "ack_until": None,
}


def _row(record: AlertRecord, action: AckAction, actor: str, via: str, at: datetime) -> AckRow:
    return AckRow(
        fingerprint=record.fingerprint,
        occurrence=record.starts_at,
        action=action,
        actor=actor,
        via=via,
        comment=record.ack_comment if action is not AckAction.ACK else None,
        until=record.ack_until,
        at=at,
    )


def acknowledge(
    record: AlertRecord,
    *,
    actor: str,
    via: str,
    comment: str | None,
    until: datetime | None,
    now: datetime,
) -> tuple[AlertRecord, AckRow]:
    """Acknowledge ``record``'s occurrence (a second ack replaces the first).

    Raises :class:`NotAckable` when the alert neither fires nor flaps.
    """
    if not ackable(record):
        raise NotAckable(record.fingerprint)
    if via not in VIAS:
        raise ValueError(f"unknown via {via!r}")
    if until is not None and until <= now:
        raise ValueError("the ack would expire before it starts")
    actor = actor.strip()[:MAX_ACTOR] or via
    text = (comment or "").strip()[:MAX_COMMENT] or None
    rec = replace(record, ack_at=now, ack_by=actor, ack_via=via, ack_comment=text, ack_until=until)
    row = AckRow(
        fingerprint=record.fingerprint,
        occurrence=record.starts_at,
        action=AckAction.ACK,
        actor=actor,
        via=via,
        comment=text,
        until=until,
        at=now,
    )
    return rec, row


def unacknowledge(
    record: AlertRecord, *, actor: str, via: str, now: datetime
) -> tuple[AlertRecord, AckRow] | None:
    """Take the ack back; None when there is no ack in force to take back."""
    if not is_acked(record, now):
        return None
    row = _row(record, AckAction.UNACK, actor.strip()[:MAX_ACTOR] or via, via, now)
    return replace(record, **_CLEARED), row


def expire(record: AlertRecord, now: datetime) -> tuple[AlertRecord, AckRow] | None:
    """Record an ack whose ``for`` ran out, at the time it ran out; else None."""
    if not ack_expired(record, now):
        return None
    assert record.ack_until is not None
    row = _row(record, AckAction.EXPIRED, record.ack_by or "", VIA_LIFECYCLE, record.ack_until)
    return replace(record, **_CLEARED), row


def after_arrival(
    before: AlertRecord, after: AlertRecord, now: datetime
) -> tuple[AlertRecord, AckRow | None]:
    """What an arrival that moved the alert (``before`` → ``after``) does to its ack.

    A resolve or a new occurrence ends it, unless the alert flaps (see the
    module docstring); an ack that had already run out is recorded as
    expired instead.
    """
    if before.ack_at is None:
        return after, None
    expired = expire(before, now)
    if expired is not None:
        return replace(after, **_CLEARED), expired[1]
    ends = not after.flapping and (
        after.status is Status.RESOLVED or after.starts_at != before.starts_at
    )
    if not ends:
        return after, None
    row = _row(before, AckAction.ENDED, before.ack_by or "", VIA_LIFECYCLE, now)
    return replace(after, **_CLEARED), row


def after_sweep(
    before: AlertRecord, after: AlertRecord, now: datetime
) -> tuple[AlertRecord, AckRow | None]:
    """A flap that ended with the alert resolved ends its ack; one that ran out expires."""
    if before.ack_at is None:
        return after, None
    expired = expire(before, now)
    if expired is not None:
        return replace(after, **_CLEARED), expired[1]
    if after.flapping or after.status is Status.FIRING:
        return after, None
    row = _row(before, AckAction.ENDED, before.ack_by or "", VIA_LIFECYCLE, now)
    return replace(after, **_CLEARED), row
