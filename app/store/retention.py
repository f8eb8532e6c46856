"""Pruning history past its retention, a bounded batch at a time.

Each rule names rows one table no longer needs. A batch deletes at most
``rows`` of them, oldest first, in its own short transaction: ingest and
delivery get the write lock between batches, so no webhook waits behind a
long delete. On PostgreSQL the batch's rows are chosen with ``FOR UPDATE
SKIP LOCKED``: replicas pruning at the same moment take different rows, and
a pruner never waits for a row that ingest, delivery or a replay holds (so
it cannot deadlock with them); what it skips, a later batch takes.

What is never pruned, whatever its age:

* a firing or flapping alert; the transitions of a firing alert's current
  occurrence, and of a flapping alert's current flap;
* a pending or in-flight notification, and the delivery attempts of one;
* a dead notification younger than ``dead_letters``;
* a sent notification while another notification for the same alert and
  destination (its ordering key) is still pending, in flight or dead: an
  unsent resolve or a message update may still rely on what that one
  established, and a dead notification's replay looks for later rows to
  know it has been superseded;
* a resolved alert that still has a notification pending or in flight;
* an Alertmanager group's state (``alert_groups``: when its occurrence
  began) while an alert of the group fires or flaps, until its last
  occurrence ended ``resolved_alerts`` ago, and while a notification of its
  messages is pending, in flight or dead;
* the alert links of a grouped notification (``notification_alerts``)
  while the notification is kept; a sent grouped notification, and the
  reference of a group's message, while the group fires (an ack finds the
  message to edit through them, a resolve months later edits it);
* a sent notification of an incident still open (its dedup key is the
  alert's ``incident_key``): an ack tells the destinations that were sent
  the incident's trigger, found by these rows, however long ago it fired;
* the reference of a chat message (``message_refs``) younger than
  ``notifications``, whose message still has a notification pending, in
  flight or dead (a replay edits it), or whose alert's incident is still
  open (its resolve, ack or reminder edits that message, months later);
* the ack history (``alert_acks``) of a firing or flapping alert's current
  occurrence; older rows go at the ``transitions`` age, like the history
  they annotate (an alert that comes back every week is never pruned
  itself, so its acks would pile up for ever);
* the escalation steps taken (``alert_escalations``) for an incident still
  open: each row is what stops a step being taken twice; a closed
  incident's steps go at the ``transitions`` age.

Whatever else an alert owns (ack history, escalation steps) goes with the
alert when it is pruned, by the foreign keys' cascades: a handful of rows.
``heartbeats`` has a row per configured heartbeat, never pruned.

Rules that delete children run before their parents' rules: old attempts
before notifications (a notification past its retention has only attempts
past theirs), the transitions of the alerts about to go before those
alerts. So the foreign keys' cascades have next to nothing left to do and
every statement stays bounded.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config.sections import RetentionConfig
from app.core.domain import NotificationStatus as NS
from app.core.domain import Status
from app.store.engine import Database, is_lock_conflict
from app.store.tables import (
    alert_acks,
    alert_escalations,
    alert_groups,
    alert_transitions,
    alerts,
    audit_log,
    delivery_attempts,
    message_refs,
    notification_alerts,
    notifications,
    quarantined_alerts,
)

# The tables pruning deletes from, in the order they are reported.
TABLES = (
    "alerts",
    "alert_transitions",
    "notifications",
    "delivery_attempts",
    "quarantined_alerts",
    "audit_log",
    "message_refs",
    "alert_acks",
    "alert_escalations",
    "notification_alerts",
    "alert_groups",
)

_UNFINISHED = (NS.PENDING.value, NS.IN_FLIGHT.value)


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these times are past their retention."""

    resolved_alerts: datetime
    transitions: datetime
    notifications: datetime
    dead_letters: datetime
    delivery_attempts: datetime
    quarantine: datetime
    audit: datetime

    @classmethod
    def at(cls, now: datetime, retention: RetentionConfig) -> "Cutoffs":
        return cls(
            resolved_alerts=now - retention.resolved_alerts,
            transitions=now - retention.transitions,
            notifications=now - retention.notifications,
            dead_letters=now - retention.dead_letters,
            delivery_attempts=now - retention.delivery_attempts,
            quarantine=now - retention.quarantine,
            audit=now - retention.audit,
        )


