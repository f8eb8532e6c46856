"""Flap detection: an exponentially decayed transition score with hysteresis.

The scheme of RFC 2439 route-flap damping: each
firing↔resolved transition adds 1; the score halves every ``half_life`` and
is capped at ``max_score``; at ``enter_score`` the alert starts flapping and
at or under ``exit_score`` it stops.

Transitions are added at the time they *happened* (the alert's own
timestamps), not when a webhook arrived. Without the cap the score is then a
plain sum of decayed unit pulses, which does not depend on the order or
batching of webhooks: reordered replays and duplicates cannot change it.
"""

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FlapParams:
    half_life_s: float
    enter_score: float
    exit_score: float
    max_score: float
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FlapState:
    score: float = 0.0
    at: datetime | None = None  # the time ``score`` is valued at
    flapping: bool = False


class FlapChange(enum.StrEnum):
    STARTED = "started"
    STOPPED = "stopped"


def _factor(elapsed_s: float, half_life_s: float) -> float:
    return math.pow(2.0, -elapsed_s / half_life_s)


def score_at(state: FlapState, when: datetime, params: FlapParams) -> float:
    """The score decayed to ``when`` (never grown: earlier times return it as is)."""
    if state.at is None or when <= state.at:
        return state.score
    return state.score * _factor((when - state.at).total_seconds(), params.half_life_s)


def add_transition(state: FlapState, at: datetime, params: FlapParams) -> FlapState:
    """Add one transition that happened at ``at``."""
    if state.at is None or at >= state.at:
        score = score_at(state, at, params) + 1.0
        return FlapState(min(score, params.max_score), at, state.flapping)
    # A transition older than the score's timestamp (delivered late)
    # contributes its decayed pulse, as it would have in order.
    pulse = _factor((state.at - at).total_seconds(), params.half_life_s)
    return FlapState(min(state.score + pulse, params.max_score), state.at, state.flapping)


def add_transitions(state: FlapState, times: Iterable[datetime], params: FlapParams) -> FlapState:
    for at in times:
        state = add_transition(state, at, params)
    return state


def starts_flapping(state: FlapState, at: datetime, params: FlapParams) -> bool:
    """Whether the score at ``at`` (a transition's own time) reaches ``enter_score``."""
    return (
        params.enabled and not state.flapping and score_at(state, at, params) >= params.enter_score
    )


def evaluate(
    state: FlapState, now: datetime, params: FlapParams
) -> tuple[FlapState, FlapChange | None]:
    """Decay to ``now`` and apply the hysteresis thresholds."""
    score = score_at(state, now, params)
    at = now if state.at is None or now > state.at else state.at
    if not params.enabled:
        return FlapState(score, at, False), (FlapChange.STOPPED if state.flapping else None)
    if not state.flapping and score >= params.enter_score:
        return FlapState(score, at, True), FlapChange.STARTED
    if state.flapping and score <= params.exit_score:
        return FlapState(score, at, False), FlapChange.STOPPED
    return FlapState(score, at, state.flapping), None


def time_to_calm(state: FlapState, params: FlapParams) -> float:
    """Seconds from ``state.at`` until the score falls to ``exit_score``."""
    if state.score <= params.exit_score:
        return 0.0
    return params.half_life_s * math.log2(state.score / params.exit_score)
