"""Escalation: who else hears about an alert nobody acknowledged.

A route's ``escalate`` steps each name a receiver and a delay. The clock of
an alert starts when its downstream incident opens (the occurrence that
opened it began then, or now if that timestamp is in the future) and runs
while the incident is open: an alert that flaps keeps its incident open, so
flapping counts as firing and its clock does not restart at each re-fire.
A step is due when the clock has run ``after`` and the alert is not
acknowledged; each receiver is told at most once per incident, and every
receiver told gets the resolve that closes it, under its own incident key
so that a PagerDuty service of its own opens and closes its own incident.

Pure: the sweeper loads the due alerts, :func:`app.core.lifecycle.on_escalation`
decides with these helpers, and the store records each step once.
"""

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_KEY_LIMIT = 255


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after_s: float
    receiver: str


@dataclass(frozen=True, slots=True)
class EscalationInfo:
    """What an escalation notice says beyond the alert itself."""

    step: int  # index in the alert's merged steps
    receiver: str
    after_s: float
    firing_for_s: float  # since the incident's clock started
    notified: tuple[str, ...]  # receivers told before this step
    flapping: bool


def merge_steps(lists: Iterable[Sequence[EscalationStep]]) -> tuple[EscalationStep, ...]:
    """The steps of every route an alert matched (``continue: true`` may match
    several): each receiver once, at its earliest delay, in time order."""
    earliest: dict[str, float] = {}
    for steps in lists:
        for step in steps:
            if step.receiver not in earliest or step.after_s < earliest[step.receiver]:
                earliest[step.receiver] = step.after_s
    ordered = sorted(earliest.items(), key=lambda item: (item[1], item[0]))
    return tuple(EscalationStep(after, receiver) for receiver, after in ordered)


def clock_start(occurrence: datetime, now: datetime) -> datetime:
    """When an incident's escalation clock starts: the occurrence's start, but
    never later than now (a sender clock ahead must not postpone a page)."""
    return min(occurrence, now)


def next_due(
    since: datetime, steps: Sequence[EscalationStep], told: Collection[str]
) -> datetime | None:
    """When the next step not yet taken falls due; None when none is left."""
    pending = [s.after_s for s in steps if s.receiver not in told]
    return since + timedelta(seconds=min(pending)) if pending else None


def due_steps(
    since: datetime, steps: Sequence[EscalationStep], told: Collection[str], now: datetime
) -> list[tuple[int, EscalationStep]]:
    """Steps due at ``now`` and not taken yet, with their index, in order."""
    return [
        (i, s)
        for i, s in enumerate(steps)
        if s.receiver not in told and since + timedelta(seconds=s.after_s) <= now
    ]


def escalation_key(incident_key: str, receiver: str) -> str:
    """The incident key a receiver escalated to sees: its own, derived from the
    alert's, the same on every replica and for the trigger and the resolve."""
    key = f"{incident_key}/escalated/{receiver}"
    if len(key) <= _KEY_LIMIT:
        return key
    digest = hashlib.sha256(receiver.encode()).hexdigest()[:16]
    return f"{incident_key}/escalated/{digest}"[:_KEY_LIMIT]


def format_duration(seconds: float) -> str:
    """``15m``, ``1h 5m``, ``2d 3h``, ``40s``: how long, as people say it."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2]) or "0s"