@dataclass(frozen=True)
class Rule:
    name: str
    table: sa.Table
    key: sa.Column[Any] | tuple[sa.Column[Any], ...]  # the table's primary key
    order: tuple[sa.Column[Any], ...]  # an index walk that finds the oldest first
    where: Callable[[Cutoffs], list[Any]]
    # Whether a run carries on past the last row it deleted instead of
    # walking from the old end again: for rules that keep many old rows (a
    # dead letter's sent siblings, an open incident's trigger, a firing
    # alert's history), which every batch would otherwise walk past again (at
    # a year, ~7,000 and growing before the first deletable notification:
    # 30-50 ms a batch). ``order`` must then be unique (it ends with the key).
    resumable: bool = False


n = notifications.c
t = alert_transitions.c
a = alerts.c
d = delivery_attempts.c
_other = notifications.alias("other_notification")
_alert = alerts.alias("current_alert")
_group = alert_groups.alias("open_group")


def _sent_prunable(c: Cutoffs) -> list[Any]:
    unsettled_sibling = (
        sa.select(_other.c.id)
        .where(
            _other.c.ordering_key == n.ordering_key,
            _other.c.status.in_([*_UNFINISHED, NS.DEAD.value]),
        )
        .exists()
    )
    open_incident = (
        sa.select(_alert.c.fingerprint)
        .where(_alert.c.fingerprint == n.fingerprint, _alert.c.incident_key == n.dedup_key)
        .exists()
    )
    return [
        n.status == NS.SENT.value,
        # next_attempt_at <= sent_at, so this bound walks the status index.
        n.next_attempt_at < c.notifications,
        n.sent_at < c.notifications,
        ~unsettled_sibling,
        ~open_incident,
        ~sa.and_(n.message_key.startswith("g:"), _group_open(n.fingerprint)),
    ]


def _group_open(group_fingerprint: Any) -> Any:
    """The group a grouped row belongs to still fires: its rows are what an
    ack finds the group's message by (``notification_alerts``), and its
    message's reference is what a resolve months later edits. A group row's
    ``fingerprint`` is the first 16 hex digits of its group's id: a range
    on the primary key finds the group."""
    return (
        sa.select(_group.c.group_id)
        .where(
            _group.c.open.is_(True),
            _group.c.group_id >= group_fingerprint,
            _group.c.group_id < group_fingerprint + "g",  # past every hex digit
        )
        .exists()
    )


def _dead_prunable(c: Cutoffs) -> list[Any]:
    return [
        n.status == NS.DEAD.value,
        n.next_attempt_at < c.dead_letters,
        n.dead_at < c.dead_letters,
    ]


# Unsent notifications are few at any time, and found through the status
# index: one short list per statement is cheaper than a lookup per row.
def _unfinished(column: sa.Column[Any]) -> Any:
    return sa.select(column).where(n.status.in_(_UNFINISHED))


def _old_attempts(c: Cutoffs) -> list[Any]:
    return [d.started_at < c.delivery_attempts, d.notification_id.not_in(_unfinished(n.id))]


def _resolved_alert_prunable(c: Cutoffs, alert: Any = a) -> list[Any]:
    """An alert past ``resolved_alerts`` with nothing unsent (``alert``: the
    columns of ``alerts`` or of an alias of it)."""
    return [
        alert.status == Status.RESOLVED.value,
        alert.last_changed < c.resolved_alerts,
        alert.flapping.is_(False),
        alert.fingerprint.not_in(_unfinished(n.fingerprint)),
    ]


