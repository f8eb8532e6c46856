"""The alert life cycle as a table: (stored, event, now) → (new state, transitions, notices).

Every row starts from a stored record (or none), applies one event (an
arrival, a sweep or a reminder) at ``now`` and states the whole outcome:
the fields of the new record that matter, the transitions written as
(occurrence, from, to, implied, suppressed), and the notices as
(kind, status, incident key). The stored record is frozen, so a row also
proves that nothing is mutated.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.core.dedup import Verdict
from app.core.domain import Alert, AlertRecord, NoticeKind, Source, Status, Webhook
from app.core.escalation import EscalationStep, escalation_key
from app.core.flapping import FlapParams
from app.core.lifecycle import (
    RouteOptions,
    Step,
    on_alert,
    on_escalation,
    on_reminder,
    on_sweep,
)
from app.core.notices import incident_key
from app.core.routing import Route, RouteResult
from app.core.runbooks import Runbook

F, R = Status.FIRING, Status.RESOLVED
FP = "00000000000000aa"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
NOW = T0 + timedelta(hours=2)
PARAMS = FlapParams(half_life_s=1800, enter_score=3.0, exit_score=1.0, max_score=5.0)
OPTIONS = RouteOptions(PARAMS, renotify_s=3600)
NO_REMINDERS = RouteOptions(PARAMS, renotify_s=0)
K0, K1 = incident_key(FP, T0), incident_key(FP, T1)
# Escalation: "second" after 15 minutes, "manager" after 45.
ESCALATE = RouteOptions(
    PARAMS,
    renotify_s=3600,
    escalate=(EscalationStep(900, "second"), EscalationStep(2700, "manager")),
)
M15, M45 = T0 + timedelta(minutes=15), T0 + timedelta(minutes=45)
ESCALATING = dict(escalation_since=T0, next_escalation_at=M15)
WEBHOOK = Webhook(Source.ALERTMANAGER, [], NOW, group_key="{}:{a}")


@dataclass(frozen=True)
class Rules:
    options: RouteOptions = OPTIONS

    def route(self, labels: Mapping[str, str]) -> RouteResult[RouteOptions]:
        return RouteResult((Route("team", options=self.options),), ("team",))

    def runbook(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Runbook:
        url = annotations.get("runbook_url")
        return Runbook(url, "annotation") if url else Runbook(None, "none")


def stored(**changes: Any) -> AlertRecord:
    base = AlertRecord(
        fingerprint=FP,
        labels={"alertname": "Down"},
        annotations={"summary": "down"},
        status=F,
        starts_at=T0,
        ends_at=None,
        generator_url="",
        source="alertmanager",
        group_key="{}:{a}",
        first_seen=T0,
        last_seen=T0,
        last_changed=T0,
        incident_key=K0,
        content_hash="h0",
        runbook_source="none",
        next_renotify_at=T0 + timedelta(hours=1),
    )
    return _replace(base, **changes)


def _replace(rec: AlertRecord, **changes: Any) -> AlertRecord:
    values = {f.name: getattr(rec, f.name) for f in fields(rec)} | changes
    return AlertRecord(**values)


def alert(status: Status, starts: datetime, ends: datetime | None = None, **kw: Any) -> Alert:
    annotations = kw.pop("annotations", {"summary": "down"})
    return Alert(
        FP, {"alertname": "Down"}, annotations, status, starts, ends, "", kw.pop("h", "h0")
    )


FLAPPING = dict(
    flap_score=4.0, flap_score_at=NOW, flapping=True, flap_started_at=T0, flap_transitions=5
)

# id, stored record, event, expected record fields, transitions, notices, verdict
Row = tuple[
    str,
    AlertRecord | None,
    tuple[Any, ...],
    dict[str, Any],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    Verdict | None,
]
ROWS: list[Row] = [
    # --- arrivals -------------------------------------------------------
    (
        "first firing",
        None,
        ("alert", alert(F, T0)),
        dict(
            status=F,
            incident_key=K0,
            first_seen=NOW,
            next_renotify_at=NOW + timedelta(hours=1),
            renotify_count=0,
        ),
        [(T0, None, F, False, None)],
        [(NoticeKind.FIRING, F, K0)],
        Verdict.NEW,
    ),
    (
        "first seen already resolved",
        None,
        ("alert", alert(R, T0, T0 + timedelta(minutes=5))),
        dict(status=R, incident_key=None, next_renotify_at=None),
        [(T0, None, F, True, "implied"), (T0, F, R, False, None)],
        [(NoticeKind.RESOLVED, R, K0)],
        Verdict.NEW,
    ),
    (
        "repeat of the stored firing",
        stored(),
        ("alert", alert(F, T0)),
        dict(duplicate_count=1, last_seen=NOW, last_changed=T0, incident_key=K0),
        [],
        [],
        Verdict.DUPLICATE,
    ),
    (
        "repeat with new annotations takes them and their runbook",
        stored(),
        ("alert", alert(F, T0, annotations={"runbook_url": "https://rb/x"}, h="h1")),
        dict(
            duplicate_count=1,
            annotations={"runbook_url": "https://rb/x"},
            runbook_url="https://rb/x",
            runbook_source="annotation",
            content_hash="h1",
            last_changed=T0,
        ),
        [],
        [],
        Verdict.DUPLICATE,
    ),
    (
        "repeat of a resolve",
        stored(status=R, ends_at=T0, incident_key=None, next_renotify_at=None),
        ("alert", alert(R, T0, T0)),
        dict(duplicate_count=1, status=R),
        [],
        [],
        Verdict.DUPLICATE,
    ),
    (
        "stale: firing after its own resolve",
        stored(status=R, ends_at=T1, incident_key=None),
        ("alert", alert(F, T0)),
        dict(stale_count=1, status=R, last_seen=NOW),
        [],
        [],
        Verdict.STALE,
    ),
    (
        "stale: an older occurrence",
        stored(starts_at=T1, incident_key=K1),
        ("alert", alert(R, T0, T0 + timedelta(minutes=1))),
        dict(stale_count=1, starts_at=T1),
        [],
        [],
        Verdict.STALE,
    ),
    (
        "resolve closes the open incident",
        stored(),
        ("alert", alert(R, T0, T1)),
        dict(status=R, ends_at=T1, incident_key=None, next_renotify_at=None, last_changed=NOW),
        [(T0, F, R, False, None)],
        [(NoticeKind.RESOLVED, R, K0)],
        Verdict.TRANSITION,
    ),
    (
        "a resolve from the future is clamped to now",
        stored(),
        ("alert", alert(R, T0, NOW + timedelta(days=1))),
        dict(status=R, incident_key=None),
        [(T0, F, R, False, None)],
        [(NoticeKind.RESOLVED, R, K0)],
        Verdict.TRANSITION,
    ),
    (
        "new occurrence while firing: implied resolve of the old one, reminders restart",
        stored(renotify_count=4),
        ("alert", alert(F, T1)),
        dict(
            status=F,
            starts_at=T1,
            incident_key=K1,
            renotify_count=0,
            next_renotify_at=NOW + timedelta(hours=1),
        ),
        [(T0, F, R, True, None), (T1, R, F, False, None)],
        [(NoticeKind.RESOLVED, R, K0), (NoticeKind.FIRING, F, K1)],
        Verdict.TRANSITION,
    ),
    (
        "new occurrence after a resolve",
        stored(status=R, ends_at=T0 + timedelta(minutes=5), incident_key=None),
        ("alert", alert(F, T1)),
        dict(status=F, starts_at=T1, incident_key=K1),
        [(T1, R, F, False, None)],
        [(NoticeKind.FIRING, F, K1)],
        Verdict.TRANSITION,
    ),
    (
        "new occurrence seen only resolved: implied firing, no firing notice",
        stored(status=R, incident_key=None),
        ("alert", alert(R, T1, T1 + timedelta(minutes=1))),
        dict(status=R, starts_at=T1, incident_key=None),
        [(T1, R, F, True, "implied"), (T1, F, R, False, None)],
        [(NoticeKind.RESOLVED, R, K1)],
        Verdict.TRANSITION,
    ),
    (
        "no reminders configured: none scheduled",
        None,
        ("alert", alert(F, T0), NO_REMINDERS),
        dict(next_renotify_at=None, renotify_count=0),
        [(T0, None, F, False, None)],
        [(NoticeKind.FIRING, F, K0)],
        Verdict.NEW,
    ),
    (
        "the transition that crosses the threshold starts flapping",
        stored(status=R, incident_key=None, flap_score=2.5, flap_score_at=T1, flap_transitions=3),
        ("alert", alert(F, T1)),
        dict(status=F, flapping=True, flap_started_at=T1, flap_transitions=4, incident_key=K1),
        [(T1, R, F, False, "flapping")],
        [(NoticeKind.FLAPPING, F, K1)],
        Verdict.TRANSITION,
    ),
    (
        "while flapping, transitions are recorded but do not notify",
        stored(**FLAPPING),
        ("alert", alert(R, T0, NOW)),
        dict(status=R, flapping=True, incident_key=K0, flap_transitions=6),
        [(T0, F, R, False, "flapping")],
        [],
        Verdict.TRANSITION,
    ),
    # --- sweeps ---------------------------------------------------------
    (
        "sweep while still flapping changes nothing",
        stored(**FLAPPING),
        ("sweep", NOW),
        dict(flapping=True, flap_score=4.0),
        [],
        [],
        None,
    ),
    (
        "sweep after calm ends the flap: stable firing, reminders restart",
        stored(**FLAPPING),
        ("sweep", NOW + timedelta(hours=3)),
        dict(
            flapping=False,
            flap_started_at=None,
            incident_key=K0,
            renotify_count=0,
            next_renotify_at=NOW + timedelta(hours=4),
        ),
        [],
        [(NoticeKind.STABLE, F, K0)],
        None,
    ),
    (
        "sweep after calm on a resolved alert: stable resolved closes the incident",
        stored(status=R, **FLAPPING),
        ("sweep", NOW + timedelta(hours=3)),
        dict(flapping=False, incident_key=None, next_renotify_at=T0 + timedelta(hours=1)),
        [],
        [(NoticeKind.STABLE, R, K0)],
        None,
    ),
    (
        "sweep of an alert that never flapped changes nothing",
        stored(),
        ("sweep", NOW),
        dict(flapping=False),
        [],
        [],
        None,
    ),
    # --- escalation -----------------------------------------------------
    (
        "first firing with escalation steps starts the clock at the occurrence",
        None,
        ("alert", alert(F, T0), ESCALATE),
        dict(incident_key=K0, escalation_since=T0, next_escalation_at=M15, escalated_to=()),
        [(T0, None, F, False, None)],
        [(NoticeKind.FIRING, F, K0)],
        Verdict.NEW,
    ),
    (
        "a startsAt from the future starts the clock now, not then",
        None,
        ("alert", alert(F, NOW + timedelta(days=3)), ESCALATE),
        dict(escalation_since=NOW, next_escalation_at=NOW + timedelta(minutes=15)),
        [(NOW + timedelta(days=3), None, F, False, None)],
        [(NoticeKind.FIRING, F, incident_key(FP, NOW + timedelta(days=3)))],
        Verdict.NEW,
    ),
    (
        "no escalation steps: no escalation due",
        None,
        ("alert", alert(F, T0)),
        dict(escalation_since=T0, next_escalation_at=None),
        [(T0, None, F, False, None)],
        [(NoticeKind.FIRING, F, K0)],
        Verdict.NEW,
    ),
    (
        "escalation: the first step falls due and is taken once",
        stored(**ESCALATING),
        ("escalate", M15 + timedelta(seconds=5), ESCALATE),
        dict(escalated_to=("second",), next_escalation_at=M45),
        [],
        [(NoticeKind.ESCALATION, F, escalation_key(K0, "second"))],
        None,
    ),
    (
        "escalation: every step due at once is taken (e.g. when an ack expired late)",
        stored(**ESCALATING),
        ("escalate", NOW, ESCALATE),
        dict(escalated_to=("second", "manager"), next_escalation_at=None),
        [],
        [
            (NoticeKind.ESCALATION, F, escalation_key(K0, "second")),
            (NoticeKind.ESCALATION, F, escalation_key(K0, "manager")),
        ],
        None,
    ),
    (
        "escalation: a step already taken is not taken again",
        stored(escalation_since=T0, next_escalation_at=M45, escalated_to=("second",)),
        ("escalate", M45, ESCALATE),
        dict(escalated_to=("second", "manager"), next_escalation_at=None),
        [],
        [(NoticeKind.ESCALATION, F, escalation_key(K0, "manager"))],
        None,
    ),
    (
        "escalation: a flapping alert escalates as firing, even while it reads resolved",
        stored(status=R, **FLAPPING, **ESCALATING),
        ("escalate", M15, ESCALATE),
        dict(escalated_to=("second",), next_escalation_at=M45),
        [],
        [(NoticeKind.ESCALATION, F, escalation_key(K0, "second"))],
        None,
    ),
    (
        "escalation: an incident that closed meanwhile takes no step",
        stored(status=R, incident_key=None, **ESCALATING),
        ("escalate", NOW, ESCALATE),
        dict(next_escalation_at=None, escalated_to=()),
        [],
        [],
        None,
    ),
    (
        "resolve after an escalation closes the incident and its escalation",
        stored(escalation_since=T0, next_escalation_at=M45, escalated_to=("second",)),
        ("alert", alert(R, T0, T1), ESCALATE),
        dict(
            incident_key=None,
            escalation_since=None,
            next_escalation_at=None,
            escalated_to=(),
        ),
        [(T0, F, R, False, None)],
        [(NoticeKind.RESOLVED, R, K0)],
        Verdict.TRANSITION,
    ),
    (
        "a flapping alert's re-fire keeps the incident and its escalation clock",
        stored(
            status=R,
            **FLAPPING,
            escalation_since=T0,
            next_escalation_at=M45,
            escalated_to=("second",),
        ),
        ("alert", alert(F, T1), ESCALATE),
        dict(
            incident_key=K0,
            escalation_since=T0,
            next_escalation_at=M45,
            escalated_to=("second",),
        ),
        [(T1, R, F, False, "flapping")],
        [],
        Verdict.TRANSITION,
    ),
    (
        "a flap that ends resolved closes the escalation with its stable notice",
        stored(
            status=R,
            **FLAPPING,
            escalation_since=T0,
            next_escalation_at=M45,
            escalated_to=("second",),
        ),
        ("sweep", NOW + timedelta(hours=3), ESCALATE),
        dict(incident_key=None, escalation_since=None, escalated_to=()),
        [],
        [(NoticeKind.STABLE, R, K0)],
        None,
    ),
    # --- reminders ------------------------------------------------------
    (
        "reminder for a firing alert",
        stored(renotify_count=2),
        ("remind", NOW),
        dict(renotify_count=3, next_renotify_at=NOW + timedelta(hours=1)),
        [],
        [(NoticeKind.REMINDER, F, K0)],
        None,
    ),
    (
        "reminder while flapping is counted but silent",
        stored(**FLAPPING),
        ("remind", NOW),
        dict(renotify_count=1, next_renotify_at=NOW + timedelta(hours=1)),
        [],
        [],
        None,
    ),
    (
        "reminder for a resolved alert is counted but silent",
        stored(status=R, incident_key=None),
        ("remind", NOW),
        dict(renotify_count=1),
        [],
        [],
        None,
    ),
]


def run(rec: AlertRecord | None, event: tuple[Any, ...]) -> Step:
    kind = event[0]
    options = event[2] if len(event) > 2 else OPTIONS
    if kind == "alert":
        return on_alert(rec, event[1], WEBHOOK, Rules(options), NOW)
    assert rec is not None
    if kind == "sweep":
        return on_sweep(rec, options, event[1])
    if kind == "escalate":
        return on_escalation(rec, options.escalate, ("team",), event[1])
    return on_reminder(rec, options, event[1])


@pytest.mark.parametrize(
    ("name", "rec", "event", "expect", "transitions", "notices", "verdict"),
    ROWS,
    ids=[r[0] for r in ROWS],
)
def test_life_cycle_table(
    name: str,
    rec: AlertRecord | None,
    event: tuple[Any, ...],
    expect: dict[str, Any],
    transitions: list[tuple[Any, ...]],
    notices: list[tuple[Any, ...]],
    verdict: Verdict | None,
) -> None:
    before = None if rec is None else _replace(rec)
    step = run(rec, event)
    assert {k: getattr(step.record, k) for k in expect} == expect
    assert [
        (t.occurrence, t.from_status, t.to_status, t.implied, t.suppressed)
        for t in step.transitions
    ] == transitions
    assert [(n.kind, n.status, n.dedup_key) for n in step.notices] == notices
    assert step.verdict is verdict
    assert rec == before  # the stored record is untouched


def test_the_table_covers_every_kind_of_event() -> None:
    kinds = {r[2][0] for r in ROWS}
    verdicts = {r[6] for r in ROWS}
    notice_kinds = {n[0] for r in ROWS for n in r[5]}
    assert kinds == {"alert", "sweep", "remind", "escalate"}
    assert verdicts == {*Verdict, None}
    # Ack and un-ack notices come from the acknowledge use case, not from the
    # life cycle (tests/integration/test_ack.py).
    assert notice_kinds == set(NoticeKind) - {NoticeKind.ACK, NoticeKind.UNACK}


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        stored().status = R  # type: ignore[misc]


def test_a_duplicate_is_a_cheap_write_and_a_content_change_a_full_one() -> None:
    assert not on_alert(stored(), alert(F, T0), WEBHOOK, Rules(), NOW).changed
    assert on_alert(stored(), alert(F, T0, h="h2"), WEBHOOK, Rules(), NOW).changed


def test_an_escalation_notice_says_how_long_and_who_was_told() -> None:
    step = on_escalation(
        stored(escalation_since=T0, next_escalation_at=M45, escalated_to=("second",)),
        ESCALATE.escalate,
        ("team",),
        M45 + timedelta(minutes=1),
    )
    (notice,) = step.notices
    assert notice.escalation is not None
    assert notice.escalation.receiver == "manager"
    assert notice.escalation.step == 1
    assert notice.escalation.firing_for_s == 46 * 60
    assert notice.escalation.notified == ("team", "second")
    assert notice.identity == f"escalation|{K0}|manager"


def test_the_resolve_goes_to_every_receiver_escalated_to() -> None:
    rec = stored(escalation_since=T0, next_escalation_at=M45, escalated_to=("second",))
    step = on_alert(rec, alert(R, T0, T1), WEBHOOK, Rules(ESCALATE), NOW)
    (notice,) = step.notices
    assert notice.escalated_to == ("second",)
    # A resolve that does not close this incident (none open) tells nobody more.
    closed = stored(status=R, incident_key=None, escalated_to=("second",))
    assert (
        on_alert(closed, alert(F, T1), WEBHOOK, Rules(ESCALATE), NOW).notices[0].escalated_to == ()
    )


def test_flapping_then_stable_resolved_tells_the_escalated_receivers() -> None:
    rec = stored(status=R, **FLAPPING, escalation_since=T0, escalated_to=("second",))
    step = on_sweep(rec, ESCALATE, NOW + timedelta(hours=3), ESCALATE.escalate)
    assert [n.escalated_to for n in step.notices] == [("second",)]
