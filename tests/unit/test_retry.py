"""The retry policy as a table: backoff with full jitter, Retry-After, giving up (pure, time passed in)."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.config.fields import DeliveryConfig
from app.core.retry import (
    GiveUp,
    Retry,
    RetryPolicy,
    backoff_ceiling,
    next_attempt,
    parse_retry_after,
)

NOW = datetime(2026, 11, 21, 19, 16, 43, tzinfo=UTC)
# The documented defaults, except a 60 s cap so the cap shows within ten attempts.
POLICY = RetryPolicy(
    max_attempts=10, max_age_s=3600, initial_backoff_s=1, max_backoff_s=60, max_retry_after_s=600
)


def fixed(value: float):  # type: ignore[no-untyped-def]
    return lambda: value


def test_policy_from_config_defaults() -> None:
    policy = RetryPolicy.from_config(DeliveryConfig())
    assert policy == RetryPolicy(
        max_attempts=10,
        max_age_s=3600,
        initial_backoff_s=1,
        max_backoff_s=300,
        max_retry_after_s=600,
    )


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (1, 1),
        (2, 2),
        (3, 4),
        (4, 8),
        (5, 16),
        (6, 32),
        (7, 60),
        (8, 60),
        (10, 60),
        (1000, 60),
        (0, 1),
    ],
)
def test_backoff_ceiling_doubles_up_to_max_backoff(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt, POLICY) == ceiling


@pytest.mark.parametrize("attempt", range(1, 10))
@pytest.mark.parametrize(("rand", "share"), [(0.0, 0.0), (0.25, 0.25), (0.5, 0.5), (1.0, 1.0)])
def test_full_jitter_spans_zero_to_the_ceiling(attempt: int, rand: float, share: float) -> None:
    decision = next_attempt(attempt, NOW, NOW, POLICY, rand=fixed(rand))
    assert isinstance(decision, Retry)
    expected = share * min(60, 2 ** (attempt - 1))
    assert decision.delay_s == pytest.approx(expected)
    assert decision.at == NOW + timedelta(seconds=expected)


def test_jitter_draws_stay_within_bounds() -> None:
    import random

    rng = random.Random(7)
    for attempt in range(1, 10):
        for _ in range(200):
            decision = next_attempt(attempt, NOW, NOW, POLICY, rand=rng.random)
            assert isinstance(decision, Retry)
            assert 0 <= decision.delay_s <= min(60, 2 ** (attempt - 1))


def test_an_initial_backoff_other_than_one_second_scales_every_ceiling() -> None:
    policy = RetryPolicy(
        max_attempts=10,
        max_age_s=3600,
        initial_backoff_s=0.5,
        max_backoff_s=3,
        max_retry_after_s=600,
    )
    assert [backoff_ceiling(a, policy) for a in range(1, 6)] == [0.5, 1, 2, 3, 3]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("86400", 86400.0),  # parsed as given; next_attempt caps it
        (None, None),
        ("", None),
        ("   ", None),
        ("abc", None),
        ("5 seconds", None),
        ("-1", None),
        ("-0.5", None),
        ("NaN", None),
        ("nan", None),
        ("-inf", None),
        # HTTP dates (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 and asctime, all GMT).
        ("Sat, 21 Nov 2026 19:17:13 GMT", 30.0),
        ("Saturday, 21-Nov-26 19:17:13 GMT", 30.0),
        ("Sat Nov 21 19:17:13 2026", 30.0),
        ("Sat, 21 Nov 2026 19:16:43 GMT", 0.0),  # now
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # past: at once, never negative
        ("Sat, 21 Nov 2026 25:17:13 GMT", None),  # hour 25
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("Foo, 99 Bar 2026 00:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_date_in_another_zone() -> None:
    later = NOW + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(later, usegmt=True), NOW) == 90.0
    assert parse_retry_after("Sat, 21 Nov 2026 20:18:13 +0100", NOW) == 90.0


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        (3.0, 3.0),
        (0.0, 0.0),
        (600.0, 600.0),
        (601.0, 600.0),
        (86400.0, 600.0),
        (float("inf"), 600.0),
    ],
)
def test_retry_after_wins_over_backoff_up_to_its_cap(retry_after: float, delay: float) -> None:
    # rand would give the ceiling: the sink's word is used instead.
    decision = next_attempt(1, NOW, NOW, POLICY, retry_after_s=retry_after, rand=fixed(1.0))
    assert isinstance(decision, Retry)
    assert decision.delay_s == delay and decision.at == NOW + timedelta(seconds=delay)


def test_retry_after_may_exceed_max_backoff() -> None:
    decision = next_attempt(1, NOW, NOW, POLICY, retry_after_s=120.0, rand=fixed(0.0))
    assert isinstance(decision, Retry) and decision.delay_s == 120.0  # above the 60 s backoff cap


@pytest.mark.parametrize(("attempt", "gives_up"), [(1, False), (9, False), (10, True), (11, True)])
def test_gives_up_at_max_attempts(attempt: int, gives_up: bool) -> None:
    decision = next_attempt(attempt, NOW, NOW, POLICY, rand=fixed(0.0))
    if gives_up:
        assert isinstance(decision, GiveUp)
        assert decision.reason == f"gave up after {attempt} attempts"
    else:
        assert isinstance(decision, Retry)


def test_a_single_attempt_policy_never_retries() -> None:
    policy = RetryPolicy(
        max_attempts=1, max_age_s=3600, initial_backoff_s=1, max_backoff_s=60, max_retry_after_s=600
    )
    assert isinstance(next_attempt(1, NOW, NOW, policy, rand=fixed(0.0)), GiveUp)


@pytest.mark.parametrize(
    ("queued_ago", "rand", "retry_after", "gives_up"),
    [
        (0, 1.0, None, False),
        (3599, 0.0, None, False),  # next attempt at 3599 s: inside
        (3600, 0.0, None, False),  # exactly max_age: still inside
        (3599, 1.0, None, False),  # attempt 1: ceiling 1 s, lands on 3600 s
        (3599.5, 1.0, None, True),  # lands at 3600.5 s
        (3601, 0.0, None, True),  # already past
        (3000, 0.0, 600.0, False),  # Retry-After lands on 3600 s
        (3001, 0.0, 600.0, True),  # Retry-After lands past it
    ],
)
def test_gives_up_when_the_next_attempt_falls_past_max_age(
    queued_ago: float, rand: float, retry_after: float | None, gives_up: bool
) -> None:
    queued_at = NOW - timedelta(seconds=queued_ago)
    decision = next_attempt(1, queued_at, NOW, POLICY, retry_after_s=retry_after, rand=fixed(rand))
    if gives_up:
        assert isinstance(decision, GiveUp)
        assert decision.reason == "gave up after 1 attempts: max_age of 3600s reached"
    else:
        assert isinstance(decision, Retry)


def test_max_age_counts_from_queued_at_not_from_now() -> None:
    """A row queued again (replayed) a day after it was made gets the full budget."""
    created = NOW - timedelta(days=1)
    assert isinstance(next_attempt(1, created, NOW, POLICY, rand=fixed(0.0)), GiveUp)
    assert isinstance(next_attempt(1, NOW, NOW, POLICY, rand=fixed(0.0)), Retry)