def _history_of_pruned_alerts(c: Cutoffs) -> list[Any]:
    """Transitions of the alerts the next rule deletes.

    The walk goes through the transitions (oldest first) and looks up each
    one's alert, and a run carries on past the last one it deleted: each
    transition is passed once. (Choosing the alerts first and then their
    transitions passed, every batch, every alert whose history was already
    gone, until the next rule deleted it: at a year its batches slowed to
    80 rows/s.)
    """
    owner_prunable = (
        sa.select(_alert.c.fingerprint)
        .where(_alert.c.fingerprint == t.fingerprint, *_resolved_alert_prunable(c, _alert.c))
        .exists()
    )
    return [
        owner_prunable,
        # A transition received after the cutoff belongs to an alert that came
        # back to life since: never part of this history.
        t.received_at < c.resolved_alerts,
    ]


def _old_transitions(c: Cutoffs) -> list[Any]:
    still_needed = (
        sa.select(_alert.c.fingerprint)
        .where(
            _alert.c.fingerprint == t.fingerprint,
            sa.or_(
                sa.and_(_alert.c.status == Status.FIRING.value, _alert.c.starts_at == t.occurrence),
                sa.and_(
                    _alert.c.flapping.is_(True),
                    sa.or_(
                        _alert.c.flap_started_at.is_(None),
                        t.received_at >= _alert.c.flap_started_at,
                    ),
                ),
            ),
        )
        .exists()
    )
    return [t.received_at < c.transitions, ~still_needed]


def _old_message_refs(c: Cutoffs) -> list[Any]:
    """References of chat messages nothing has touched for the notifications'
    retention, unless a notification of that message may still be sent."""
    r = message_refs.c
    unsettled = n.status.in_([*_UNFINISHED, NS.DEAD.value])
    # An alert's message key is ``a:<fingerprint>:<occurrence>``
    # (core.domain.alert_message_key); fingerprints are 16 characters. Its
    # rows are found through the alert's own: a list of every unsettled
    # row's key, as this rule had, held the write lock 15-30 ms per batch
    # at a year's backlog (its dead letters), however few rows went.
    fingerprint = sa.func.substr(r.message_key, 3, 16)
    alert_waiting = (
        sa.select(n.id)
        .where(n.fingerprint == fingerprint, n.message_key == r.message_key, unsettled)
        .exists()
    )
    open_incident = (
        sa.select(_alert.c.fingerprint)
        .where(_alert.c.fingerprint == fingerprint, _alert.c.incident_key.is_not(None))
        .exists()
    )
    # A group's key (``g:<digest>:<occurrence>``) does not name the group, so
    # its unsettled rows come as a list: of group rows only, built only when
    # a group reference is reached.
    group_waiting = r.message_key.in_(
        sa.select(n.message_key).where(unsettled, n.message_key.startswith("g:"))
    )
    # A group's message: the row it last showed names the group.
    open_group = (
        sa.select(_other.c.id)
        .where(_other.c.id == r.notification_id, _group_open(_other.c.fingerprint))
        .exists()
    )
    return [
        r.updated_at < c.notifications,
        # Every key is one or the other.
        sa.or_(r.message_key.startswith("a:"), r.message_key.startswith("g:")),
        ~sa.and_(r.message_key.startswith("a:"), sa.or_(alert_waiting, open_incident)),
        ~sa.and_(r.message_key.startswith("g:"), sa.or_(group_waiting, open_group)),
    ]


def _old_acks(c: Cutoffs) -> list[Any]:
    k = alert_acks.c
    current = (
        sa.select(_alert.c.fingerprint)
        .where(
            _alert.c.fingerprint == k.fingerprint,
            _alert.c.starts_at == k.occurrence,
            sa.or_(_alert.c.status == Status.FIRING.value, _alert.c.flapping.is_(True)),
        )
        .exists()
    )
    return [k.at < c.transitions, ~current]


def _old_escalations(c: Cutoffs) -> list[Any]:
    e = alert_escalations.c
    still_open = (
        sa.select(_alert.c.fingerprint)
        .where(_alert.c.fingerprint == e.fingerprint, _alert.c.incident_key == e.incident_key)
        .exists()
    )
    return [e.fired_at < c.transitions, ~still_open]


