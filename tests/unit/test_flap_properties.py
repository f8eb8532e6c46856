"""Flap detection as a property: duplicates and reordered replays never change the outcome;
and the PagerDuty contract holds whatever the flap did.

A random flap history is applied once cleanly, once with every webhook
repeated one to three times and with firing/resolved of the same occurrence
arriving in either order (as an HA pair and retries deliver them). Both runs
must record the same transitions, the same score and the same flapping flag.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.domain import Alert, AlertRecord, NoticeKind, Source, Status, Webhook
from app.core.flapping import FlapParams, FlapState, score_at
from app.core.lifecycle import RouteOptions, on_alert, on_reminder, on_sweep
from app.core.notices import Notice
from app.core.routing import Route, RouteResult
from app.core.runbooks import NO_RUNBOOK, Runbook

F, R = Status.FIRING, Status.RESOLVED
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FP = "00000000000000ff"

Event = tuple[Status, datetime, datetime | None]  # status, startsAt, endsAt


WEBHOOK = Webhook(Source.ALERTMANAGER, [], T0)


class Rules:
    """One route with the run's flap parameters; no runbooks."""

    def __init__(self, params: FlapParams) -> None:
        self.options = RouteOptions(params, renotify_s=3600)

    def route(self, labels: Mapping[str, str]) -> RouteResult[RouteOptions]:
        return RouteResult((Route("team", options=self.options),), ("team",))

    def runbook(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Runbook:
        return NO_RUNBOOK


class Run:
    """Feeds one alert's webhooks, sweeps and reminders through the life cycle."""

    def __init__(self, params: FlapParams) -> None:
        self.params = params
        self.rules = Rules(params)
        self.state: AlertRecord | None = None
        self.edges: set[tuple[datetime, Status]] = set()
        self.notices: list[str] = []
        self.planned: list[Notice] = []  # this run's notices not yet handed to a sink

    def apply(self, event: Event, now: datetime) -> None:
        status, starts, ends = event
        alert = Alert(FP, {"a": "b"}, {}, status, starts, ends)
        step = on_alert(self.state, alert, WEBHOOK, self.rules, now)
        self.state = step.record
        for transition in step.transitions:
            key = (transition.occurrence, transition.to_status)
            assert key not in self.edges  # no transition is ever recorded twice
            self.edges.add(key)
        self.notices += [n.kind.value for n in step.notices]
        self.planned += step.notices

    def sweep(self, at: datetime) -> Notice | None:
        assert self.state is not None
        step = on_sweep(self.state, self.rules.options, at)
        self.state = step.record
        return step.notices[0] if step.notices else None

    def remind(self, at: datetime) -> Notice | None:
        assert self.state is not None
        step = on_reminder(self.state, self.rules.options, at)
        self.state = step.record
        return step.notices[0] if step.notices else None

    def finish(self, at: datetime) -> tuple[bool, float]:
        notice = self.sweep(at)
        if notice is not None:
            self.notices.append(notice.kind.value)
        assert self.state is not None
        flap = FlapState(self.state.flap_score, self.state.flap_score_at, self.state.flapping)
        return self.state.flapping, score_at(flap, at, self.params)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    start = T0
    for i in range(draw(st.integers(1, 12))):
        duration = timedelta(minutes=draw(st.integers(1, 40)))
        events.append((F, start, None))
        last = i == 11 or draw(st.booleans())
        if not (last and draw(st.booleans())):  # the last occurrence may still be firing
            events.append((R, start, start + duration))
        start += duration + timedelta(minutes=draw(st.integers(1, 40)))
    return events


def deliver(events: list[Event], delays: list[int]) -> list[tuple[Event, datetime]]:
    """When each webhook is processed: after it happened, in delivery order."""
    out = []
    now = T0
    for event, delay in zip(events, delays, strict=False):
        happened = event[2] or event[1]
        now = max(now, happened) + timedelta(seconds=delay)
        out.append((event, now))
    return out


def replayed(history: list[Event], repeats: list[int], swaps: list[bool]) -> list[Event]:
    """The stream an HA pair and retries deliver: firing/resolved of an
    occurrence possibly swapped, every webhook one to three times."""
    out: list[Event] = []
    by_occurrence: dict[datetime, list[Event]] = {}
    for event in history:
        by_occurrence.setdefault(event[1], []).append(event)
    for i, (_, group) in enumerate(by_occurrence.items()):
        ordered = list(reversed(group)) if swaps[i % len(swaps)] else group
        for j, event in enumerate(ordered):
            out += [event] * repeats[(2 * i + j) % len(repeats)]
    return out


PARAMS = [
    FlapParams(half_life_s=1800, enter_score=4.0, exit_score=1.5, max_score=8.0),
    FlapParams(half_life_s=600, enter_score=3.0, exit_score=1.0, max_score=5.0),
]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    history=histories(),
    repeats=st.lists(st.integers(1, 3), min_size=24, max_size=24),
    swaps=st.lists(st.booleans(), min_size=12, max_size=12),
    delays=st.lists(st.integers(0, 90), min_size=72, max_size=72),
    params=st.sampled_from(PARAMS),
)
def test_duplicates_and_reordering_never_change_the_outcome(
    history: list[Event],
    repeats: list[int],
    swaps: list[bool],
    delays: list[int],
    params: FlapParams,
) -> None:
    clean = Run(params)
    for event, now in deliver(history, delays):
        clean.apply(event, now)

    messy = Run(params)
    for event, now in deliver(replayed(history, repeats, swaps), delays + delays):
        messy.apply(event, now)

    last = max((e[2] or e[1]) for e in history)
    # The same transitions (the implied ones included: a resolve seen first
    # implies its firing)...
    assert messy.edges == clean.edges
    # ...the same score...
    clean_flag, clean_score = clean.finish(last)
    messy_flag, messy_score = messy.finish(last)
    assert abs(clean_score - messy_score) < 1e-9
    # ...and the same flapping flag: starting is decided at the transitions'
    # own times, stopping by the sweep, neither by when webhooks arrive.
    assert clean_flag == messy_flag
    assert clean.notices.count("flapping") == messy.notices.count("flapping")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(history=histories(), delays=st.lists(st.integers(0, 90), min_size=24, max_size=24))
