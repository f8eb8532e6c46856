"""The periodic maintenance loop.

Every ``flapping.sweep_interval`` it decays flap scores and ends flaps that
calmed down (one stable notice each), and queues ``renotify_interval``
reminders for alerts still firing. Rows are locked while they are decided
(``SKIP LOCKED`` on PostgreSQL, so replicas share the sweep), and each
change commits with its outbox rows in one transaction, exactly like ingest.
What each tick does to an alert is decided by :mod:`app.core.lifecycle`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.config.compiled import CompiledConfig
from app.core.domain import AlertRecord, Source, Webhook
from app.core.fanout import notice_payload, notification_rows
from app.core.grouping import Change, GroupChange, plan_groups, reaches_grouped
from app.core.heartbeats import Change as HeartbeatChange
from app.core.heartbeats import check, unwatched
from app.core.lifecycle import (
    RouteOptions,
    escalation_steps,
    on_escalation,
    on_reminder,
    on_sweep,
)
from app.core.notices import Notice
from app.core.routing import RouteResult
from app.ingest.service import apply_batch, batch_keys
from app.ingest.wire import ParsedWebhook
from app.ops.clock import Clock
from app.ops.failpoints import failpoint
from app.ops.metrics import Metrics
from app.store import groups, queries
from app.store import heartbeats as heartbeat_store
from app.store.alerts import AlertChanges, AlertUnit, EscalationRow
from app.store.engine import Database
from app.sweeper.prune import Pruner

log = logging.getLogger(__name__)

_BATCH = 500


@dataclass
class SweepResult:
    stable: int = 0
    reminders: int = 0
    escalations: int = 0
    heartbeats: int = 0  # HeartbeatMissing alerts fired or resolved
    notifications: int = 0


class Sweeper:
    def __init__(
        self,
        db: Database,
        runtime: Callable[[], CompiledConfig],
        clock: Clock,
        metrics: Metrics,
        *,
        on_notifications: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._clock = clock
        self._metrics = metrics
        self._on_notifications = on_notifications
        self.pruner = Pruner(db, runtime, clock, metrics)
        self._wake = asyncio.Event()
        self._gauged: set[str] = set()  # heartbeat names with an age gauge

    def wake(self) -> None:
        """Sweep now instead of at the next interval (a missing heartbeat is back)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
                await self.refresh_gauges()
            except Exception:
                log.exception("sweep failed; retrying next interval")
            try:
                await self.pruner.tick()
            except Exception:
                log.exception("pruning failed; retrying next interval")
            interval = self._runtime().config.flapping.sweep_interval.total_seconds()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            self._wake.clear()

    async def sweep_once(self) -> SweepResult:
        result = SweepResult()
        after = ""
        while True:
            seen, after = await self._sweep_flapping(result, after)
            if seen < _BATCH:
                break
        while await self._sweep_reminders(result) == _BATCH:
            pass
        await self._sweep_heartbeats(result)
        while await self._sweep_escalations(result) == _BATCH:
            pass
        if result.notifications:
            self._on_notifications()
        return result

    async def refresh_gauges(self) -> None:
        async with self._db.read() as conn:
            counts = await queries.outbox_counts(conn)
            flapping = await queries.flapping_count(conn)
        self._metrics.outbox_pending.set(counts["pending"] + counts["in_flight"])
        self._metrics.outbox_dead.set(counts["dead"])
        self._metrics.flapping.set(flapping)
        await self._gauge_heartbeats()

    async def _gauge_heartbeats(self) -> None:
        configured = {hb.name for hb in self._runtime().heartbeats}
        if not configured and not self._gauged:
            return
        async with self._db.read() as conn:
            states = await heartbeat_store.list_all(conn)
        now = self._clock.now()
        for state in states:
            if state.name in configured:
                self._metrics.heartbeat_age.labels(name=state.name).set(state.age_s(now))
        for gone in self._gauged - configured:
            with contextlib.suppress(KeyError):
                self._metrics.heartbeat_age.remove(gone)
        self._gauged = configured & {s.name for s in states}

    async def _sweep_heartbeats(self, result: SweepResult) -> None:
        """Fire HeartbeatMissing for heartbeats without proof of life for their
        interval, and resolve it for those that came back. The synthetic
        alerts take the ingest path in this transaction, with the heartbeat
        rows that record them."""
        runtime = self._runtime()
        configured = {hb.name: hb for hb in runtime.heartbeats}
        now = self._clock.now()
        async with self._db.write() as conn:
            kind = self._db.kind
            if configured:
                await heartbeat_store.watch(conn, kind, configured, now)
            items: list[ParsedWebhook] = []
            for state in await heartbeat_store.load_locked(conn, kind):
                hb = configured.get(state.name)
                verdict = check(hb, state, now) if hb is not None else unwatched(state, now)
                if verdict.change is HeartbeatChange.NONE or verdict.alert is None:
                    continue
                await heartbeat_store.save(conn, verdict.state)
                log.warning(
                    "heartbeat missing"
                    if verdict.change is HeartbeatChange.MISSING
                    else "heartbeat back",
                    extra={"heartbeat": state.name, "last_seen": str(state.last_seen)},
                )
                webhook = Webhook(
                    Source.HEARTBEAT,
                    [verdict.alert],
                    now,
                    receiver="alertrelay",
                    group_key=f"heartbeat/{state.name}",
                )
                items.append(ParsedWebhook(webhook, [], []))
            if items:
                unit = AlertUnit(conn, kind)
                changes, _ = await apply_batch(
                    unit, items, batch_keys(items, runtime, now), runtime, now
                )
                result.heartbeats += len(items)
                result.notifications += len(changes.notifications)

    async def _sweep_flapping(self, result: SweepResult, after: str) -> tuple[int, str]:
        """One batch of flapping alerts past ``after`` (fingerprint order)."""
        runtime = self._runtime()
        now = self._clock.now()
        async with self._db.write() as conn:
            unit = AlertUnit(conn, self._db.kind)
            found = await unit.load_flapping(after, _BATCH)
            changes = AlertChanges()
            grouped: dict[str, list[Change]] = {}
            for rec in found:
                routed = runtime.route(rec.labels)
                assert routed.options is not None
                step = on_sweep(rec, routed.options, now, escalation_steps(routed))
                if not step.changed:
                    continue  # still flapping: the score decays on read, nothing to write
                result.stable += 1
                changes.changed.append(step.record)
                changes.acks.extend(step.acks)
                for notice in step.notices:
                    result.notifications += _queue(
                        changes, step.record, notice, routed, runtime, now, grouped
                    )
            result.notifications += await _queue_groups(unit, grouped, changes, runtime, now)
            await unit.write(changes)
        return len(found), (found[-1].fingerprint if found else after)

    async def _sweep_reminders(self, result: SweepResult) -> int:
        runtime = self._runtime()
        now = self._clock.now()
        async with self._db.write() as conn:
            unit = AlertUnit(conn, self._db.kind)
            found = await unit.load_reminders_due(now, _BATCH)
            changes = AlertChanges()
            grouped: dict[str, list[Change]] = {}
            for rec in found:
                routed = runtime.route(rec.labels)
                assert routed.options is not None
                step = on_reminder(rec, routed.options, now)
                changes.changed.append(step.record)
                changes.acks.extend(step.acks)
                for notice in step.notices:
                    result.reminders += 1
                    result.notifications += _queue(
                        changes, step.record, notice, routed, runtime, now, grouped
                    )
            result.notifications += await _queue_groups(unit, grouped, changes, runtime, now)
            await unit.write(changes)
        return len(found)

    async def _sweep_escalations(self, result: SweepResult) -> int:
        """Take the escalation steps that fell due, each once (see
        :meth:`AlertUnit.record_escalations`), with their notifications in
        the same transaction."""
        runtime = self._runtime()
        now = self._clock.now()
        told: list[str] = []
        async with self._db.write() as conn:
            unit = AlertUnit(conn, self._db.kind)
            found = await unit.load_escalations_due(now, _BATCH)
            changes = AlertChanges()
            decided = []
            steps_taken: list[EscalationRow] = []
            for rec in found:
                routed = runtime.route(rec.labels)
                step = on_escalation(rec, escalation_steps(routed), routed.receivers, now)
                if not step.changed:
                    continue
                changes.changed.append(step.record)
                changes.acks.extend(step.acks)
                decided.append((step, routed))
                for notice in step.notices:
                    assert notice.escalation is not None and rec.incident_key is not None
                    steps_taken.append(
                        EscalationRow(
                            fingerprint=rec.fingerprint,
                            incident_key=rec.incident_key,
                            step=notice.escalation.step,
                            receiver=notice.escalation.receiver,
                            after_s=notice.escalation.after_s,
                            since=rec.escalation_since or now,
                            fired_at=now,
                        )
                    )
            inserted = await unit.record_escalations(steps_taken)
            for step, routed in decided:
                for notice in step.notices:
                    assert notice.escalation is not None
                    if (step.record.fingerprint, notice.escalation.receiver) not in inserted:
                        continue  # recorded by another sweeper already: its rows exist
                    result.escalations += 1
                    told.append(notice.escalation.receiver)
                    # An escalation pages its step's receiver alert by alert.
                    result.notifications += _queue(
                        changes, step.record, notice, routed, runtime, now, {}
                    )
            await unit.write(changes)
            if told:
                failpoint("escalation_before_commit")  # crash tests: nothing is committed
        for receiver in told:
            self._metrics.child(self._metrics.escalations, receiver).inc()
        return len(found)


