"""The ack of an occurrence as a state machine: each transition, one test.

The same cases are the table in docs/acknowledge.md. Every test starts from
a stored record, applies one event through the pure functions
(app/core/ack.py and the life cycle) and states the ack afterwards, the
history row written and what the reminders do.
"""

from datetime import timedelta

import pytest

from app.core import ack
from app.core.domain import AckAction, AlertRecord, NoticeKind
from app.core.lifecycle import on_alert, on_reminder, on_sweep
from tests.unit.test_lifecycle import (
    FP,
    NOW,
    OPTIONS,
    PARAMS,
    T0,
    T1,
    WEBHOOK,
    F,
    R,
    Rules,
    _replace,
    alert,
    stored,
)

HOUR = timedelta(hours=1)


def acked(rec: AlertRecord | None = None, *, until: timedelta | None = None) -> AlertRecord:
    base = rec or stored()
    out, row = ack.acknowledge(
        base,
        actor="alice",
        via="api",
        comment="looking",
        until=NOW + until if until else None,
        now=NOW,
    )
    assert row.action is AckAction.ACK and row.occurrence == base.starts_at
    return out


def test_ack_records_who_how_why_and_until() -> None:
    rec = acked(until=HOUR)
    assert (rec.ack_at, rec.ack_by, rec.ack_via, rec.ack_comment) == (
        NOW,
        "alice",
        "api",
        "looking",
    )
    assert rec.ack_until == NOW + HOUR
    assert ack.is_acked(rec, NOW) and ack.is_acked(rec, NOW + HOUR - timedelta(seconds=1))
    assert not ack.is_acked(rec, NOW + HOUR)
    assert not ack.is_acked(stored(), NOW)


def test_a_resolved_alert_cannot_be_acked_but_a_flapping_one_can() -> None:
    with pytest.raises(ack.NotAckable):
        acked(stored(status=R, incident_key=None))
    assert ack.is_acked(acked(stored(status=R, flapping=True)), NOW)


def test_ack_refuses_an_expiry_in_the_past_and_unknown_vias() -> None:
    with pytest.raises(ValueError):
        ack.acknowledge(stored(), actor="a", via="api", comment=None, until=NOW, now=NOW)
    with pytest.raises(ValueError):
        ack.acknowledge(stored(), actor="a", via="fax", comment=None, until=None, now=NOW)


def test_unack_clears_and_records_who() -> None:
    result = ack.unacknowledge(acked(), actor="bob", via="cli", now=NOW + HOUR)
    assert result is not None
    rec, row = result
    assert rec.ack_at is None and not ack.is_acked(rec, NOW + HOUR)
    assert (row.action, row.actor, row.via, row.comment) == (
        AckAction.UNACK,
        "bob",
        "cli",
        "looking",
    )
    assert ack.unacknowledge(stored(), actor="bob", via="cli", now=NOW) is None


def test_a_reminder_while_acked_is_silent_and_waits_for_the_expiry() -> None:
    rec = acked(stored(next_renotify_at=NOW), until=timedelta(minutes=20))
    step = on_reminder(rec, OPTIONS, NOW)
    assert step.notices == () and step.acks == ()
    # Due again when the ack runs out (20 min), not after the full interval.
    assert step.record.next_renotify_at == NOW + timedelta(minutes=20)
    assert step.record.renotify_count == rec.renotify_count
    # Without an expiry: the next reminder after the interval, silent again.
    step = on_reminder(acked(stored(next_renotify_at=NOW)), OPTIONS, NOW)
    assert step.notices == () and step.record.next_renotify_at == NOW + HOUR


def test_expiry_resumes_reminders_and_is_recorded_at_its_time() -> None:
    rec = acked(stored(next_renotify_at=NOW), until=timedelta(minutes=20))
    later = NOW + timedelta(minutes=20)
    step = on_reminder(rec, OPTIONS, later)
    assert [n.kind for n in step.notices] == [NoticeKind.REMINDER]
    assert step.record.ack_at is None and step.record.renotify_count == 1
    [row] = step.acks
    assert (row.action, row.at, row.actor) == (AckAction.EXPIRED, later, "alice")


