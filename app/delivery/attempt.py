"""One delivery attempt: prepare → send → classify → outcome.

Everything one claimed notification goes through between its claim and the
transaction that records how it went: the destination's notifier and
templates are prepared (:func:`prepare`, cached by the worker per config),
the message is built from the stored payload, the destination's rate limit
is respected, the send runs under the integration's total deadline, and its
error, if any, is classified into retry (with the backoff or the sink's
Retry-After) or dead. ``routes test --render`` prepares and builds the very
same request through :func:`prepare` and :meth:`Prepared.message`, without
sending it.

A row with a message key, for a destination that edits or threads its
messages, is sent by reference (:class:`_ByRef`): with the reference read at
claim it edits the message (or replies in its thread), posts the first one,
or posts again when the message was deleted; an edit older than what the
message shows is settled as skipped without sending. What it did and the
reference to keep ride the outcome into the transaction that records it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Template

from app.config.compiled import Integration
from app.core.message import Message, build_message, compile_template
from app.core.payload import NoticePayload
from app.core.ratelimit import RateLimit, TokenBucket
from app.core.retry import GiveUp, RetryPolicy, next_attempt
from app.notifiers import build_notifier
from app.notifiers.base import (
    BuildContext,
    DeliveryError,
    MessageGone,
    MessageMode,
    MessageRef,
    Notifier,
    Referencing,
    redact,
)
from app.ops.clock import Clock
from app.ops.failpoints import failpoint
from app.ops.metrics import Metrics
from app.store.message_refs import RefWrite
from app.store.outbox import Claimed, Outcome, Result

log = logging.getLogger(__name__)

_MAX_ERROR = 1000
# Kept between a send's deadline and its lease's end, for the outcome to
# reach the transaction that records it while the lease is ours: a second,
# or a tenth of a lease shorter than ten seconds (a lease may be as short as
# two deadlines).
_LEASE_MARGIN_S = 1.0


def effective_rate_limit(integration: Integration, notifier: Notifier) -> RateLimit | None:
    """The integration's ``rate_limit:`` if set (``per_second: 0`` = none), else the service's."""
    configured = integration.config.rate_limit
    if configured is not None:
        if configured.per_second <= 0:
            return None
        return RateLimit(configured.per_second, configured.burst)
    return notifier.rate_limit()


@dataclass
class Prepared:
    """One destination ready to send: its notifier, templates, secrets and limit."""

    notifier: Notifier
    title: Template | None
    text: Template | None
    secrets: list[str]  # longest first, for redaction
    rate_limit: RateLimit | None
    # Worked out once per config, not per attempt: the Protocol check behind
    # ``mode`` alone was ~2% of the worker's time at a fast sink.
    mode: MessageMode | None
    policy: RetryPolicy

    def message(
        self,
        payload: NoticePayload,
        *,
        notification_id: int,
        idempotency_key: str,
        receiver: str,
        attempt: int,
    ) -> Message:
        return build_message(
            payload,
            notification_id=notification_id,
            idempotency_key=idempotency_key,
            receiver=receiver,
            attempt=attempt,
            title=self.title,
            text=self.text,
        )


def prepare(integration: Integration, ctx: BuildContext) -> Prepared:
    """Build the notifier and compile the templates (raises when the config cannot)."""
    notifier = build_notifier(integration.name, integration.config, ctx)
    return Prepared(
        notifier=notifier,
        title=compile_template(integration.config.title),
        text=compile_template(integration.config.text),
        secrets=sorted(
            set(notifier.secrets()) | set(integration.config.secret_values()),
            key=len,
            reverse=True,
        ),
        rate_limit=effective_rate_limit(integration, notifier),
        mode=message_mode(notifier),
        policy=RetryPolicy.from_config(integration.delivery),
    )


@dataclass
class Attempt:
    """What an attempt needs from the worker that runs it."""

    clock: Clock
    metrics: Metrics
    rand: Callable[[], float]
    # The worker's prepared destinations (cached per config) and token buckets.
    prepared: Callable[[Integration], Prepared]
    bucket: Callable[[str, RateLimit], TokenBucket]
    lease_s: float

    async def run(self, row: Claimed, integration: Integration | None) -> Outcome:
        clock0 = time.perf_counter()

        by_ref = _ByRef()

        def outcome(
            result: Result,
            *,
            error: str | None = None,
            status_code: int | None = None,
            next_attempt_at: datetime | None = None,
        ) -> Outcome:
            return Outcome(
                row.id,
                row.lease_token,
                row.attempt,
                result,
                self.clock.now(),
                (time.perf_counter() - clock0) * 1000,
                row.integration,
                started_at=row.claimed_at,
                next_attempt_at=next_attempt_at,
                error=error,
                status_code=status_code,
                message=by_ref.message,
                ref_write=by_ref.write,
            )

        if integration is None:
            return outcome(Result.DEAD, error=f"{row.integration_key} is no longer in the config")
        try:
            prepared = self.prepared(integration)
        except Exception as exc:
            return outcome(
                Result.DEAD, error=f"{integration.name}: cannot build: {exc}"[:_MAX_ERROR]
            )
        policy = prepared.policy
        if row.attempt > policy.max_attempts:
            # Claimed again after its lease ran out, with no attempts left: the
            # process died during the last ones (a crash loop ends here).
            return outcome(
                Result.DEAD,
                error=f"gave up after {row.attempt - 1} attempts; the last was interrupted",
            )
        # A stale edit is settled before it takes a rate-limit slot.
        mode = prepared.mode if row.message_key else None
        if mode is not None and _stale(row, mode):
            assert row.message_ref is not None
            by_ref.message = {
                "action": "skipped",
                "ref": row.message_ref.ref,
                "newer": row.message_ref.notification_id,
            }
            return outcome(
                Result.SKIPPED,
                error=(
                    "not sent: its message already shows a newer state "
                    f"(notification {row.message_ref.notification_id})"
                ),
            )
        # A row that waited, claimed, behind other sends is sent only while
        # its lease outlasts the send: past the lease, another worker may
        # take the row and send it too. Otherwise it goes back in line, due
        # at once, the attempt not counted (as at shutdown).
        deadline_s = integration.delivery.timeout.total_seconds()
        spare_s = (
            self.lease_s
            - (self.clock.now() - row.claimed_at).total_seconds()
            - deadline_s
            - min(_LEASE_MARGIN_S, self.lease_s / 10)
        )
        if spare_s < 0:
            return outcome(
                Result.RELEASED,
                error=(
                    "handed back unsent: too little of its lease was left "
                    f"for a {deadline_s:g}s send"
                ),
            )
        if prepared.rate_limit is not None:
            bucket = self.bucket(prepared.notifier.destination(), prepared.rate_limit)
            wait = bucket.reserve(time.monotonic())
            # Waiting holds a claimed row, so only for a fraction of the lease
            # and never past what the lease leaves; otherwise the row goes
            # back in line for when a slot is free.
            if wait > min(self.lease_s / 3, spare_s):
                bucket.cancel()
                return outcome(
                    Result.DEFERRED,
                    error=f"rate limited: next slot in {wait:.1f}s",
                    next_attempt_at=self.clock.now() + timedelta(seconds=wait),
                )
            if wait > 0:
                await asyncio.sleep(wait)
        message = prepared.message(
            row.payload,
            notification_id=row.id,
            idempotency_key=row.idempotency_key,
            receiver=row.receiver,
            attempt=row.attempt,
        )
        # send: by reference (post, then edit or reply in its thread), or plainly
        if mode is not None:
            assert isinstance(prepared.notifier, Referencing)
            notifier = prepared.notifier
            error, note = await _send(
                row, integration, prepared, lambda: by_ref.send(row, notifier, mode, message)
            )
        else:
            error, note = await _send(
                row, integration, prepared, lambda: prepared.notifier.send(message)
            )
        failpoint("after_send_before_mark")
        self.metrics.child(self.metrics.notification_duration, integration.name).observe(
            time.perf_counter() - clock0
        )
        if error is None:
            return outcome(Result.SENT, error=note)
        # classify
        text = redact(error.message, prepared.secrets)[:_MAX_ERROR]
        decision = (
            next_attempt(
                row.attempt,
                row.queued_at,
                self.clock.now(),
                policy,
                error.retry_after,
                self.rand,
            )
            if error.retryable
            else GiveUp("not retryable")
        )
        if isinstance(decision, GiveUp):
            log.warning(
                "notification dead",
                extra={
                    "notification": row.id,
                    "receiver": row.receiver,
                    "integration": integration.name,
                    "error": text,
                    "why": decision.reason,
                },
            )
            return outcome(
                Result.DEAD, error=f"{text} ({decision.reason})", status_code=error.status_code
            )
        log.info(
            "notification will be retried",
            extra={
                "notification": row.id,
                "integration": integration.name,
                "error": text,
                "in_s": round(decision.delay_s, 2),
            },
        )
        return outcome(
            Result.RETRY, error=text, status_code=error.status_code, next_attempt_at=decision.at
        )


def message_mode(notifier: Notifier) -> MessageMode | None:
    """Whether this destination edits (or threads) its messages, as configured."""
    return notifier.message_mode() if isinstance(notifier, Referencing) else None


def _stale(row: Claimed, mode: MessageMode) -> bool:
    """An edit from a row older than the one its message shows would go backwards."""
    stored = row.message_ref
    return mode is MessageMode.EDIT and stored is not None and stored.notification_id > row.id


@dataclass
class _ByRef:
    """One attempt's dealings with the row's chat message, recorded with its outcome."""

    message: dict[str, Any] | None = None  # what was done, for the row
    write: RefWrite | None = None  # the reference to store (or forget)

    def _record(self, row: Claimed, ref: MessageRef | None) -> RefWrite:
        assert row.message_key is not None
        return RefWrite(row.integration_key, row.message_key, row.id, row.created_at, ref)

    async def send(
        self, row: Claimed, notifier: Referencing, mode: MessageMode, message: Message
    ) -> str | None:
        stored = row.message_ref.ref if row.message_ref is not None else None
        if stored is not None and mode is MessageMode.EDIT:
            try:
                await notifier.edit(message, stored)
            except MessageGone:
                # Deleted in the chat: forget it (kept so if the post below
                # fails) and post a new message in this same attempt.
                self.message = {"action": "gone", "ref": stored}
                self.write = self._record(row, None)
                posted = await notifier.post(message, None)
                self.message = {"action": "reposted", "ref": posted, "gone": stored}
                self.write = self._record(row, posted)
                return "the message was gone: posted a new one"
            self.message = {"action": "edited", "ref": stored}
            self.write = self._record(row, stored)
            return None
        if stored is not None:  # MessageMode.THREAD: a reply under the first message
            posted = await notifier.post(message, stored)
            self.message = {"action": "replied", "ref": posted, "thread": stored}
            return None
        posted = await notifier.post(message, None)
        self.message = {"action": "posted", "ref": posted}
        self.write = self._record(row, posted)
        return None


async def _send(
    row: Claimed,
    integration: Integration,
    prepared: Prepared,
    send: Callable[[], Awaitable[str | None]],
) -> tuple[DeliveryError | None, str | None]:
    """Send under the integration's total deadline: (error, note); never raises."""
    timeout_s = integration.delivery.timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout_s):
            return None, await send()
    except DeliveryError as exc:
        return exc, None
    except TimeoutError:
        return DeliveryError(
            f"{integration.name}: no complete answer within {timeout_s:g}s", retryable=True
        ), None
    except Exception as exc:  # a bug in a notifier: keep the loop and the row alive
        # Its text, and its traceback's, may quote a URL or key: log them
        # formatted and redacted, never as exc_info (a handler would print
        # them raw, or with the frames' locals).
        log.error(
            "notifier failed",
            extra={
                "notification": row.id,
                "integration": integration.name,
                "error_type": type(exc).__name__,
                "error": redact(str(exc), prepared.secrets)[:_MAX_ERROR],
                "traceback": redact(
                    logging.Formatter().formatException((type(exc), exc, exc.__traceback__)),
                    prepared.secrets,
                )[-4 * _MAX_ERROR :],
            },
        )
        return DeliveryError(
            f"{integration.name}: internal error {type(exc).__name__}", retryable=True
        ), None