def _queue(
    changes: AlertChanges,
    rec: AlertRecord,
    notice: Notice,
    routed: RouteResult[RouteOptions],
    runtime: CompiledConfig,
    now: datetime,
    grouped: dict[str, list[Change]],
) -> int:
    """Add the notice's outbox rows, one per integration it routes to; returns how many.

    Integrations that group get theirs from :func:`_queue_groups`: the
    notices are kept in ``grouped`` for it.
    """
    payload = notice_payload(rec, notice, now)
    rows = notification_rows(rec, notice, payload, routed, runtime, now)
    changes.notifications.extend(rows)
    if notice.escalation is None and reaches_grouped(rec, routed, runtime):
        grouped.setdefault(rec.group_key, []).append(Change(rec, notice, routed))
    return len(rows)


async def _queue_groups(
    unit: AlertUnit,
    grouped: dict[str, list[Change]],
    changes: AlertChanges,
    runtime: CompiledConfig,
    now: datetime,
) -> int:
    """One row per group and destination for this sweep's grouped notices:
    stable notices and reminders of one group's alerts share a message."""
    if not grouped:
        return 0
    pending = [
        GroupChange(key, {}, items, {c.record.fingerprint: c.record for c in items})
        for key, items in grouped.items()
    ]
    states = await groups.load_states(unit.conn, unit.dialect, grouped)
    stored = await groups.load_members(unit.conn, grouped)
    rows, new_states = plan_groups(pending, states, stored, runtime, now)
    for item_rows in rows:
        changes.notifications.extend(item_rows)
    await groups.save_states(unit.conn, unit.dialect, new_states, now)
    return sum(len(r) for r in rows)
