"""Heartbeats: a dead man's switch on the pipeline that sends alerts.

Alertmanager repeats an always-firing alert (Prometheus' ``Watchdog``); each
webhook carrying a firing copy that matches a heartbeat's matchers is proof
of life. When none has come for the heartbeat's ``interval`` (counted from
the last proof, or from when alertrelay began watching a heartbeat never
seen), a synthetic alert ``HeartbeatMissing`` fires; when proof comes again
it resolves. The synthetic alert goes through ingest like any other: routing,
runbooks, dedup, flapping, delivery, acknowledgement and escalation apply.

Its occurrence is the moment the heartbeat went missing (last proof plus
interval): every replica computes the same one, so a second replica's copy is
a duplicate, and a restart after a long outage still fires with the right
start time.
"""

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.domain import Alert, Status, content_hash, isoformat
from app.core.escalation import format_duration
from app.core.fingerprint import fingerprint
from app.core.matchers import Matcher, matches_all

ALERTNAME = "HeartbeatMissing"
LABEL = "heartbeat"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str
    matchers: tuple[Matcher, ...]
    interval_s: float
    receiver: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatState:
    """A heartbeat's row: since when it is watched, its last proof, missing or not."""

    name: str
    watched_since: datetime
    last_seen: datetime | None = None
    missing: bool = False
    missing_since: datetime | None = None

    @property
    def reference(self) -> datetime:
        """What its age counts from: the last proof, else since it is watched."""
        return self.last_seen or self.watched_since

    def age_s(self, now: datetime) -> float:
        return max((now - self.reference).total_seconds(), 0.0)


class Change(enum.Enum):
    NONE = "none"
    MISSING = "missing"  # HeartbeatMissing starts firing
    BACK = "back"  # it resolves


@dataclass(frozen=True, slots=True)
class Verdict:
    change: Change
    state: HeartbeatState
    alert: Alert | None = None  # the synthetic alert to ingest


def proven(
    heartbeats: Iterable[Heartbeat], labels_of_firing: Iterable[Mapping[str, str]]
) -> set[str]:
    """Names of the heartbeats some firing alert's labels prove alive.

    Runs over every alert of an ingest batch: it stops as soon as every
    heartbeat is proven, and looks only at the heartbeats not proven yet."""
    pending = list(heartbeats)
    found: set[str] = set()
    if not pending:
        return found
    for labels in labels_of_firing:
        hits = [hb for hb in pending if matches_all(hb.matchers, labels)]
        if hits:
            found.update(hb.name for hb in hits)
            pending = [hb for hb in pending if hb.name not in found]
            if not pending:
                break
    return found


def labels(name: str) -> dict[str, str]:
    return {"alertname": ALERTNAME, LABEL: name, "severity": "critical"}


def synthetic_alert(
    hb: Heartbeat,
    status: Status,
    starts_at: datetime,
    ends_at: datetime | None,
    last_seen: datetime | None,
) -> Alert:
    lb = labels(hb.name)
    interval = timedelta(seconds=hb.interval_s)
    seen = f"last seen {isoformat(last_seen)}" if last_seen else "never seen"
    annotations = {
        "summary": f"No heartbeat {hb.name!r} for {_human(interval)} ({seen})",
        "description": (
            f"No alert matching {', '.join(str(m) for m in hb.matchers)} has arrived for "
            f"{_human(interval)}: the Alertmanager or Prometheus that sends it may be down, "
            "or cannot reach alertrelay."
        ),
    }
    return Alert(
        fingerprint=fingerprint(lb),
        labels=lb,
        annotations=annotations,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url="",
        content_hash=content_hash(annotations, ""),
    )


def check(hb: Heartbeat, state: HeartbeatState, now: datetime) -> Verdict:
    """What the sweeper does about one heartbeat at ``now``."""
    interval = timedelta(seconds=hb.interval_s)
    due = state.reference + interval
    if not state.missing and now >= due:
        new = HeartbeatState(state.name, state.watched_since, state.last_seen, True, due)
        alert = synthetic_alert(hb, Status.FIRING, due, None, state.last_seen)
        return Verdict(Change.MISSING, new, alert)
    if state.missing and now < due and state.missing_since is not None:
        # Proof of life came after it went missing: resolve the occurrence.
        new = HeartbeatState(state.name, state.watched_since, state.last_seen, False, None)
        ends = max(state.last_seen or now, state.missing_since)
        alert = synthetic_alert(hb, Status.RESOLVED, state.missing_since, ends, state.last_seen)
        return Verdict(Change.BACK, new, alert)
    return Verdict(Change.NONE, state)


def unwatched(state: HeartbeatState, now: datetime) -> Verdict:
    """A heartbeat no longer configured: resolve what it left firing."""
    if not state.missing or state.missing_since is None:
        return Verdict(Change.NONE, state)
    new = HeartbeatState(state.name, state.watched_since, state.last_seen, False, None)
    hb = Heartbeat(state.name, (), 0)
    alert = synthetic_alert(hb, Status.RESOLVED, state.missing_since, now, state.last_seen)
    return Verdict(Change.BACK, new, alert)


def _human(delta: timedelta) -> str:
    return format_duration(delta.total_seconds())
