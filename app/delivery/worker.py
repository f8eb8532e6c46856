"""The outbox delivery loop: claim, send, record — at least once, never silently lost.

Each turn records the outcomes of finished sends and claims new due rows in
one short transaction; the sends themselves run outside any transaction,
each under its integration's total deadline. A claim is a lease: if this
process dies, the lease expires and any worker delivers the row again, with
the same dedup key. The loop wakes at once when ingest commits new rows, so
a healthy sink gets a notification within milliseconds of the webhook.

The loop claims ahead: rows beyond what it may send at once wait, claimed,
in a local queue, and the next send starts the moment one lands, while the
next transaction refills the queue. Without it sends and transactions took
turns and a fast sink idled half the time. While that queue still has rows,
the loop lets outcomes gather for a few milliseconds before the next
transaction: fewer, larger transactions, and no send waits. How many rows a
destination may hold waiting is bounded by its lease (see ``_hold``).

A send task, once its row is done, goes on with the next waiting row that
has room, in the same task: the HTTP connection it just used is reused at
once. With a task per row, connections sat idle between a row's end and the
next task's start, and the HTTP client's pool checks every idle connection
on every request; that cost the client about 40% more CPU per request
(``tests/perf/delivery.py`` measures both shapes).
"""

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import timedelta

import httpx

from app.config.compiled import CompiledConfig, Integration
from app.core.domain import integration_key
from app.core.ratelimit import RateLimit, TokenBucket
from app.delivery.attempt import Attempt, Prepared, prepare
from app.notifiers.base import BuildContext
from app.ops.clock import Clock
from app.ops.failpoints import failpoint
from app.ops.metrics import Metrics
from app.ops.tracing import NOOP_SPAN, Span, Tracer
from app.store import outbox
from app.store.engine import Database
from app.store.outbox import Claimed, Outcome, Result

log = logging.getLogger(__name__)

_GATHER_S = 0.01
# Shares of a destination's sends in flight that may wait, claimed, behind
# them. One share ran dry between transactions at a fast sink: its send tasks
# stopped, their connections sat idle, and the HTTP client's pool polls every
# idle connection on each request. Three shares (tests/perf/delivery.py,
# same rounds): loop CPU per notification 1.95 → 1.80 ms on SQLite and
# 1.97 → 1.81 ms on PostgreSQL. Four, with the process holding three times
# its send slots: SQLite 47% → 58% of the client's ceiling, loop CPU 1.22 →
# 1.01 ms (docs/performance.md, sixth stop).
_MAX_WAITING_SHARES = 4
# Rows one process may hold (sending, or claimed and waiting), in multiples of
# delivery.concurrency.
_HELD_PER_SLOT = 3


