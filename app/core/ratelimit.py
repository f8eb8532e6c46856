"""Token buckets per destination: stay under each service's published limit.

A bucket holds up to ``burst`` tokens and refills at ``per_second``. A
reservation takes a token now or, when none is left, the next one to come:
the caller learns how long to wait, and the wait is owed whether or not it
waits (reservations queue). ``cancel`` gives a reservation back. Time is
passed in, so the arithmetic is testable as a table.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int = 1


class TokenBucket:
    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(
                float(self.limit.burst), self._tokens + (now - self._at) * self.limit.per_second
            )
            self._at = now

    def reserve(self, now: float) -> float:
        """Take a token; return the seconds to wait before using it (0 if none)."""
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.limit.per_second

    def cancel(self) -> None:
        """Give back a reservation that will not be used."""
        self._tokens = min(float(self.limit.burst), self._tokens + 1.0)

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens
