"""Notice planning: what notifies, what is suppressed, and which incident key it carries."""

from datetime import UTC, datetime, timedelta

from app.core.dedup import Position, decide
from app.core.domain import Alert, NoticeKind, Status
from app.core.flapping import FlapParams, FlapState
from app.core.notices import AlertNoticeState, incident_key, plan_edges, plan_reminder, plan_sweep

F, R = Status.FIRING, Status.RESOLVED
T0 = datetime(2026, 1, 1, tzinfo=UTC)
P = FlapParams(half_life_s=1800, enter_score=4.0, exit_score=1.5, max_score=8.0)
FP = "0123456789abcdef"


class Sim:
    """Feeds alerts through decide + plan_edges like ingest does."""

    def __init__(self, params: FlapParams = P) -> None:
        self.params = params
        self.state: AlertNoticeState | None = None
        self.sent: list[tuple[NoticeKind, Status, str]] = []
        self.transitions: list[int] = []  # what each notice says of the burst
        self.suppressed: list[str | None] = []

    def event(
        self, status: Status, starts: datetime, now: datetime, ends: datetime | None = None
    ) -> None:
        alert = Alert(FP, {"a": "b"}, {}, status, starts, (ends or now) if status is R else None)
        stored = Position(self.state.status, self.state.occurrence) if self.state else None
        d = decide(stored, alert, now)
        if self.state is None:
            self.state = AlertNoticeState(status, starts, None, FlapState())
        plan = plan_edges(FP, self.state, d.edges, self.params)
        self.sent += [(n.kind, n.status, n.dedup_key) for n in plan.notices]
        self.transitions += [n.transitions for n in plan.notices]
        self.suppressed += [r.suppressed for r in plan.records]

    def sweep(self, now: datetime) -> None:
        assert self.state is not None
        n = plan_sweep(FP, self.state, self.params, now)
        if n is not None:
            self.sent.append((n.kind, n.status, n.dedup_key))
            self.transitions.append(n.transitions)


def test_trigger_then_resolve_share_the_key() -> None:
    sim = Sim()
    sim.event(F, T0, T0)
    sim.event(R, T0, T0 + timedelta(minutes=5))
    key = incident_key(FP, T0)
    assert sim.sent == [(NoticeKind.FIRING, F, key), (NoticeKind.RESOLVED, R, key)]
    assert len(key) <= 255


def test_new_occurrence_while_firing_resolves_the_old_incident_first() -> None:
    sim = Sim()
    s2 = T0 + timedelta(hours=2)
    sim.event(F, T0, T0)
    sim.event(F, s2, s2)
    assert sim.sent == [
        (NoticeKind.FIRING, F, incident_key(FP, T0)),
        (NoticeKind.RESOLVED, R, incident_key(FP, T0)),
        (NoticeKind.FIRING, F, incident_key(FP, s2)),
    ]


def test_resolved_never_seen_firing_notifies_once() -> None:
    sim = Sim()
    sim.event(R, T0, T0 + timedelta(minutes=1))
    assert sim.sent == [(NoticeKind.RESOLVED, R, incident_key(FP, T0))]
    assert sim.suppressed == ["implied", None]


def flap(sim: Sim, count: int, every: timedelta = timedelta(minutes=5)) -> datetime:
    t = T0
    for i in range(count):
        t = T0 + every * i
        sim.event(F if i % 2 == 0 else R, T0 + every * (i - i % 2), t)
    return t


def test_flapping_one_notice_then_silence_then_one_stable_notice_resolving() -> None:
    sim = Sim()
    last = flap(sim, 8)  # f r f r F(5th: flapping) r f r
    kinds = [k for k, _, _ in sim.sent]
    assert kinds == [
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
        NoticeKind.FLAPPING,
    ]
    assert sim.suppressed[4:] == ["flapping"] * 4
    flap_key = sim.sent[-1][2]
    # Quiet: the sweeper ends the flap about 56.5 min after the last transition.
    t = last
    while sim.sent[-1][0] is NoticeKind.FLAPPING:
        t += timedelta(seconds=30)
        sim.sweep(t)
    assert 56.5 <= (t - last) / timedelta(minutes=1) <= 56.5 + 0.5  # within one 30 s sweep
    assert sim.sent[-1] == (NoticeKind.STABLE, R, flap_key)  # resolves what the flap opened
    assert sim.state is not None and sim.state.incident_key is None
    # "Flapping: 5 transitions" at the start; 8 in the whole burst at the end.
    assert sim.transitions[4] == 5 and sim.transitions[-1] == 8


def test_flap_ending_while_firing_keeps_the_incident_open_then_resolves_it() -> None:
    sim = Sim()
    last = flap(sim, 7)  # ends firing (7th transition is a firing)
    flap_key = sim.sent[-1][2]
    t = last
    while sim.sent[-1][0] is not NoticeKind.STABLE:
        t += timedelta(seconds=30)
        sim.sweep(t)
    assert sim.sent[-1] == (NoticeKind.STABLE, F, flap_key)
    start = T0 + timedelta(minutes=30)  # the 7th transition's occurrence
    sim.event(R, start, t + timedelta(minutes=1))
    assert sim.sent[-1] == (NoticeKind.RESOLVED, R, flap_key)


def test_reminder_only_while_firing_and_not_flapping() -> None:
    state = AlertNoticeState(F, T0, incident_key(FP, T0), FlapState())
    n = plan_reminder(FP, state, 1)
    assert n is not None and n.kind is NoticeKind.REMINDER and n.dedup_key == incident_key(FP, T0)
    assert plan_reminder(FP, AlertNoticeState(R, T0, None, FlapState()), 1) is None
    assert plan_reminder(FP, AlertNoticeState(F, T0, None, FlapState(5.0, T0, True)), 1) is None