def _links_of_pruned_notifications(c: Cutoffs) -> list[Any]:
    """The alert links of the notifications the next rules delete (a grouped
    row has one per alert it changed or listed: deleted here in bounded
    batches rather than all at once by the foreign key's cascade)."""
    # Correlated, from the links: as ``IN (SELECT …)`` SQLite built the list
    # of every prunable notification first, 10 s of write lock at a year's
    # backlog even with no link to delete.
    going = (
        sa.select(n.id)
        .where(
            n.id == notification_alerts.c.notification_id,
            sa.or_(sa.and_(*_sent_prunable(c)), sa.and_(*_dead_prunable(c))),
        )
        .exists()
    )
    return [going]


def _closed_groups(c: Cutoffs) -> list[Any]:
    """Groups whose last occurrence ended longer ago than ``resolved_alerts``,
    none of whose alerts fires or flaps, and whose messages have nothing
    queued or dead (a group row's ``fingerprint`` is its group's id, cut)."""
    g = alert_groups.c
    live_alert = (
        sa.select(_alert.c.fingerprint)
        .where(
            _alert.c.group_key == g.group_key,
            sa.or_(_alert.c.status == Status.FIRING.value, _alert.c.flapping.is_(True)),
        )
        .exists()
    )
    waiting = (
        sa.select(_other.c.id)
        .where(
            _other.c.fingerprint == sa.func.substr(g.group_id, 1, 16),
            _other.c.status.in_([*_UNFINISHED, NS.DEAD.value]),
        )
        .exists()
    )
    return [g.open.is_(False), g.updated_at < c.resolved_alerts, ~live_alert, ~waiting]


RULES = (
    Rule(
        "old delivery attempts",
        delivery_attempts,
        d.id,
        (d.started_at, d.id),
        _old_attempts,
        resumable=True,
    ),
    Rule(
        "links of pruned notifications",
        notification_alerts,
        (notification_alerts.c.fingerprint, notification_alerts.c.notification_id),
        (notification_alerts.c.notification_id,),
        _links_of_pruned_notifications,
    ),
    Rule(
        "sent notifications",
        notifications,
        n.id,
        (n.next_attempt_at, n.id),
        _sent_prunable,
        resumable=True,
    ),
    Rule(
        "dead notifications",
        notifications,
        n.id,
        (n.next_attempt_at, n.id),
        _dead_prunable,
        resumable=True,
    ),
    Rule(
        "old transitions",
        alert_transitions,
        t.id,
        (t.received_at, t.id),
        _old_transitions,
        resumable=True,
    ),
    Rule(
        "history of pruned alerts",
        alert_transitions,
        t.id,
        (t.id,),
        _history_of_pruned_alerts,
        resumable=True,
    ),
    Rule(
        "resolved alerts",
        alerts,
        a.fingerprint,
        (a.last_changed, a.fingerprint),
        _resolved_alert_prunable,
        resumable=True,
    ),
    Rule(
        "closed alert groups",
        alert_groups,
        alert_groups.c.group_id,
        (alert_groups.c.updated_at,),
        _closed_groups,
    ),
    Rule(
        "quarantined alerts",
        quarantined_alerts,
        quarantined_alerts.c.id,
        (quarantined_alerts.c.received_at,),
        lambda c: [quarantined_alerts.c.received_at < c.quarantine],
    ),
    Rule(
        "old message references",
        message_refs,
        (message_refs.c.integration, message_refs.c.message_key),
        (message_refs.c.updated_at, message_refs.c.integration, message_refs.c.message_key),
        _old_message_refs,
        # Open incidents keep their messages' references at the old end: at
        # a year, ~4,400 of them before the first deletable one, 46 ms of
        # write lock a batch to walk past them (ingest p99 ~100 ms).
        resumable=True,
    ),
    Rule(
        "old ack history",
        alert_acks,
        alert_acks.c.id,
        (alert_acks.c.at, alert_acks.c.id),
        _old_acks,
        resumable=True,
    ),
    Rule(
        "old escalation steps",
        alert_escalations,
        alert_escalations.c.id,
        (alert_escalations.c.fired_at,),
        _old_escalations,
    ),
    Rule(
        "audit entries",
        audit_log,
        audit_log.c.id,
        (audit_log.c.at,),
        lambda c: [audit_log.c.at < c.audit],
    ),
)


