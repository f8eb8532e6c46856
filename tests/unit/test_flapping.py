"""The decayed transition score with hysteresis (RFC 2439 style)."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from app.core.flapping import (
    FlapChange,
    FlapParams,
    FlapState,
    add_transition,
    evaluate,
    score_at,
    time_to_calm,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULTS = FlapParams(half_life_s=1800, enter_score=4.0, exit_score=1.5, max_score=8.0)


def toggle(
    every_min: float, count: int, params: FlapParams = DEFAULTS
) -> list[tuple[float, float, bool, FlapChange | None]]:
    """Apply ``count`` transitions ``every_min`` apart; (t, score, flapping, change) after each."""
    state = FlapState()
    out = []
    for i in range(count):
        t = T0 + timedelta(minutes=every_min * i)
        state = add_transition(state, t, params)
        state, change = evaluate(state, t, params)
        out.append((every_min * i, state.score, state.flapping, change))
    return out


def test_worked_example_every_5_minutes() -> None:
    steps = toggle(5, 8)
    expected = [1.000, 1.891, 2.685, 3.392, 4.022, 4.583, 5.083, 5.528]
    assert [round(s, 3) for _, s, _, _ in steps] == expected
    # Starts flapping at the 5th transition, not before.
    assert [f for _, _, f, _ in steps] == [False] * 4 + [True] * 4
    assert [c for _, _, _, c in steps].count(FlapChange.STARTED) == 1
    assert steps[4][3] is FlapChange.STARTED


def test_calms_down_56_5_minutes_after_the_last_transition() -> None:
    state = FlapState()
    for i in range(8):
        t = T0 + timedelta(minutes=5 * i)
        state = add_transition(state, t, DEFAULTS)
        state, _ = evaluate(state, t, DEFAULTS)
    last = T0 + timedelta(minutes=35)
    assert time_to_calm(state, DEFAULTS) / 60 == pytest.approx(56.5, abs=0.05)
    # A 30 s sweep: still flapping one sweep before, stopped within one sweep after.
    calm_at = last + timedelta(minutes=30 * math.log2(state.score / 1.5))
    before, change = evaluate(state, calm_at - timedelta(seconds=30), DEFAULTS)
    assert before.flapping and change is None
    after, change = evaluate(before, calm_at + timedelta(seconds=30), DEFAULTS)
    assert not after.flapping and change is FlapChange.STOPPED


def test_every_15_minutes_never_flaps() -> None:
    steps = toggle(15, 200)
    assert not any(f for _, _, f, _ in steps)
    assert steps[-1][1] == pytest.approx(1 / (1 - 2 ** (-15 / 30)), rel=1e-6)  # 3.41, the limit


def test_every_10_minutes_first_flaps_at_the_8th_transition() -> None:
    steps = toggle(10, 12)
    first = next(i for i, (_, _, f, _) in enumerate(steps) if f)
    assert first == 7  # zero-based: the 8th transition, at t = 70 min
    assert steps[first][0] == 70


def test_cap_bounds_the_score() -> None:
    steps = toggle(0.1, 100)
    assert max(s for _, s, _, _ in steps) == DEFAULTS.max_score
    # Suppression then ends within half_life * log2(max/exit).
    assert time_to_calm(FlapState(8.0, T0, True), DEFAULTS) / 60 == pytest.approx(
        30 * math.log2(8 / 1.5)
    )


def test_hysteresis_between_exit_and_enter() -> None:
    flapping = FlapState(3.0, T0, True)
    state, change = evaluate(flapping, T0, DEFAULTS)
    assert state.flapping and change is None  # 3.0 > exit: stays flapping
    calm = FlapState(3.9, T0, False)
    state, change = evaluate(calm, T0, DEFAULTS)
    assert not state.flapping and change is None  # 3.9 < enter: stays calm
    state, change = evaluate(FlapState(1.5, T0, True), T0, DEFAULTS)
    assert not state.flapping and change is FlapChange.STOPPED  # at exit exactly: stops


def test_late_transition_counts_as_if_in_order() -> None:
    times = [T0 + timedelta(minutes=m) for m in (0, 5, 10, 15)]
    in_order = FlapState()
    for t in times:
        in_order = add_transition(in_order, t, DEFAULTS)
    shuffled = FlapState()
    for t in (times[2], times[0], times[3], times[1]):
        shuffled = add_transition(shuffled, t, DEFAULTS)
    end = T0 + timedelta(minutes=20)
    assert score_at(in_order, end, DEFAULTS) == pytest.approx(score_at(shuffled, end, DEFAULTS))


def test_disabled_never_flaps_and_stops_an_ongoing_flap() -> None:
    off = FlapParams(1800, 4.0, 1.5, 8.0, enabled=False)
    assert not any(f for _, _, f, _ in toggle(1, 20, off))
    state, change = evaluate(FlapState(6.0, T0, True), T0, off)
    assert not state.flapping and change is FlapChange.STOPPED
