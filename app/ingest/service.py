"""The ingest use case: webhooks → alert state, transitions and outbox rows.

:func:`plan_batch` is pure: given the stored alerts a batch touches, it runs
every alert of every webhook through the life cycle
(:func:`app.core.lifecycle.on_alert`) in arrival order (so eight identical
webhooks in one batch yield one transition and seven duplicates) and returns
the rows to write. :class:`IngestService` runs it inside one transaction per
batch of concurrent webhooks (group commit, :mod:`app.ingest.batcher`) and
answers each webhook only after that transaction commits.
"""

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.config.compiled import CompiledConfig
from app.core.dedup import DEFAULT_MAX_SKEW, Verdict, is_skewed
from app.core.domain import (
    Alert,
    AlertRecord,
    QuarantineRow,
    Source,
    Status,
    Webhook,
)
from app.core.fanout import notice_payload, notification_rows
from app.core.grouping import Change, GroupChange, plan_groups, reaches_grouped
from app.core.heartbeats import proven
from app.core.lifecycle import on_alert, skewed_fields
from app.ingest.batcher import Batcher, Ticket
from app.ingest.wire import ParsedWebhook
from app.ops.clock import Clock
from app.ops.metrics import Metrics
from app.store import groups
from app.store import heartbeats as heartbeat_store
from app.store.alerts import AlertChanges, AlertUnit, ConcurrentInsert, DuplicateKey
from app.store.engine import (
    Database,
    DatabaseUnavailable,
    KeptWriter,
    is_dropped_connection,
    is_lock_conflict,
    is_unavailable,
)

log = logging.getLogger(__name__)

_MAX_QUARANTINE_JSON = 65536
_CONFLICT_RETRIES = 5
_PLAN_INLINE_ALERTS = 200
_NONE_CONFIRMED: Mapping[str, bool] = {}


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    stale: int = 0
    transitions: int = 0
    notifications: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    transitions_to: dict[str, int] = field(default_factory=dict)
    clock_skew: int = 0
    # A few (fingerprint, which timestamps) of the skewed alerts, for the log.
    skewed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Batch:
    """Alert records touched by one batch, and how each must be written."""

    records: dict[str, AlertRecord]
    new: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    # Grouped notices, decided after each webhook (app.core.grouping).
    groups: list[GroupChange] = field(default_factory=list)
    # Group key -> fingerprints of the batch's records in that group.
    by_group: dict[str, set[str]] = field(default_factory=dict)


def duplicate_candidates(
    items: list[ParsedWebhook], now: datetime, max_skew: timedelta = DEFAULT_MAX_SKEW
) -> list[DuplicateKey]:
    """Alerts the repeat fast path may confirm in SQL (as duplicates or stale).

    A fingerprint qualifies when all its occurrences in the batch carry the
    same position and content; if they differ, order matters and the whole
    fingerprint takes the full path. One whose startsAt is skewed may still
    be a duplicate, but only the full path orders it for staleness.
    """
    seen: dict[str, tuple[tuple[str, datetime, str], int]] = {}
    mixed: set[str] = set()
    for item in items:
        for alert in item.webhook.alerts:
            key = (alert.status.value, alert.starts_at, alert.content_hash)
            found = seen.get(alert.fingerprint)
            if found is None:
                seen[alert.fingerprint] = (key, 1)
            elif found[0] != key:
                mixed.add(alert.fingerprint)
            else:
                seen[alert.fingerprint] = (key, found[1] + 1)
    return [
        DuplicateKey(fp, key[0], key[1], key[2], n, not is_skewed(key[1], now, max_skew))
        for fp, (key, n) in seen.items()
        if fp not in mixed
    ]


@dataclass(frozen=True)
class BatchKeys:
    fingerprints: set[str]
    candidates: list[DuplicateKey]
    heartbeats: set[str]  # heartbeats the batch's firing alerts prove alive


def batch_keys(items: list[ParsedWebhook], runtime: CompiledConfig, now: datetime) -> BatchKeys:
    fingerprints = {a.fingerprint for item in items for a in item.webhook.alerts}
    alive = proven(
        runtime.heartbeats,
        (
            a.labels
            for item in items
            for a in item.webhook.alerts
            if a.status is Status.FIRING and item.webhook.source is not Source.HEARTBEAT
        ),
    )
    candidates = duplicate_candidates(items, now, runtime.config.ingest.max_clock_skew)
    return BatchKeys(fingerprints, candidates, alive)