def _past(order: tuple[sa.Column[Any], ...], after: tuple[Any, ...]) -> Any:
    """Rows after ``after`` in the walk's order (row-value comparison)."""
    if len(order) == 1:
        return order[0] > after[0]
    return sa.tuple_(*order) > sa.tuple_(
        *(sa.literal(v, type_=c.type) for c, v in zip(order, after, strict=True))
    )


def _keys(rule: Rule) -> tuple[Any, ...]:
    return rule.key if isinstance(rule.key, tuple) else (rule.key,)


def selection(
    rule: Rule, cutoffs: Cutoffs, rows: int, after: tuple[Any, ...] | None = None
) -> sa.Select[Any]:
    """The keys of the rule's next ``rows`` rows, oldest first (past ``after``)."""
    where = rule.where(cutoffs)
    if after is not None:
        where = [*where, _past(rule.order, after)]
    return sa.select(*_keys(rule)).where(*where).order_by(*rule.order).limit(rows)


async def delete_batch(
    conn: AsyncConnection,
    dialect: str,
    rule: Rule,
    cutoffs: Cutoffs,
    rows: int,
    after: tuple[Any, ...] | None = None,
) -> tuple[int, tuple[Any, ...] | None]:
    """Delete at most ``rows`` of the rule's oldest rows (past ``after`` in the
    walk's order, when given); returns how many went and where the walk got to."""
    keys = _keys(rule)
    chosen = selection(rule, cutoffs, rows, after)
    if dialect == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True, of=rule.table)
    target = sa.tuple_(*keys) if len(keys) > 1 else keys[0]
    result = await conn.execute(
        rule.table.delete().where(target.in_(chosen)).returning(*rule.order)
    )
    positions = [tuple(row) for row in result]
    # None sorts nowhere: a row whose walk column is NULL ends the resume.
    reached = max(positions) if positions and all(None not in p for p in positions) else None
    return len(positions), reached


async def count_prunable(conn: AsyncConnection, cutoffs: Cutoffs) -> dict[str, int]:
    """Per table, how many rows pruning would delete now (``prune --dry-run``)."""
    out: dict[str, int] = {}
    for table in TABLES:
        conditions = [sa.and_(*r.where(cutoffs)) for r in RULES if r.table.name == table]
        query = sa.select(sa.func.count()).select_from(metadata_table(table))
        out[table] = int((await conn.execute(query.where(sa.or_(*conditions)))).scalar_one())
    return out


def metadata_table(name: str) -> sa.Table:
    for rule in RULES:
        if rule.table.name == name:
            return rule.table
    raise KeyError(name)


_MAX_CONFLICTS = 5
_BACKOFF_S = 0.5


def _is_busy(exc: BaseException) -> bool:
    return "database is locked" in str(getattr(exc, "orig", exc))


@dataclass
class PruneReport:
    deleted: dict[str, int]
    batches: int = 0
    complete: bool = True  # False: stopped at a limit with rows left
    lock_conflicts: int = 0

    def add(self, later: "PruneReport") -> None:
        """Count a later run in; whether it is complete is the later run's say."""
        for table, n in later.deleted.items():
            self.deleted[table] = self.deleted.get(table, 0) + n
        self.batches += later.batches
        self.lock_conflicts += later.lock_conflicts
        self.complete = later.complete