def test_unack_resumes_reminders() -> None:
    result = ack.unacknowledge(acked(stored(next_renotify_at=NOW)), actor="a", via="api", now=NOW)
    assert result is not None
    step = on_reminder(result[0], OPTIONS, NOW)
    assert [n.kind for n in step.notices] == [NoticeKind.REMINDER]


def test_resolve_ends_the_ack() -> None:
    step = on_alert(acked(), alert(R, T0, T1), WEBHOOK, Rules(), NOW)
    assert step.record.status is R and step.record.ack_at is None
    [row] = step.acks
    assert (row.action, row.occurrence, row.comment) == (AckAction.ENDED, T0, "looking")


def test_a_new_occurrence_ends_the_ack() -> None:
    step = on_alert(acked(), alert(F, T1), WEBHOOK, Rules(), NOW)
    assert step.record.starts_at == T1 and step.record.ack_at is None
    assert [r.action for r in step.acks] == [AckAction.ENDED]


def test_a_duplicate_keeps_the_ack() -> None:
    step = on_alert(acked(), alert(F, T0), WEBHOOK, Rules(), NOW)
    assert step.record.ack_by == "alice" and step.acks == ()


def test_an_ack_that_ran_out_before_the_resolve_is_recorded_as_expired() -> None:
    rec = acked(until=timedelta(minutes=5))
    step = on_alert(rec, alert(R, T0, T1), WEBHOOK, Rules(), NOW + HOUR)
    [row] = step.acks
    assert (row.action, row.at) == (AckAction.EXPIRED, NOW + timedelta(minutes=5))


def test_flapping_keeps_the_ack_until_the_flap_ends_resolved() -> None:
    # Acked while flapping: the flap's transitions are suppressed and keep it.
    flapping = stored(flap_score=4.0, flap_score_at=NOW, flapping=True, flap_started_at=T0)
    rec = acked(flapping)
    step = on_alert(rec, alert(R, T0, T1), WEBHOOK, Rules(), NOW)
    assert step.record.flapping and step.record.ack_by == "alice" and step.acks == ()
    step = on_alert(step.record, alert(F, T1), WEBHOOK, Rules(), NOW)
    assert step.record.starts_at == T1 and step.record.ack_by == "alice" and step.acks == ()
    # The flap ends while firing: the ack stays with the incident it covers.
    calm = NOW + timedelta(hours=10)
    end = on_sweep(step.record, OPTIONS, calm)
    assert [n.kind for n in end.notices] == [NoticeKind.STABLE]
    assert end.record.ack_by == "alice" and end.acks == ()
    # Flapping again, then calm while resolved: the ack ends.
    resolved = _replace(rec, status=R, flap_score=PARAMS.enter_score, flap_score_at=NOW)
    end = on_sweep(resolved, OPTIONS, calm)
    assert not end.record.flapping and end.record.ack_at is None
    assert [r.action for r in end.acks] == [AckAction.ENDED]


def test_the_ack_that_starts_a_flap_is_kept() -> None:
    # An acked firing alert whose resolve makes it flap keeps the ack.
    rec = acked(stored(flap_score=2.5, flap_score_at=T1))
    step = on_alert(rec, alert(R, T0, T1), WEBHOOK, Rules(), NOW)
    assert step.record.flapping
    assert step.record.ack_by == "alice" and step.acks == ()
    assert [n.kind for n in step.notices] == [NoticeKind.FLAPPING]
    assert step.record.fingerprint == FP


def test_every_test_the_state_table_names_exists() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "acknowledge.md").read_text()
    named = set(re.findall(r"`(test_[a-z_]+)`", doc))
    # Escalation and heartbeat rows name tests of their own files.
    sources = "".join(p.read_text() for p in (root / "tests").rglob("test_*.py"))
    assert named and {n for n in named if f"def {n}(" not in sources} == set()
    # Rows of the life-cycle table are named by their parametrized id.
    from tests.unit.test_lifecycle import ROWS

    cases = set(re.findall(r"`test_life_cycle_table\[(.+?)\]`", doc))
    assert cases and cases - {row[0] for row in ROWS} == set()
