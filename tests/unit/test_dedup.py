"""dedup.decide as a table: new, duplicate, stale, transition, and implied edges."""

from datetime import UTC, datetime, timedelta

import pytest

from app.core.dedup import Position, Verdict, decide
from app.core.domain import Alert, Status

F, R = Status.FIRING, Status.RESOLVED
S1 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
S2 = S1 + timedelta(minutes=10)
S0 = S1 - timedelta(minutes=10)
NOW = S1 + timedelta(hours=1)


def alert(status: Status, starts: datetime, ends: datetime | None = None) -> Alert:
    return Alert("fp", {"a": "b"}, {}, status, starts, ends if status is R else None)


def edges(d):  # type: ignore[no-untyped-def]
    return [(e.occurrence, e.from_status, e.to_status, e.implied, e.notify) for e in d.edges]


@pytest.mark.parametrize(
    ("stored", "incoming", "verdict", "expected_edges"),
    [
        (None, alert(F, S1), Verdict.NEW, [(S1, None, F, False, True)]),
        # Resolved, never seen firing: the firing is implied (not notified), the resolve notifies.
        (None, alert(R, S1), Verdict.NEW, [(S1, None, F, True, False), (S1, F, R, False, True)]),
        (Position(F, S1), alert(F, S1), Verdict.DUPLICATE, []),
        (Position(R, S1), alert(R, S1), Verdict.DUPLICATE, []),
        (Position(F, S1), alert(R, S1), Verdict.TRANSITION, [(S1, F, R, False, True)]),
        # A late firing for an occurrence already resolved never moves state back.
        (Position(R, S1), alert(F, S1), Verdict.STALE, []),
        # A late resolve for an older occurrence is stale too.
        (Position(F, S2), alert(R, S1), Verdict.STALE, []),
        (Position(F, S2), alert(F, S1), Verdict.STALE, []),
        (Position(R, S1), alert(F, S2), Verdict.TRANSITION, [(S2, R, F, False, True)]),
        # A new occurrence while firing: the previous one is resolved first (closes its incident).
        (
            Position(F, S1),
            alert(F, S2),
            Verdict.TRANSITION,
            [(S1, F, R, True, True), (S2, R, F, False, True)],
        ),
        (
            Position(F, S1),
            alert(R, S2),
            Verdict.TRANSITION,
            [(S1, F, R, True, True), (S2, R, F, True, False), (S2, F, R, False, True)],
        ),
        (
            Position(R, S1),
            alert(R, S2),
            Verdict.TRANSITION,
            [(S2, R, F, True, False), (S2, F, R, False, True)],
        ),
        (Position(R, S2), alert(R, S1), Verdict.STALE, []),
        (Position(F, S0), alert(F, S0), Verdict.DUPLICATE, []),
    ],
)
def test_decide_table(stored, incoming, verdict, expected_edges) -> None:  # type: ignore[no-untyped-def]
    d = decide(stored, incoming, NOW)
    assert d.verdict is verdict
    assert edges(d) == expected_edges


def test_event_times_come_from_the_alert_and_are_clamped_to_now() -> None:
    ends = S1 + timedelta(minutes=3)
    d = decide(Position(F, S1), alert(R, S1, ends), NOW)
    assert d.edges[0].at == ends
    future = NOW + timedelta(days=365)
    d = decide(None, alert(F, future), NOW)
    assert d.edges[0].at == NOW  # a skewed sender clock cannot date an edge in the future
    d = decide(Position(F, S1), alert(R, S1, None), NOW)
    assert d.edges[0].at == NOW  # no endsAt: the resolve happened by now


def test_end_before_start_is_clamped_to_start() -> None:
    d = decide(Position(F, S1), alert(R, S1, S1 - timedelta(hours=1)), NOW)
    assert d.edges[0].at == S1