class DeliveryWorker:
    """Delivers the outbox from one process (any number of them may share a PostgreSQL)."""

    def __init__(
        self,
        db: Database,
        runtime: Callable[[], CompiledConfig],
        clock: Clock,
        metrics: Metrics,
        http: httpx.AsyncClient,
        *,
        worker_id: str,
        wake: asyncio.Event,
        version: str = "dev",
        poll_interval: float = 0.5,
        rand: Callable[[], float] = random.random,
        tracer: Tracer | None = None,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._clock = clock
        self._metrics = metrics
        self._http = http
        self._worker_id = worker_id[:64]
        self._wake = wake
        self._version = version
        self._poll = poll_interval
        self._rand = rand
        self._tracer = tracer or Tracer()
        self._inflight: set[asyncio.Task[None]] = set()  # one row sending in each
        # In flight or claimed and waiting, per integration key.
        self._per_integration: Counter[str] = Counter()
        self._sending: Counter[str] = Counter()  # in flight only
        self._ready: deque[tuple[Claimed, CompiledConfig]] = deque()
        self._outcomes: list[Outcome] = []
        self._landed = asyncio.Event()
        self._stopping = False
        self._prepared: dict[str, Prepared] = {}
        self._holds: dict[str, int] = {}
        self._prepared_for: CompiledConfig | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._expired_checked = 0.0

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def held(self) -> int:
        """Rows this worker holds a lease on: sending, or claimed and waiting."""
        return len(self._inflight) + len(self._ready)

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:
                # The database is down or busy: keep the outcomes, try again.
                log.warning("delivery step failed", extra={"error": str(exc).splitlines()[0][:200]})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                continue
            await self._wait(stop)
        await self.shutdown()

    async def _wait(self, stop: asyncio.Event) -> None:
        if self._outcomes:
            if self._ready and not stop.is_set():
                # Sends still have claimed rows to start: let more outcomes
                # land, so one transaction records (and refills) more of them.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=_GATHER_S)
            return
        waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake, self._landed)]
        try:
            await asyncio.wait(waiters, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self._wake.clear()
        self._landed.clear()

    async def step(self) -> int:
        """Record finished sends and claim due rows in one transaction; start the sends."""
        runtime = self._runtime()
        outcomes, self._outcomes = self._outcomes, []
        # Claim up to _HELD_PER_SLOT times the process's send slots; each
        # destination's own bound is _hold.
        free = _HELD_PER_SLOT * runtime.config.delivery.concurrency - self.held
        claimed: list[Claimed] = []
        lost: set[int] = set()
        if not outcomes and (free <= 0 or self._stopping):
            return 0
        now = self._clock.now()
        try:
            async with self._db.write() as conn:
                lost = await outbox.finish(conn, outcomes, self._worker_id)
                if free > 0 and not self._stopping:
                    claimed = await outbox.claim(
                        conn,
                        self._db.kind,
                        worker=self._worker_id,
                        token=uuid.uuid4().hex,
                        now=now,
                        lease_until=now + timedelta(seconds=_lease_s(runtime)),
                        limit=free,
                        room=lambda r, i, x: self._room(runtime, r, i, x),
                        exclude=self._saturated(runtime),
                        expired_leases=self._expired_check_due(),
                        by_reference=lambda r, i, x: self._by_reference(runtime, r, i, x),
                    )
        except BaseException:
            self._outcomes = outcomes + self._outcomes  # record them next time
            raise
        self._account(outcomes, lost)
        for row in claimed:
            failpoint("after_claim_commit")
            self._per_integration[row.integration_key] += 1
            self._ready.append((row, runtime))
        self._pump()
        return len(claimed)

    def _expired_check_due(self) -> bool:
        # Expired leases are rare (a worker died or hung): look once a second.
        now = time.monotonic()
        if now - self._expired_checked < 1.0:
            return False
        self._expired_checked = now
        return True

    async def drain(self) -> None:
        """Run until nothing is due or in flight (tests and one-shot use; bound it
        with ``asyncio.timeout``)."""
        while True:
            started = await self.step()
            if self._inflight or self._ready:
                await asyncio.wait(list(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            if not started and not self._outcomes:
                return

    async def shutdown(self) -> None:
        """Finish in-flight sends (bounded), hand back the rest, record everything."""
        self._stopping = True
        while self._ready:  # claimed, never started: back in line at once
            row, _ = self._ready.popleft()
            self._release_unstarted(row)
        if self._inflight:
            runtime = self._runtime()
            grace = min(_grace_s(runtime), runtime.config.delivery.shutdown_grace.total_seconds())
            await asyncio.wait(list(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for _ in range(3):
            if not self._outcomes:
                break
            try:
                await self.step()
            except Exception as exc:
                log.warning(
                    "could not record outcomes at shutdown", extra={"error": str(exc)[:200]}
                )
                await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ sending

    def _saturated(self, runtime: CompiledConfig) -> list[tuple[str, str, int]]:
        out = []
        for key, count in self._per_integration.items():
            integration = runtime.integrations.get(key)
            if integration is not None and count >= self._hold(runtime, integration):
                out.append((integration.receiver, integration.name, integration.index))
        return out

    def _pump(self) -> None:
        """Start waiting rows while their destination and the process have room."""
        while (found := self._take(len(self._inflight))) is not None:
            self._start(*found)

    def _take(self, sending: int) -> tuple[Claimed, CompiledConfig] | None:
        """The first waiting row whose destination has room, now counted as sending,
        if the process has room beside ``sending`` other sends."""
        if not self._ready or self._stopping:
            return None
        limit = self._runtime().config.delivery.concurrency
        if sending >= limit:
            return None
        for i, (row, runtime) in enumerate(self._ready):
            integration = runtime.integrations.get(row.integration_key)
            cap = integration.concurrency_cap if integration is not None else limit
            if self._sending[row.integration_key] < cap:
                del self._ready[i]
                self._sending[row.integration_key] += 1
                return row, runtime
        return None

    def _release_unstarted(self, row: Claimed) -> None:
        self._per_integration[row.integration_key] -= 1
        if self._per_integration[row.integration_key] <= 0:
            del self._per_integration[row.integration_key]
        self._outcomes.append(self._released(row, 0.0))

    def _released(self, row: Claimed, duration_ms: float) -> Outcome:
        """Handed back at shutdown: due again at once, the attempt not held against it."""
        return Outcome(
            row.id,
            row.lease_token,
            row.attempt,
            Result.RELEASED,
            self._clock.now(),
            duration_ms,
            row.integration,
            started_at=row.claimed_at,
            error="released unsent at shutdown",
        )

    def _by_reference(self, runtime: CompiledConfig, receiver: str, name: str, index: int) -> bool:
        """Whether this destination edits or threads its messages (its rows need a reference)."""
        integration = runtime.integrations.get(integration_key(receiver, name, index))
        if integration is None:
            return False
        try:
            return self._prepare(runtime, integration).mode is not None
        except Exception:
            return False  # it cannot be built: its attempt says so and goes dead

    def _room(self, runtime: CompiledConfig, receiver: str, name: str, index: int) -> int:
        """How many more rows of this destination may be held (sending or waiting)."""
        integration = runtime.integrations.get(integration_key(receiver, name, index))
        if integration is None:  # gone from the config: it will go dead at once
            return runtime.config.delivery.concurrency
        return self._hold(runtime, integration) - self._per_integration.get(integration.key, 0)

    def _hold(self, runtime: CompiledConfig, integration: Integration) -> int:
        """How many rows this destination may hold: its sends in flight, and
        as many shares of them waiting as its lease allows.

        A waiting row starts once each send ahead of it in its destination
        has ended, so behind ``k`` shares it starts within ``k`` send
        deadlines and ends within ``k + 1``; one deadline more is left for
        other destinations' sends holding the process's slots. ``k`` is the
        lease in deadlines less two, at least one share (the lease is at
        least two deadlines) and at most four (60 s / 10 s by default), so
        even when every send runs to its deadline a waiting row is sent
        within its lease. Should it wait longer still, the attempt hands it
        back unsent rather than send past the lease (``Attempt.run``). A
        rate-limited destination keeps one share: its sends also wait for a
        token (up to a third of the lease), and its rate, not the queue,
        bounds it.
        """
        self._prepared_current(runtime)
        found = self._holds.get(integration.key)
        if found is None:
            try:
                limited = self._prepare(runtime, integration).rate_limit is not None
            except Exception:
                limited = True  # it cannot be built: its rows go dead at once
            deadlines = _lease_s(runtime) / integration.delivery.timeout.total_seconds()
            shares = 1 if limited else max(1, min(_MAX_WAITING_SHARES, int(deadlines) - 2))
            found = self._holds[integration.key] = (1 + shares) * integration.concurrency_cap
        return found

    def _start(self, row: Claimed, runtime: CompiledConfig) -> None:
        """Send ``row`` (already counted as sending) in a task of its own."""
        task = asyncio.create_task(self._send_in_turn(row, runtime), name=f"deliver-{row.id}")
        self._inflight.add(task)

        def done(_: asyncio.Task[None]) -> None:
            # Each row already set ``_landed`` as it finished.
            self._inflight.discard(task)
            self._pump()  # rows it left, if any, start now, not after a transaction

        task.add_done_callback(done)

    async def _send_in_turn(self, row: Claimed, runtime: CompiledConfig) -> None:
        """Send ``row``, then the next waiting rows with room, one at a time."""
        current: tuple[Claimed, CompiledConfig] | None = (row, runtime)
        while current is not None:
            row, runtime = current
            key = row.integration_key
            try:
                await self._deliver(row, runtime)
            finally:
                for counter in (self._per_integration, self._sending):
                    counter[key] -= 1
                    if counter[key] <= 0:
                        del counter[key]
                self._landed.set()
            # This task is one of the sends in flight: count the others.
            current = self._take(len(self._inflight) - 1)

    def _prepared_current(self, runtime: CompiledConfig) -> None:
        """Forget what was worked out per destination for an older config."""
        if runtime is not self._prepared_for:
            self._prepared = {}
            self._holds = {}
            self._prepared_for = runtime

    def _prepare(self, runtime: CompiledConfig, integration: Integration) -> Prepared:
        """The destination's notifier and templates, built once per config."""
        self._prepared_current(runtime)
        found = self._prepared.get(integration.key)
        if found is None:
            ctx = BuildContext(
                global_config=runtime.config.global_,
                http=self._http,
                clock=self._clock,
                version=self._version,
            )
            found = self._prepared[integration.key] = prepare(integration, ctx)
        return found

    async def _deliver(self, row: Claimed, runtime: CompiledConfig) -> None:
        clock0 = time.perf_counter()
        integration = runtime.integrations.get(row.integration_key)
        attempt = Attempt(
            self._clock,
            self._metrics,
            self._rand,
            prepared=lambda i: self._prepare(runtime, i),
            bucket=self._bucket,
            lease_s=_lease_s(runtime),
        )
        if not self._tracer.enabled:
            # No span: its attributes and context manager were a measurable
            # part of a send's own CPU (tests/perf/delivery.py).
            outcome = await self._attempt(attempt, row, integration, NOOP_SPAN, clock0)
            # Appended after the await: the list is swapped while a send runs.
            self._outcomes.append(outcome)
            return
        # The span names the destination by receiver and integration only:
        # its URL or key is often the credential.
        with self._tracer.span(
            f"deliver {row.integration}",
            kind="client",
            attributes={
                "alertrelay.notification_id": row.id,
                "alertrelay.receiver": row.receiver,
                "alertrelay.integration": row.integration,
                "alertrelay.kind": row.kind.value,
                "alertrelay.attempt": row.attempt,
            },
        ) as span:
            outcome = await self._attempt(attempt, row, integration, span, clock0)
        self._outcomes.append(outcome)

    async def _attempt(
        self,
        attempt: Attempt,
        row: Claimed,
        integration: Integration | None,
        span: Span,
        clock0: float,
    ) -> Outcome:
        try:
            outcome = await attempt.run(row, integration)
        except asyncio.CancelledError:
            self._outcomes.append(self._released(row, (time.perf_counter() - clock0) * 1000))
            span.set("alertrelay.outcome", Result.RELEASED.value)
            raise
        span.set("alertrelay.outcome", outcome.result.value)
        if outcome.status_code is not None:
            span.set("http.response.status_code", outcome.status_code)
        if outcome.result in (Result.RETRY, Result.DEAD) and outcome.error:
            span.error(outcome.error[:200])
        return outcome

    def _bucket(self, destination: str, limit: RateLimit) -> TokenBucket:
        bucket = self._buckets.get(destination)
        if bucket is None or bucket.limit != limit:
            bucket = self._buckets[destination] = TokenBucket(limit, time.monotonic())
        return bucket

    def _account(self, outcomes: list[Outcome], lost: set[int]) -> None:
        m = self._metrics
        for o in outcomes:
            if o.id in lost:
                m.lease_lost.inc()
                log.warning(
                    "lease lost: another worker owns this notification now",
                    extra={"notification": o.id},
                )
                continue
            if o.message is not None and o.message.get("action") == "edited":
                m.child(m.messages_updated, o.integration).inc()
            label = {Result.SENT: "sent", Result.RETRY: "retried", Result.DEAD: "dead"}.get(
                o.result
            )
            if label is None:
                continue
            m.child(m.notifications, o.integration, label).inc()


def default_worker_id() -> str:
    """``host:pid``: names this process in leases and in the delivery log."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _lease_s(runtime: CompiledConfig) -> float:
    leases = [i.delivery.lease.total_seconds() for i in runtime.integrations.values()]
    return max([runtime.config.delivery.lease.total_seconds(), *leases])


def _grace_s(runtime: CompiledConfig) -> float:
    timeouts = [i.delivery.timeout.total_seconds() for i in runtime.integrations.values()]
    return max([runtime.config.delivery.timeout.total_seconds(), *timeouts]) + 1.0