def test_a_flap_always_ends_with_one_stable_notice(history: list[Event], delays: list[int]) -> None:
    run = Run(PARAMS[0])
    for event, now in deliver(history, delays):
        run.apply(event, now)
    end = max((e[2] or e[1]) for e in history)
    for minute in range(0, 24 * 60, 1):  # sweep every minute for a day
        run.finish(end + timedelta(minutes=minute))
    assert run.state is not None and not run.state.flapping
    assert run.notices.count("flapping") == run.notices.count("stable")


class PagerDuty:
    """PagerDuty's dedup rules over the notices, in the order they are delivered."""

    def __init__(self) -> None:
        self.open: set[str] = set()

    def deliver(self, notice: Notice) -> None:
        resolve = notice.kind is NoticeKind.RESOLVED or (
            notice.kind is NoticeKind.STABLE and notice.status is Status.RESOLVED
        )
        if resolve:
            self.open.discard(notice.dedup_key)  # a resolve of a closed key is dropped
        else:
            self.open.add(notice.dedup_key)


def check_incidents(state: AlertRecord, pd: PagerDuty) -> None:
    """The incident contract at every step: one incident open exactly while the
    alert fires or flaps (the flapping notice holds one open), none otherwise."""
    if state.status is Status.FIRING or state.flapping:
        assert pd.open == {state.incident_key}, (state, pd.open)
    else:
        assert pd.open == set(), (state, pd.open)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    history=histories(),
    repeats=st.lists(st.integers(1, 3), min_size=24, max_size=24),
    swaps=st.lists(st.booleans(), min_size=12, max_size=12),
    delays=st.lists(st.integers(0, 900), min_size=72, max_size=72),
    sweeps=st.lists(st.integers(0, 3), min_size=72, max_size=72),
    reminders=st.lists(st.booleans(), min_size=72, max_size=72),
    params=st.sampled_from(PARAMS),
)
def test_no_incident_left_open_for_a_resolved_alert_and_none_closed_while_it_fires(
    history: list[Event],
    repeats: list[int],
    swaps: list[bool],
    delays: list[int],
    sweeps: list[int],
    reminders: list[bool],
    params: FlapParams,
) -> None:
    """Whatever the flap did, and however webhooks were repeated, reordered or
    interleaved with sweeps and reminders, PagerDuty ends up (and stays at
    every step) with an incident open exactly when the alert is firing."""
    stream = replayed(history, repeats, swaps)
    run, pd = Run(params), PagerDuty()
    now = T0
    for step, (event, at) in enumerate(deliver(stream, delays + delays)):
        run.apply(event, at)
        assert run.state is not None
        for notice in run.planned:
            pd.deliver(notice)
        run.planned.clear()
        now = at
        # The sweeper runs between webhooks, zero to three times, a minute apart.
        for k in range(sweeps[step % len(sweeps)]):
            swept = run.sweep(now + timedelta(minutes=k + 1))
            if swept is not None:
                pd.deliver(swept)
        if reminders[step % len(reminders)]:
            reminder = run.remind(now)
            if reminder is not None:
                pd.deliver(reminder)
        check_incidents(run.state, pd)
    # Then a long quiet spell: every flap calms down and the end state holds.
    assert run.state is not None
    for minute in range(1, 24 * 60, 5):
        swept = run.sweep(now + timedelta(minutes=minute))
        if swept is not None:
            pd.deliver(swept)
        check_incidents(run.state, pd)
    assert not run.state.flapping
    last = history[-1]
    assert run.state.status is last[0]
    assert (pd.open == set()) is (last[0] is Status.RESOLVED)
