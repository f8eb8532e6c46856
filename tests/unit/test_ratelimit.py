"""Token bucket arithmetic, time passed in."""

import pytest

from app.core.ratelimit import RateLimit, TokenBucket


def test_burst_then_steady_rate() -> None:
    bucket = TokenBucket(RateLimit(per_second=2.0, burst=3), now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(6)]
    # Three at once (the burst), then one every half second, queued.
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5])


def test_refills_over_time_up_to_the_burst() -> None:
    bucket = TokenBucket(RateLimit(per_second=1.0, burst=2), now=0.0)
    bucket.reserve(0.0)
    bucket.reserve(0.0)
    assert bucket.available(0.5) == pytest.approx(0.5)
    assert bucket.available(100.0) == pytest.approx(2.0)  # never more than the burst
    assert bucket.reserve(100.0) == 0.0


def test_cancel_gives_a_reservation_back() -> None:
    bucket = TokenBucket(RateLimit(per_second=1.0, burst=1), now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    bucket.cancel()
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # the cancelled slot is free again
