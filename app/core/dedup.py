"""Is an incoming alert new, a duplicate, stale, or a real transition?

An alert's *position* is (occurrence, phase): the occurrence is its
``startsAt`` and the phase orders firing before resolved. Alertmanager's
repeats, retries and HA double sends carry the position already stored
(duplicates); late deliveries carry an earlier one (stale) and never move
state backwards. A later position yields the *edges* between the two: the
transitions the alert went through, some of them implied because
Alertmanager never showed them (a new occurrence means the previous one
resolved; an occurrence seen only as resolved must have fired first).
"""

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.domain import Alert, Status


class Verdict(enum.StrEnum):
    NEW = "new"
    TRANSITION = "transition"
    DUPLICATE = "duplicate"
    STALE = "stale"


DEFAULT_MAX_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Position:
    status: Status
    occurrence: datetime
    # Set when the occurrence's startsAt was beyond the allowed skew: the
    # server time it is ordered at instead.
    ordered_at: datetime | None = None


def is_skewed(value: datetime | None, now: datetime, max_skew: timedelta) -> bool:
    return value is not None and value > now + max_skew


def _supersedes(stored: Position, starts_at: datetime, skewed: bool, now: datetime) -> bool:
    """Does an event of another occurrence than the stored one come after it?"""
    if stored.ordered_at is None:
        # Honest against honest: the later startsAt is the later occurrence;
        # a skewed event counts as happening now.
        return (now if skewed else starts_at) > stored.occurrence
    if not skewed:
        return True  # a real event always supersedes a skewed occurrence
    return now >= stored.ordered_at


@dataclass(frozen=True, slots=True)
class Edge:
    """One transition of the alert.

    ``implied`` edges were inferred, not received. An implied firing edge is
    never notified (the alert is already resolved); an implied resolve is,
    because it closes what the previous occurrence opened downstream.
    """

    occurrence: datetime
    from_status: Status | None
    to_status: Status
    at: datetime  # when it happened, from the alert's own timestamps
    implied: bool = False

    @property
    def notify(self) -> bool:
        return not (self.implied and self.to_status is Status.FIRING)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    edges: tuple[Edge, ...] = ()


def _resolved_at(alert: Alert, now: datetime) -> datetime:
    ends = alert.ends_at if alert.ends_at is not None else now
    return min(max(ends, alert.starts_at), now)


def decide(
    stored: Position | None,
    alert: Alert,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Decision:
    """Compare ``alert`` with the stored position; ``now`` bounds event times.

    Times in the future (a skewed sender clock) are clamped to ``now`` so
    they cannot inflate flap scores, and order as described in the module
    docstring.
    """
    fired_at = min(alert.starts_at, now)
    if stored is None:
        if alert.status is Status.FIRING:
            return Decision(Verdict.NEW, (Edge(alert.starts_at, None, Status.FIRING, fired_at),))
        return Decision(
            Verdict.NEW,
            (
                Edge(alert.starts_at, None, Status.FIRING, fired_at, implied=True),
                Edge(alert.starts_at, Status.FIRING, Status.RESOLVED, _resolved_at(alert, now)),
            ),
        )
    same = alert.starts_at == stored.occurrence
    if same and alert.status is stored.status:
        return Decision(Verdict.DUPLICATE)
    if same and alert.status is Status.FIRING:
        return Decision(Verdict.STALE)  # a late firing of an occurrence already resolved
    skewed = is_skewed(alert.starts_at, now, max_skew)
    if not same and not _supersedes(stored, alert.starts_at, skewed, now):
        return Decision(Verdict.STALE)

    edges: list[Edge] = []
    current = stored.status
    if not same:
        if current is Status.FIRING:
            # The stored occurrence must have ended before the new one began.
            edges.append(
                Edge(stored.occurrence, Status.FIRING, Status.RESOLVED, fired_at, implied=True)
            )
            current = Status.RESOLVED
        implied = alert.status is Status.RESOLVED
        edges.append(Edge(alert.starts_at, current, Status.FIRING, fired_at, implied=implied))
        current = Status.FIRING
    if alert.status is Status.RESOLVED:
        edges.append(Edge(alert.starts_at, current, Status.RESOLVED, _resolved_at(alert, now)))
    return Decision(Verdict.TRANSITION, tuple(edges))