async def prune(
    db: Database,
    cutoffs: Cutoffs,
    *,
    rows: int,
    batches_per_rule: int | None,
    budget_s: float | None = None,
    pause_ratio: float = 0.0,
    on_batch: Callable[[str, int], None] = lambda table, deleted: None,
) -> PruneReport:
    """Run every rule in batches of ``rows``, each batch its own transaction.

    A rule stops when a batch comes back short, after ``batches_per_rule``
    batches, or when ``budget_s`` seconds have gone by (then the report is
    not ``complete``; the next call carries on). After each batch it waits
    ``pause_ratio`` times as long as the batch took, so other writers get
    the lock in between (SQLite has one writer at a time); on SQLite it
    checkpoints the log after each batch that deleted rows. A batch that meets a lock
    conflict (a PostgreSQL deadlock or lock timeout, SQLite busy past its
    timeout) is retried after a pause, up to ``_MAX_CONFLICTS`` times in a row.
    """
    report = PruneReport(deleted=dict.fromkeys(TABLES, 0))
    start = time.monotonic()
    for rule in RULES:
        done = 0
        conflicts = 0
        after: tuple[Any, ...] | None = None
        while batches_per_rule is None or done < batches_per_rule:
            if budget_s is not None and time.monotonic() - start > budget_s:
                report.complete = False
                return report
            began = time.monotonic()
            try:
                async with db.write() as conn:
                    deleted, reached = await delete_batch(
                        conn, db.kind, rule, cutoffs, rows, after if rule.resumable else None
                    )
            except Exception as exc:
                if not (is_lock_conflict(exc) or _is_busy(exc)):
                    raise
                # Another process held the lock past the busy timeout (SQLite:
                # a busy serve; PostgreSQL: a deadlock or lock timeout). Step
                # back and let it work; give up on this rule after a few.
                report.lock_conflicts += 1
                conflicts += 1
                if conflicts >= _MAX_CONFLICTS:
                    report.complete = False
                    break
                await asyncio.sleep(_BACKOFF_S * conflicts)
                continue
            conflicts = 0
            after = reached
            took = time.monotonic() - began
            if deleted:
                await checkpoint(db)
            if pause_ratio:
                await asyncio.sleep(took * pause_ratio)
            done += 1
            report.batches += 1
            report.deleted[rule.table.name] += deleted
            if deleted:
                on_batch(rule.table.name, deleted)
            if deleted < rows:
                break
        else:
            report.complete = False
    return report


@dataclass(frozen=True)
class FileSpace:
    """SQLite's file: its size and the free pages inside it."""

    auto_vacuum: str
    size_bytes: int
    free_bytes: int


_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


async def file_space(db: Database) -> FileSpace | None:
    """None on PostgreSQL (it reuses space with autovacuum on its own)."""
    if db.kind != "sqlite":
        return None
    async with db.read() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar()
        size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar() or 0
        pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar() or 0
        free = (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar() or 0
    return FileSpace(_AUTO_VACUUM.get(int(mode or 0), str(mode)), size * pages, size * free)


@asynccontextmanager
async def _outside_transaction(engine: AsyncEngine) -> AsyncIterator[Any]:
    """The driver's connection under a pooled one, with no transaction begun:
    these pragmas must run outside one, and SQLAlchemy would begin one."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        yield raw.driver_connection


async def incremental_vacuum(db: Database, pages: int) -> None:
    """Give up to ``pages`` free pages back to the file system (SQLite only).

    Each call holds the write lock only while it moves that many pages. The
    pragma frees one page per step of its statement, and Python's sqlite3
    steps a PRAGMA once per ``execute``, so it runs as a script, which
    steps it to the end.
    """
    if db.kind != "sqlite":
        return
    async with _outside_transaction(db.write_engine) as driver:
        await driver.executescript(f"PRAGMA incremental_vacuum({int(pages)})")


async def checkpoint(db: Database) -> None:
    """Copy SQLite's write-ahead log into the file now, without waiting for
    readers or blocking writers (``PASSIVE``), outside any transaction.

    A prune writes pages fast. Left to SQLite, the commit that takes the log
    past 1,000 pages copies it back before returning: 20-30 ms measured at a
    year's backlog, on whichever connection committed, the serve's single
    writer too. Called between batches, it keeps the log short, so nobody's
    commit pays that.
    """
    if db.kind != "sqlite":
        return
    # A reader's connection: a checkpoint needs no write lock, and the
    # writer's single connection stays free for ingest.
    async with _outside_transaction(db.read_engine) as driver:
        try:
            cursor = await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            await cursor.close()
        except Exception as exc:
            # Another connection is checkpointing: that one does the work.
            if not _is_busy(exc):
                raise
