"""Heartbeat decisions as a table: (state, now) → missing, back or nothing."""

from datetime import UTC, datetime, timedelta

import pytest

from app.core.domain import Status
from app.core.fingerprint import fingerprint
from app.core.heartbeats import (
    Change,
    Heartbeat,
    HeartbeatState,
    check,
    labels,
    proven,
    unwatched,
)
from app.core.matchers import parse_matchers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HB = Heartbeat("prod", tuple(parse_matchers('alertname="Watchdog", cluster="prod"')), 600)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("name", "state", "now", "change", "starts"),
    [
        ("never seen, within the interval", HeartbeatState("prod", T0), at(9), Change.NONE, None),
        ("never seen for the interval", HeartbeatState("prod", T0), at(10), Change.MISSING, at(10)),
        (
            "seen, fresh",
            HeartbeatState("prod", T0, last_seen=at(5)),
            at(14),
            Change.NONE,
            None,
        ),
        (
            "seen, then silent for the interval: missing since last seen + interval",
            HeartbeatState("prod", T0, last_seen=at(5)),
            at(60),
            Change.MISSING,
            at(15),
        ),
        (
            "missing, still silent",
            HeartbeatState("prod", T0, at(5), True, at(15)),
            at(90),
            Change.NONE,
            None,
        ),
        (
            "missing, proof came back: resolves the same occurrence",
            HeartbeatState("prod", T0, at(89), True, at(15)),
            at(90),
            Change.BACK,
            at(15),
        ),
    ],
)
def test_check(
    name: str, state: HeartbeatState, now: datetime, change: Change, starts: datetime | None
) -> None:
    verdict = check(HB, state, now)
    assert verdict.change is change
    if starts is None:
        assert verdict.alert is None and verdict.state == state
        return
    assert verdict.alert is not None
    assert verdict.alert.starts_at == starts
    assert verdict.alert.labels == labels("prod")
    assert verdict.alert.fingerprint == fingerprint(labels("prod"))
    if change is Change.MISSING:
        assert verdict.alert.status is Status.FIRING and verdict.state.missing
        assert verdict.state.missing_since == starts
    else:
        assert verdict.alert.status is Status.RESOLVED and not verdict.state.missing
        assert verdict.alert.ends_at == state.last_seen


def test_labels_and_summary() -> None:
    assert labels("prod") == {
        "alertname": "HeartbeatMissing",
        "heartbeat": "prod",
        "severity": "critical",
    }
    alert = check(HB, HeartbeatState("prod", T0, last_seen=at(1)), at(30)).alert
    assert alert is not None
    assert alert.annotations["summary"] == (
        "No heartbeat 'prod' for 10m (last seen 2026-03-01T12:01:00Z)"
    )


def test_proven_by_firing_labels_only_when_every_matcher_matches() -> None:
    staging = Heartbeat("staging", tuple(parse_matchers('alertname="Watchdog"')), 60)
    watchdog = {"alertname": "Watchdog", "cluster": "prod"}
    assert proven([HB, staging], [watchdog]) == {"prod", "staging"}
    assert proven([HB, staging], [{**watchdog, "cluster": "dev"}]) == {"staging"}
    assert proven([HB], [{"alertname": "Other"}]) == set()
    assert proven([], [watchdog]) == set()


def test_an_unwatched_heartbeat_resolves_what_it_left_firing() -> None:
    missing = HeartbeatState("gone", T0, at(1), True, at(11))
    verdict = unwatched(missing, at(30))
    assert verdict.change is Change.BACK and verdict.alert is not None
    assert verdict.alert.status is Status.RESOLVED and verdict.alert.starts_at == at(11)
    assert unwatched(HeartbeatState("gone", T0), at(30)).change is Change.NONE