async def apply_batch(
    unit: AlertUnit,
    items: list[ParsedWebhook],
    keys: BatchKeys,
    runtime: CompiledConfig,
    now: datetime,
) -> tuple[AlertChanges, list[IngestResult]]:
    """The ingest use case inside the caller's transaction: confirm repeats,
    load and lock what may change, decide, write. The sweeper's synthetic
    HeartbeatMissing alerts take this path too."""
    # Alertmanager's steady state is repeats (and, behind an HA pair or a
    # retry, late copies): confirm them in one statement, and load full rows
    # only for what may change.
    confirmed = await unit.touch_repeats(keys.candidates, now) if keys.candidates else {}
    rest = keys.fingerprints - confirmed.keys()
    stored = await unit.load(rest) if rest else {}
    args = (items, stored, runtime, now, confirmed)
    if len(keys.fingerprints) - len(confirmed) > _PLAN_INLINE_ALERTS:
        # Planning thousands of changes is seconds of Python:
        # in a thread, the event loop keeps answering.
        changes, results = await asyncio.to_thread(plan_batch, *args)
    else:
        changes, results = plan_batch(*args)
    if changes.groups:
        await _add_group_rows(unit, changes, results, runtime, now)
    await unit.write(changes)
    return changes, results


def _apply_alert(
    batch: _Batch,
    alert: Alert,
    webhook: Webhook,
    group_firing: int,
    runtime: CompiledConfig,
    now: datetime,
    changes: AlertChanges,
    result: IngestResult,
    grouped: dict[str, list[Change]],
) -> None:
    fp = alert.fingerprint
    max_skew = runtime.config.ingest.max_clock_skew
    step = on_alert(batch.records.get(fp), alert, webhook, runtime, now, max_skew)
    batch.records[fp] = step.record
    if step.verdict in (Verdict.DUPLICATE, Verdict.STALE):
        if step.verdict is Verdict.DUPLICATE:
            result.duplicates += 1
        else:
            result.stale += 1
        if step.changed and fp not in batch.new:
            batch.changed.add(fp)
        if fp not in batch.new and fp not in batch.changed:
            batch.seen.add(fp)
        return
    if step.verdict is Verdict.NEW:
        batch.new.add(fp)
    elif fp not in batch.new:
        batch.changed.add(fp)
        batch.seen.discard(fp)

    changes.transitions.extend(step.transitions)
    changes.acks.extend(step.acks)
    for transition in step.transitions:
        result.transitions += 1
        key = transition.to_status.value
        result.transitions_to[key] = result.transitions_to.get(key, 0) + 1
    assert step.routed is not None
    if step.record.group_key:
        batch.by_group.setdefault(step.record.group_key, set()).add(fp)
        if step.notices and reaches_grouped(step.record, step.routed, runtime):
            into = grouped.setdefault(step.record.group_key, [])
            into.extend(Change(step.record, n, step.routed) for n in step.notices)
    for notice in step.notices:
        payload = notice_payload(
            step.record,
            notice,
            now,
            external_url=webhook.external_url,
            am_receiver=webhook.receiver,
            group_firing=group_firing,
        )
        rows = notification_rows(step.record, notice, payload, step.routed, runtime, now)
        changes.notifications.extend(rows)
        result.notifications += len(rows)


