"""An alert's whole life, as pure functions over frozen values.

Three events move an alert: a copy of it arrives from Alertmanager or
Grafana (:func:`on_alert`), the sweeper looks at a flapping alert
(:func:`on_sweep`), and a reminder falls due (:func:`on_reminder`). Each
takes the stored record, the options of the route the alert's labels reach
and ``now``, and returns a :class:`Step`: the new record, the transitions to
append to the history and the notices to send. Nothing is mutated and
nothing is read from outside, so ingest and the sweeper only load, call and
write, and the same inputs always give the same step.

The decisions themselves live in the modules called from here:
:mod:`app.core.dedup` (new, duplicate, stale, or which transitions),
:mod:`app.core.flapping` (the score) and :mod:`app.core.notices` (which
transitions notify, with which incident key).
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from app.core import ack
from app.core.dedup import DEFAULT_MAX_SKEW, Edge, Position, Verdict, decide, is_skewed
from app.core.domain import (
    AckRow,
    Alert,
    AlertRecord,
    NoticeKind,
    Status,
    TransitionRow,
    Webhook,
)
from app.core.escalation import (
    EscalationInfo,
    EscalationStep,
    clock_start,
    due_steps,
    escalation_key,
    merge_steps,
    next_due,
)
from app.core.flapping import FlapParams, FlapState
from app.core.notices import (
    AlertNoticeState,
    Notice,
    incident_key,
    plan_edges,
    plan_reminder,
    plan_sweep,
)
from app.core.routing import RouteResult
from app.core.runbooks import Runbook


@dataclass(frozen=True)
class RouteOptions:
    """What a route decides about the life of the alerts it matches."""

    flap: FlapParams
    renotify_s: float  # 0: no reminders
    escalate: tuple[EscalationStep, ...] = ()


class Rules(Protocol):
    """The compiled config as the life cycle sees it: routing and runbooks."""

    def route(self, labels: Mapping[str, str]) -> RouteResult[RouteOptions]: ...

    def runbook(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Runbook: ...


@dataclass(frozen=True, slots=True)
class Step:
    """What one event did to one alert."""

    record: AlertRecord
    # Arrivals: new, transition, duplicate or stale. Ticks: None.
    verdict: Verdict | None = None
    # False when only last_seen and the duplicate/stale counters moved (a
    # cheap write); True when the whole row must be written.
    changed: bool = True
    transitions: tuple[TransitionRow, ...] = ()
    notices: tuple[Notice, ...] = ()
    # Where the notices go; set whenever the route was looked up.
    routed: RouteResult[RouteOptions] | None = None
    # Rows for the ack history: an ack that ended or expired (app/core/ack.py).
    acks: tuple[AckRow, ...] = ()


def escalation_steps(routed: RouteResult[RouteOptions]) -> tuple[EscalationStep, ...]:
    """The escalation steps of every route the alert matched."""
    return merge_steps(r.options.escalate for r in routed.routes if r.options is not None)


def _opened_by(fp: str, key: str, edges: tuple[Edge, ...], fallback: datetime) -> datetime:
    """The occurrence whose notice created incident ``key``."""
    for edge in edges:
        if incident_key(fp, edge.occurrence) == key:
            return edge.occurrence
    return fallback


def _escalation_fields(
    stored: AlertRecord | None,
    new_key: str | None,
    opened_at: datetime,
    steps: tuple[EscalationStep, ...],
    now: datetime,
) -> dict[str, Any]:
    """Escalation state after an event moved the alert's incident.

    A closed incident clears it; a new one starts its clock; the same one
    keeps it."""
    if new_key is None:
        return {"escalation_since": None, "next_escalation_at": None, "escalated_to": ()}
    if stored is not None and stored.incident_key == new_key:
        # The same incident: its clock runs on; the next step is looked up
        # again, so steps a reload added or removed apply from this change.
        since = stored.escalation_since or clock_start(stored.starts_at, now)
        return {
            "escalation_since": since,
            "next_escalation_at": next_due(since, steps, stored.escalated_to),
        }
    since = clock_start(opened_at, now)
    return {
        "escalation_since": since,
        "next_escalation_at": next_due(since, steps, ()),
        "escalated_to": (),
    }


def _tell_escalated(stored: AlertRecord | None, notices: list[Notice]) -> list[Notice]:
    """A notice that closes the incident also goes to whoever was escalated to."""
    if stored is None or not stored.escalated_to or stored.incident_key is None:
        return notices
    out = []
    for n in notices:
        closes = n.status is Status.RESOLVED and n.kind in (NoticeKind.RESOLVED, NoticeKind.STABLE)
        if closes and n.dedup_key == stored.incident_key:
            n = replace(n, escalated_to=stored.escalated_to)
        out.append(n)
    return out


def _working_state(rec: AlertRecord) -> AlertNoticeState:
    # A private copy: the notice planner updates it as it walks the edges.
    return AlertNoticeState(
        status=rec.status,
        occurrence=rec.starts_at,
        incident_key=rec.incident_key,
        flap=FlapState(rec.flap_score, rec.flap_score_at, rec.flapping),
        flap_started_at=rec.flap_started_at,
        flap_transitions=rec.flap_transitions,
    )


def _state_fields(state: AlertNoticeState) -> dict[str, Any]:
    return {
        "incident_key": state.incident_key,
        "flap_score": state.flap.score,
        "flap_score_at": state.flap.at,
        "flapping": state.flap.flapping,
        "flap_started_at": state.flap_started_at,
        "flap_transitions": state.flap_transitions,
    }


def _renotify_after(renotify_s: float, now: datetime) -> datetime | None:
    return now + timedelta(seconds=renotify_s) if renotify_s > 0 else None


def skewed_fields(alert: Alert, now: datetime, max_skew: timedelta) -> list[str]:
    """Which of ``alert``'s timestamps are further ahead than ``max_skew``.

    A firing alert's endsAt is an expiry, not an end, so only a resolve's
    counts.
    """
    out = []
    if is_skewed(alert.starts_at, now, max_skew):
        out.append("startsAt")
    if alert.status is Status.RESOLVED and is_skewed(alert.ends_at, now, max_skew):
        out.append("endsAt")
    return out


def _skew_fields(
    stored: AlertRecord | None, alert: Alert, now: datetime, max_skew: timedelta
) -> dict[str, Any]:
    """The record's note of timestamps from the future (a sender's clock ahead)."""
    skew = skewed_fields(alert, now, max_skew)
    if stored is None or alert.starts_at != stored.starts_at or stored.clock_skew is None:
        # A new occurrence starts its own record of skew.
        return {
            "skewed_at": now if "startsAt" in skew else None,
            "clock_skew": ",".join(skew) or None,
        }
    if skew:
        return {"clock_skew": ",".join(sorted({*stored.clock_skew.split(","), *skew}))}
    return {}


def on_alert(
    stored: AlertRecord | None,
    alert: Alert,
    webhook: Webhook,
    rules: Rules,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Step:
    """One received copy of an alert against what is stored for its fingerprint.

    Repeats (duplicates) and late copies (stale) only count and touch
    ``last_seen``; a duplicate with new annotations also takes them and the
    runbook they may name, without notifying. Anything later moves the alert
    through its transitions and may notify. ``max_skew`` is how far ahead of
    ``now`` a sender's timestamps may be before they count as skewed.
    """
    # Each outcome builds its new record in one construction: ingest runs
    # this for every alert of every webhook.
    position = (
        Position(stored.status, stored.starts_at, stored.skewed_at) if stored is not None else None
    )
    decision = decide(position, alert, now, max_skew)

    if decision.verdict is Verdict.STALE:
        assert stored is not None
        rec = replace(stored, last_seen=now, stale_count=stored.stale_count + 1)
        return Step(rec, decision.verdict, changed=False)
    if decision.verdict is Verdict.DUPLICATE:
        assert stored is not None
        count = stored.duplicate_count + 1
        if alert.content_hash == stored.content_hash:
            rec = replace(stored, last_seen=now, duplicate_count=count)
            return Step(rec, decision.verdict, changed=False)
        # Annotations often carry live values: keep the latest and the runbook
        # they may name, without notifying anyone.
        runbook = rules.runbook(stored.labels, alert.annotations)
        rec = replace(
            stored,
            last_seen=now,
            duplicate_count=count,
            annotations=alert.annotations,
            generator_url=alert.generator_url,
            content_hash=alert.content_hash,
            runbook_url=runbook.url,
            runbook_source=runbook.source,
        )
        return Step(rec, decision.verdict, changed=True)

    routed = rules.route(alert.labels)
    options = routed.options
    assert options is not None  # the root route always matches
    if stored is not None:
        state = _working_state(stored)
    else:
        state = AlertNoticeState(alert.status, alert.starts_at, None, FlapState())
    plan = plan_edges(alert.fingerprint, state, decision.edges, options.flap)
    notices = _tell_escalated(stored, plan.notices)
    opened_at = (
        _opened_by(alert.fingerprint, state.incident_key, decision.edges, alert.starts_at)
        if state.incident_key is not None
        else alert.starts_at
    )
    runbook = rules.runbook(alert.labels, alert.annotations)
    changes: dict[str, Any] = {
        "status": alert.status,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "content_hash": alert.content_hash,
        "source": webhook.source.value,
        "last_seen": now,
        "last_changed": now,
        "runbook_url": runbook.url,
        "runbook_source": runbook.source,
        **_state_fields(state),
        **_reminders(alert.status, plan.notices, options.renotify_s, now),
        **_skew_fields(stored, alert, now, max_skew),
        **_escalation_fields(stored, state.incident_key, opened_at, escalation_steps(routed), now),
    }
    if stored is None:
        rec = AlertRecord(
            fingerprint=alert.fingerprint,
            labels=alert.labels,
            group_key=webhook.group_key,
            first_seen=now,
            **changes,
        )
        acks: tuple[AckRow, ...] = ()
    else:
        rec = replace(stored, group_key=webhook.group_key or stored.group_key, **changes)
        rec, ended = ack.after_arrival(stored, rec, now)
        acks = (ended,) if ended is not None else ()
    transitions = tuple(
        TransitionRow(
            fingerprint=alert.fingerprint,
            occurrence=r.edge.occurrence,
            from_status=r.edge.from_status,
            to_status=r.edge.to_status,
            at=r.edge.at,
            received_at=now,
            implied=r.edge.implied,
            suppressed=r.suppressed,
            source=webhook.source.value,
        )
        for r in plan.records
    )
    return Step(rec, decision.verdict, True, transitions, tuple(notices), routed, acks)


def _reminders(
    status: Status, notices: list[Notice], renotify_s: float, now: datetime
) -> dict[str, Any]:
    """A resolved alert gets no reminders; one that (re)opened starts counting again."""
    if status is Status.RESOLVED:
        return {"next_renotify_at": None}
    opened = any(
        n.kind is NoticeKind.FIRING or (n.kind is NoticeKind.STABLE and n.status is Status.FIRING)
        for n in notices
    )
    if opened:
        return {"renotify_count": 0, "next_renotify_at": _renotify_after(renotify_s, now)}
    return {}


def on_sweep(
    stored: AlertRecord,
    options: RouteOptions,
    now: datetime,
    steps: tuple[EscalationStep, ...] = (),
) -> Step:
    """The sweeper's look at a flapping alert: end the flap once it calmed down.

    While it still flaps the score decays on read and nothing changes
    (``changed`` is False, no notice). A flap that ended sends one stable
    notice, and a still-firing alert starts its reminders again.
    """
    state = _working_state(stored)
    notice = plan_sweep(stored.fingerprint, state, options.flap, now)
    if notice is None:
        return Step(stored, changed=False)
    changes = _state_fields(state)
    if stored.status is Status.FIRING:
        changes["renotify_count"] = 0
        changes["next_renotify_at"] = _renotify_after(options.renotify_s, now)
    steps = steps or options.escalate
    changes.update(_escalation_fields(stored, state.incident_key, stored.starts_at, steps, now))
    rec, ended = ack.after_sweep(stored, replace(stored, **changes), now)
    notices = tuple(_tell_escalated(stored, [notice]))
    return Step(rec, notices=notices, acks=(ended,) if ended is not None else ())


def on_reminder(stored: AlertRecord, options: RouteOptions, now: datetime) -> Step:
    """A reminder fell due: count it, schedule the next, and notify if still firing
    and not flapping (a flapping alert's reminder is counted but silent).

    While the occurrence is acknowledged the reminder is not sent nor counted;
    the next is due after the interval or when the ack expires, whichever
    comes first, so reminders resume as soon as an ack's ``for`` runs out.
    An ack that ran out is recorded as expired and this reminder is sent.
    """
    if ack.is_acked(stored, now):
        due = _renotify_after(options.renotify_s, now)
        if stored.ack_until is not None and (due is None or stored.ack_until < due):
            due = stored.ack_until
        return Step(replace(stored, next_renotify_at=due))
    acks: tuple[AckRow, ...] = ()
    expired = ack.expire(stored, now)
    if expired is not None:
        stored, row = expired
        acks = (row,)
    count = stored.renotify_count + 1
    state = _working_state(stored)
    notice = plan_reminder(stored.fingerprint, state, count)
    rec = replace(
        stored,
        renotify_count=count,
        next_renotify_at=_renotify_after(options.renotify_s, now),
        **_state_fields(state),
    )
    return Step(rec, notices=(notice,) if notice is not None else (), acks=acks)


def on_escalation(
    stored: AlertRecord,
    steps: tuple[EscalationStep, ...],
    notified: tuple[str, ...],
    now: datetime,
) -> Step:
    """The sweeper found an escalation due: take every step due now, once each.

    ``steps`` are the alert's steps (:func:`escalation_steps`), ``notified``
    the receivers its routes reach. Each due step becomes one notice for its
    receiver alone, saying how long the alert has fired and who was told
    before. An acknowledged alert takes no step (the sweeper does not even
    load it); nor does one whose incident closed meanwhile.
    """
    key = stored.incident_key
    since = stored.escalation_since
    if key is None or since is None:
        return Step(replace(stored, next_escalation_at=None))
    if ack.is_acked(stored, now):
        return Step(stored, changed=False)
    acks: tuple[AckRow, ...] = ()
    expired = ack.expire(stored, now)
    if expired is not None:
        # The ack ran out: recorded as expired, and the steps resume.
        stored, row = expired
        acks = (row,)
    told = list(stored.escalated_to)
    notices: list[Notice] = []
    flapping = stored.flapping
    status = Status.FIRING if flapping else stored.status
    for index, step in due_steps(since, steps, told, now):
        info = EscalationInfo(
            step=index,
            receiver=step.receiver,
            after_s=step.after_s,
            firing_for_s=(now - since).total_seconds(),
            notified=tuple(dict.fromkeys([*notified, *told])),
            flapping=flapping,
        )
        notices.append(
            Notice(
                NoticeKind.ESCALATION,
                status,
                stored.starts_at,
                escalation_key(key, step.receiver),
                f"escalation|{key}|{step.receiver}",
                stored.flap_score,
                escalation=info,
            )
        )
        told.append(step.receiver)
    rec = replace(
        stored,
        escalated_to=tuple(told),
        next_escalation_at=next_due(since, steps, told),
    )
    return Step(rec, notices=tuple(notices), acks=acks)
