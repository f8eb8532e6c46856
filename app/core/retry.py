"""When to try a failed notification again, or to give up: a pure policy.

Exponential backoff with full jitter (each wait uniform in
[0, min(max_backoff, initial_backoff * 2^(n-1))]) unless the sink said when
with ``Retry-After`` (seconds or an HTTP date), which is honoured up to
``max_retry_after``. A notification is dead after ``max_attempts`` attempts,
or when the next attempt would fall past ``max_age`` after it was queued.
"""

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from app.config.fields import DeliveryConfig


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    max_age_s: float
    initial_backoff_s: float
    max_backoff_s: float
    max_retry_after_s: float

    @classmethod
    def from_config(cls, cfg: DeliveryConfig) -> "RetryPolicy":
        return cls(
            max_attempts=cfg.max_attempts,
            max_age_s=cfg.max_age.total_seconds(),
            initial_backoff_s=cfg.initial_backoff.total_seconds(),
            max_backoff_s=cfg.max_backoff.total_seconds(),
            max_retry_after_s=cfg.max_retry_after.total_seconds(),
        )


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime
    delay_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value; None when absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            # HTTP dates are GMT: asctime's form has no zone (RFC 9110 §5.6.7).
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


def backoff_ceiling(attempt: int, policy: RetryPolicy) -> float:
    """The largest wait after attempt number ``attempt`` (1-based)."""
    exponent = min(max(attempt - 1, 0), 62)  # 2**62 seconds is past any cap
    growth: float = 2.0**exponent
    return min(policy.max_backoff_s, policy.initial_backoff_s * growth)


def next_attempt(
    attempt: int,
    queued_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> Retry | GiveUp:
    """Decide after failed attempt number ``attempt`` (1-based)."""
    if attempt >= policy.max_attempts:
        return GiveUp(f"gave up after {attempt} attempts")
    if retry_after_s is not None:
        delay = min(retry_after_s, policy.max_retry_after_s)
    else:
        delay = rand() * backoff_ceiling(attempt, policy)
    at = now + timedelta(seconds=delay)
    if (at - queued_at).total_seconds() > policy.max_age_s:
        return GiveUp(f"gave up after {attempt} attempts: max_age of {policy.max_age_s:g}s reached")
    return Retry(at, delay)