def _quarantine_json(raw: object) -> str:
    try:
        text = json.dumps(raw, ensure_ascii=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(raw)
    return text[:_MAX_QUARANTINE_JSON]


def plan_batch(
    items: list[ParsedWebhook],
    stored: dict[str, AlertRecord],
    runtime: CompiledConfig,
    now: datetime,
    confirmed: Mapping[str, bool] = _NONE_CONFIRMED,
) -> tuple[AlertChanges, list[IngestResult]]:
    """Decide a batch in arrival order; return the writes and one result per webhook.

    ``confirmed`` holds fingerprints the repeat fast path already counted in
    SQL (True: duplicates, False: stale): their alerts need nothing more.
    """
    batch = _Batch(records=stored)
    changes = AlertChanges()
    results: list[IngestResult] = []
    for item in items:
        webhook = item.webhook
        result = IngestResult(accepted=len(webhook.alerts), rejected=len(item.rejected))
        group_firing = -1  # counted once an alert needs it: repeats do not
        max_skew = runtime.config.ingest.max_clock_skew
        grouped: dict[str, list[Change]] = {}
        for alert in webhook.alerts:
            key = alert.status.value
            result.by_status[key] = result.by_status.get(key, 0) + 1
            skew = skewed_fields(alert, now, max_skew)
            if skew:
                result.clock_skew += 1
                if len(result.skewed) < 3:
                    result.skewed.append((alert.fingerprint, ",".join(skew)))
            duplicate = confirmed.get(alert.fingerprint)
            if duplicate is not None:
                if duplicate:
                    result.duplicates += 1
                else:
                    result.stale += 1
                continue
            if group_firing < 0:
                group_firing = webhook.firing_count
            _apply_alert(
                batch, alert, webhook, group_firing, runtime, now, changes, result, grouped
            )
        for group_key, group_changes in grouped.items():
            batch.groups.append(
                GroupChange(
                    group_key=group_key,
                    labels=webhook.group_labels if group_key == webhook.group_key else {},
                    changes=group_changes,
                    touched={fp: batch.records[fp] for fp in batch.by_group[group_key]},
                    external_url=webhook.external_url,
                    am_receiver=webhook.receiver,
                    result_index=len(results),
                )
            )
        for rejected in item.rejected:
            changes.quarantined.append(
                QuarantineRow(
                    received_at=now,
                    source=webhook.source.value,
                    group_key=webhook.group_key[:1000],
                    reason=rejected.reason,
                    alert_json=_quarantine_json(rejected.raw),
                )
            )
        results.append(result)
    changes.new = [batch.records[fp] for fp in sorted(batch.new)]
    changes.changed = [batch.records[fp] for fp in sorted(batch.changed)]
    changes.seen = [batch.records[fp] for fp in sorted(batch.seen - batch.changed - batch.new)]
    changes.groups = batch.groups
    return changes, results


class IngestService:
    """Applies webhooks in group-committed batches."""

    def __init__(
        self,
        db: Database,
        runtime: Callable[[], CompiledConfig],
        clock: Clock,
        metrics: Metrics,
        *,
        on_notifications: Callable[[], None] = lambda: None,
        max_batch_alerts: int = 5000,
    ) -> None:
        self._db = db
        # The batcher commits one batch at a time: on PostgreSQL it keeps
        # its connection between them.
        self._writer = KeptWriter(db)
        self._runtime = runtime
        self._clock = clock
        self._metrics = metrics
        self._on_notifications = on_notifications
        # Set by the wiring: a missing heartbeat came back, resolve it now.
        self.on_heartbeat_back: Callable[[], None] = lambda: None
        self._batcher: Batcher[ParsedWebhook, IngestResult] = Batcher(
            self._apply_batch,
            max_weight=max_batch_alerts,
            name="ingest-batcher",
        )
        self._batcher.on_batch = metrics.ingest_batch.observe

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        await self._writer.close()

    def announce(self) -> Ticket:
        """Call when a webhook arrives, before parsing it: the batcher then waits
        for it instead of committing its neighbours without it."""
        return self._batcher.announce()

    async def ingest(
        self, parsed: ParsedWebhook, ticket: Ticket | None = None, deadline_s: float | None = None
    ) -> IngestResult:
        """Store one webhook; returns once it is committed."""
        weight = len(parsed.webhook.alerts) + len(parsed.rejected)
        return await self._batcher.submit(parsed, weight, ticket, deadline_s)

    async def _apply_batch(self, items: list[ParsedWebhook]) -> list[IngestResult | Exception]:
        try:
            results: list[IngestResult | Exception] = list(await self._commit(items))
        except Exception as exc:
            if is_unavailable(exc) or len(items) == 1:
                return [_as_unavailable(exc)] * len(items)
            # Something in this batch broke the transaction: retry each webhook
            # alone so one poison request cannot fail its neighbours.
            log.warning("batch failed, retrying webhooks one by one", exc_info=True)
            results = []
            for item in items:
                try:
                    results.extend(await self._commit([item]))
                except Exception as single:
                    results.append(_as_unavailable(single))
        self._account(items, results)
        return results

    async def _commit(self, items: list[ParsedWebhook]) -> list[IngestResult]:
        dropped = False
        for attempt in range(_CONFLICT_RETRIES):
            runtime = self._runtime()
            now = self._clock.now()
            weight = sum(len(item.webhook.alerts) for item in items)
            if weight > _PLAN_INLINE_ALERTS:
                keys = await asyncio.to_thread(batch_keys, items, runtime, now)
            else:
                keys = batch_keys(items, runtime, now)
            back = False
            try:
                async with self._writer.write() as conn:
                    # Heartbeat rows first, then alert rows: the sweeper locks
                    # in the same order (app/store/heartbeats.py).
                    if keys.heartbeats:
                        back = await heartbeat_store.touch(
                            conn, self._db.kind, keys.heartbeats, now
                        )
                    unit = AlertUnit(conn, self._db.kind)
                    changes, results = await apply_batch(unit, items, keys, runtime, now)
            except ConcurrentInsert:
                # Another replica created one of these alerts meanwhile; the
                # retry finds and locks its row.
                await asyncio.sleep(0.005 * (attempt + 1))
                continue
            except Exception as exc:
                if is_dropped_connection(exc) and not dropped:
                    # The server closed the connection after the pool's check
                    # (a restart, pg_terminate_backend): retry at once on a new
                    # one. Had the commit itself been cut off, its outcome is
                    # unknown, and the retry is Alertmanager's own retry made
                    # sooner: what was stored reads as duplicates.
                    dropped = True
                    continue
                if not is_lock_conflict(exc):
                    raise
                # Two replicas locked overlapping alerts in different orders
                # (PostgreSQL aborted one): the retry runs alone.
                await asyncio.sleep(0.005 * (attempt + 1))
                continue
            if changes.notifications:
                self._on_notifications()
            if back:
                self.on_heartbeat_back()
            return results
        raise DatabaseUnavailable("alerts kept being inserted concurrently; retry")

    def _account(self, items: list[ParsedWebhook], results: list[IngestResult | Exception]) -> None:
        m = self._metrics
        for item, result in zip(items, results, strict=True):
            source = item.webhook.source.value
            if item.mismatches:
                m.fingerprint_mismatches.labels(source=source).inc(len(item.mismatches))
            if item.webhook.truncated_alerts:
                m.truncated.labels(source=source).inc(item.webhook.truncated_alerts)
            if isinstance(result, Exception):
                continue
            for status, n in result.by_status.items():
                m.child(m.alerts_received, status).inc(n)
            if result.duplicates:
                m.deduplicated.inc(result.duplicates)
            if result.stale:
                m.stale.inc(result.stale)
            if result.clock_skew:
                m.clock_skew.inc(result.clock_skew)
                log.warning(
                    "clock skew: timestamps from the future, ordered as received",
                    extra={
                        "source": source,
                        "alerts": result.clock_skew,
                        "examples": [f"{fp} {fields}" for fp, fields in result.skewed],
                    },
                )
            for to, n in result.transitions_to.items():
                m.child(m.transitions, to).inc(n)
            if result.rejected:
                m.child(m.quarantined, source).inc(result.rejected)


async def _add_group_rows(
    unit: AlertUnit,
    changes: AlertChanges,
    results: list[IngestResult],
    runtime: CompiledConfig,
    now: datetime,
) -> None:
    """Grouped notices become one row per group, change and destination; they
    list each group's alerts, so the groups are read first (in this transaction)."""
    keys = {item.group_key for item in changes.groups}
    states = await groups.load_states(unit.conn, unit.dialect, keys)
    stored = await groups.load_members(unit.conn, keys)
    rows, new_states = plan_groups(changes.groups, states, stored, runtime, now)
    for item, item_rows in zip(changes.groups, rows, strict=True):
        changes.notifications.extend(item_rows)
        results[item.result_index].notifications += len(item_rows)
    await groups.save_states(unit.conn, unit.dialect, new_states, now)


def _as_unavailable(exc: Exception) -> Exception:
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if not is_unavailable(exc):
        log.error("ingest failed", exc_info=exc)
    return DatabaseUnavailable(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
