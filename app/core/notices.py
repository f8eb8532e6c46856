"""What an alert's transitions mean for its receivers.

Pure planning between :mod:`app.core.dedup` (edges) and the outbox: which edges
notify, which are suppressed and why, when a flapping or stable notice goes
out, and which incident key each notice carries.

The *incident key* (PagerDuty's ``dedup_key``) names the downstream incident
that is open for the alert. A firing notice opens one keyed by fingerprint
and occurrence; a resolve closes the open one. While an alert
flaps, per-transition notices stop and the flapping notice holds one
incident open; the stable notice at the end triggers or resolves that same
key, so no incident stays open for a resolved alert and none is resolved
while the alert fires.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from app.core.dedup import Edge
from app.core.domain import NoticeKind, Status, isoformat
from app.core.escalation import EscalationInfo
from app.core.flapping import (
    FlapChange,
    FlapParams,
    FlapState,
    add_transition,
    evaluate,
    score_at,
    starts_flapping,
)

SUPPRESSED_FLAPPING = "flapping"
SUPPRESSED_IMPLIED = "implied"
# Below this decayed score an alert counts as calm: the next transition
# starts a new burst, and the burst's transition count starts again.
_CALM_SCORE = 0.5


def incident_key(fingerprint: str, occurrence: datetime) -> str:
    """Stable per fingerprint and occurrence: the same on every replica and replay."""
    return f"alertrelay/{fingerprint}/{_stamp(occurrence)}"


@lru_cache(maxsize=1024)
def _stamp(occurrence: datetime) -> str:
    # A big group's alerts share a handful of startsAt: strftime was 4% of
    # planning 10,000 new alerts (py-spy).
    return occurrence.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    status: Status  # the alert's state this notice reports
    occurrence: datetime
    dedup_key: str
    identity: str  # stable text that, with the integration, makes the idempotency key
    flap_score: float = 0.0
    transitions: int = 0  # transitions seen during the flap (flapping/stable notices)
    # An escalation notice: its step (it goes to that step's receiver only).
    escalation: EscalationInfo | None = None
    # A notice that closes the incident also goes to these receivers, which
    # were escalated to, each under its own key (app/core/escalation.py).
    escalated_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    edge: Edge
    suppressed: str | None  # None when it notified


@dataclass(slots=True)
class AlertNoticeState:
    """The per-alert fields planning reads and updates (stored on the alert row)."""

    status: Status
    occurrence: datetime
    incident_key: str | None
    flap: FlapState
    flap_started_at: datetime | None = None
    flap_transitions: int = 0  # transitions in the current burst


@dataclass(slots=True)
class Plan:
    records: list[TransitionRecord] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def _stable_notice(fp: str, state: AlertNoticeState) -> Notice:
    key = state.incident_key or incident_key(fp, state.occurrence)
    state.incident_key = key if state.status is Status.FIRING else None
    started = state.flap_started_at or state.occurrence
    return Notice(
        NoticeKind.STABLE,
        state.status,
        state.occurrence,
        key,
        f"stable|{isoformat(started)}",
        state.flap.score,
        state.flap_transitions,
    )


def plan_edges(
    fp: str,
    state: AlertNoticeState,
    edges: tuple[Edge, ...],
    params: FlapParams,
) -> Plan:
    """Apply ``edges`` to ``state`` (mutated) and return what to record and send.

    Starting to flap is decided at each transition's own time, right after it
    is counted; stopping only by the sweeper (:func:`plan_sweep`). So the
    order and timing in which webhooks arrive, repeated or not, cannot change
    when thresholds are crossed: only the transitions themselves do.
    """
    plan = Plan()
    for edge in edges:
        state.status = edge.to_status
        state.occurrence = max(state.occurrence, edge.occurrence)
        if score_at(state.flap, edge.at, params) < _CALM_SCORE:
            state.flap_transitions = 0
        state.flap_transitions += 1
        state.flap = add_transition(state.flap, edge.at, params)
        if starts_flapping(state.flap, edge.at, params):
            state.flap = FlapState(state.flap.score, state.flap.at, True)
            state.flap_started_at = edge.at
            key = state.incident_key or incident_key(fp, edge.occurrence)
            state.incident_key = key
            plan.records.append(TransitionRecord(edge, SUPPRESSED_FLAPPING))
            plan.notices.append(
                Notice(
                    NoticeKind.FLAPPING,
                    edge.to_status,
                    edge.occurrence,
                    key,
                    f"flapping|{isoformat(edge.occurrence)}|{edge.to_status}",
                    state.flap.score,
                    state.flap_transitions,
                )
            )
            continue
        if state.flap.flapping:
            plan.records.append(TransitionRecord(edge, SUPPRESSED_FLAPPING))
            continue
        if not edge.notify:
            plan.records.append(TransitionRecord(edge, SUPPRESSED_IMPLIED))
            continue
        key = state.incident_key or incident_key(fp, edge.occurrence)
        if edge.to_status is Status.FIRING:
            state.incident_key = key
            kind = NoticeKind.FIRING
        else:
            state.incident_key = None
            kind = NoticeKind.RESOLVED
        plan.records.append(TransitionRecord(edge, None))
        plan.notices.append(
            Notice(
                kind,
                edge.to_status,
                edge.occurrence,
                key,
                f"{kind}|{isoformat(edge.occurrence)}",
                state.flap.score,
            )
        )
    return plan


def plan_sweep(
    fp: str, state: AlertNoticeState, params: FlapParams, now: datetime
) -> Notice | None:
    """The sweeper's check: decay the score and end a flap that calmed down."""
    state.flap, change = evaluate(state.flap, now, params)
    if change is not FlapChange.STOPPED:
        return None
    notice = _stable_notice(fp, state)
    state.flap_started_at = None
    return notice


def plan_reminder(fp: str, state: AlertNoticeState, count: int) -> Notice | None:
    """A renotify reminder for an alert still firing and not flapping."""
    if state.status is not Status.FIRING or state.flap.flapping:
        return None
    key = state.incident_key or incident_key(fp, state.occurrence)
    state.incident_key = key
    return Notice(
        NoticeKind.REMINDER,
        Status.FIRING,
        state.occurrence,
        key,
        f"reminder|{isoformat(state.occurrence)}|{count}",
        state.flap.score,
    )
