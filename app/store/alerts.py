"""The alert aggregate: batched loads and writes for ingest and the sweeper.

One :class:`AlertUnit` is one transaction. It loads the alerts a batch
touches with their rows locked, lets the caller decide in memory, and writes
every change with a few executemany statements.

Locking: SQLite's ``BEGIN IMMEDIATE`` already excludes every other writer.
On PostgreSQL existing rows are locked ``FOR UPDATE``; a fingerprint with no
row yet cannot be row-locked, so the unit takes a transaction-scoped
advisory lock on its stripe (one of 1,024, by hash, in sorted order) and
reads it again: a replica that created it meanwhile has committed by then
and its row is found and locked. Creation is thus serialized without
``INSERT … RETURNING``, which costs 3 s per 10,000 rows through psycopg's
executemany against 0.4 s without.
"""

import asyncio
import contextlib
import functools
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_types
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import (
    AckRow,
    AlertRecord,
    NotificationRow,
    QuarantineRow,
    Status,
    TransitionRow,
)
from app.core.domain import NotificationStatus as NS
from app.core.grouping import GroupChange
from app.store.engine import PREFER_INDEX_WALKS
from app.store.tables import (
    UTCDateTime,
    alert_acks,
    alert_escalations,
    alert_transitions,
    alerts,
    notification_alerts,
    notifications,
    quarantined_alerts,
    remembered_text,
)
from app.store.wakeup import notify_outbox

_CHUNK = 500  # fingerprints per SELECT on SQLite (compiled on the loop's thread)
# Rows per statement in a write (see AlertUnit._sqlite_slices and _pg_json_slices).
_WRITE_SLICE = 250
T = TypeVar("T")
P = TypeVar("P")

# New fingerprints are serialized across replicas by advisory locks on 1,024
# stripes of their hash, not one lock per fingerprint: PostgreSQL's lock
# table holds max_locks_per_transaction x max_connections entries in all
# (6,400 by default), and a webhook of 20,000 new alerts ran out of it
# ("out of shared memory": a 503 on every retry). Two-key locks: a space of
# their own, apart from the groups' one-key locks. pg_advisory_xact_lock is
# volatile, so PostgreSQL calls it after the sort: every transaction takes
# its stripes in the same order.
# The space is 1634496116 (0x616C7274, "alrt"); the stripe is the hash's low
# ten bits.
_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock(1634496116, s) FROM ("
    "SELECT DISTINCT (hashtextextended(fp, 0) & 1023)::int AS s "
    "FROM unnest(CAST(:fps AS text[])) AS fp) AS stripes ORDER BY s"
)
# The locking read on PostgreSQL: every fingerprint in one array parameter,
# the primary key walked in order (PREFER_INDEX_WALKS, taken by load), so two
# replicas lock overlapping rows in the same order. As 20
# statements of 500 bound values each, right after a burst it scanned the
# whole table and compared each row with each value: 1.8 s at 10,000 stored
# alerts, 3.8 s at 20,000, for 10,000 fingerprints (tests/perf/stages.py).
_SELECT_LOCKED_PG = (
    sa.select(alerts)
    .where(alerts.c.fingerprint == sa.any_(sa.cast(sa.bindparam("fps"), pg_types.ARRAY(sa.Text()))))
    .order_by(alerts.c.fingerprint)
    .with_for_update()
)


class ConcurrentInsert(Exception):
    """Another transaction inserted one of our new alerts first; retry.

    The advisory locks make this a should-not-happen; it is the safety net."""


def record_from_row(row: Any) -> AlertRecord:
    m = row._mapping
    return AlertRecord(
        fingerprint=m["fingerprint"],
        labels=m["labels"],
        annotations=m["annotations"],
        status=Status(m["status"]),
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        generator_url=m["generator_url"],
        source=m["source"],
        group_key=m["group_key"],
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        last_changed=m["last_changed"],
        duplicate_count=m["duplicate_count"],
        stale_count=m["stale_count"],
        runbook_url=m["runbook_url"],
        runbook_source=m["runbook_source"],
        incident_key=m["incident_key"],
        flap_score=m["flap_score"],
        flap_score_at=m["flap_score_at"],
        flapping=m["flapping"],
        flap_started_at=m["flap_started_at"],
        flap_transitions=m["flap_transitions"],
        next_renotify_at=m["next_renotify_at"],
        renotify_count=m["renotify_count"],
        content_hash=m["content_hash"],
        skewed_at=m["skewed_at"],
        clock_skew=m["clock_skew"],
        ack_at=m["ack_at"],
        ack_by=m["ack_by"],
        ack_via=m["ack_via"],
        ack_comment=m["ack_comment"],
        ack_until=m["ack_until"],
        escalation_since=m["escalation_since"],
        next_escalation_at=m["next_escalation_at"],
        escalated_to=tuple(m["escalated_to"] or ()),
    )


def _row_values(rec: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": rec.fingerprint,
        "alertname": rec.alertname,
        "labels": rec.labels,
        "annotations": rec.annotations,
        "status": rec.status.value,
        "starts_at": rec.starts_at,
        "ends_at": rec.ends_at,
        "generator_url": rec.generator_url,
        "severity": rec.severity,
        "source": rec.source,
        "group_key": rec.group_key,
        "first_seen": rec.first_seen,
        "last_seen": rec.last_seen,
        "last_changed": rec.last_changed,
        "duplicate_count": rec.duplicate_count,
        "stale_count": rec.stale_count,
        "runbook_url": rec.runbook_url,
        "runbook_source": rec.runbook_source,
        "incident_key": rec.incident_key,
        "flap_score": rec.flap_score,
        "flap_score_at": rec.flap_score_at,
        "flapping": rec.flapping,
        "flap_started_at": rec.flap_started_at,
        "flap_transitions": rec.flap_transitions,
        "next_renotify_at": rec.next_renotify_at,
        "renotify_count": rec.renotify_count,
        "content_hash": rec.content_hash,
        "skewed_at": rec.skewed_at,
        "clock_skew": rec.clock_skew,
        "ack_at": rec.ack_at,
        "ack_by": rec.ack_by,
        "ack_via": rec.ack_via,
        "ack_comment": rec.ack_comment,
        "ack_until": rec.ack_until,
        "escalation_since": rec.escalation_since,
        "next_escalation_at": rec.next_escalation_at,
        "escalated_to": list(rec.escalated_to) or None,
    }


# The columns a changed alert rewrites: all of them.
_ALL_COLUMNS = tuple(alerts.c.keys())
# Duplicates only touch these, keeping the hot path's statement small.
_SEEN_COLUMNS = ("fingerprint", "last_seen", "duplicate_count", "stale_count")


# The repeat fast path: one statement confirms and counts (by the times each
# appears in the batch) every alert that repeats its stored position and
# content (a duplicate) or comes from before it (stale: an older occurrence,
# or a late "firing" of the occurrence already resolved); its row lock makes
# the check atomic. Either way only ``last_seen`` and a counter change, as in
# app/core/lifecycle.py's on_alert. A stale verdict is only taken here when
# neither side's startsAt was skewed (``k.ok``, and ``skewed_at IS NULL``):
# those order by arrival time, which the full path works out.
# SQLite gets every key in one JSON parameter, unpacked by json_each and
# joined on the primary key: one statement for the whole batch, compiled once.
# (A row-value IN list compiled 250 keys per statement on the event loop's
# thread: 10,000 repeats took 40 statements and ~0.2 s of the loop.)
# SQLite's RETURNING cannot name the joined keys, so it returns the stored
# position and Python tells the duplicates from the stale (they exclude
# each other: a duplicate has the key's status and startsAt, stale does not).
_TOUCH_REPEATS_SQLITE = (
    "UPDATE alerts SET last_seen = :now, "
    "duplicate_count = duplicate_count + CASE WHEN "
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "THEN k.n ELSE 0 END, "
    "stale_count = stale_count + CASE WHEN "
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "THEN 0 ELSE k.n END "
    "FROM (SELECT json_extract(value, '$[0]') AS fp, json_extract(value, '$[1]') AS st, "
    "json_extract(value, '$[2]') AS sa, json_extract(value, '$[3]') AS h, "
    "json_extract(value, '$[4]') AS n, json_extract(value, '$[5]') AS ok "
    "FROM json_each(:keys)) AS k "
    "WHERE alerts.fingerprint = k.fp AND ("
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "OR (k.ok AND ((alerts.skewed_at IS NULL AND alerts.starts_at > k.sa) "
    "OR (alerts.starts_at = k.sa AND k.st = 'firing' AND alerts.status = 'resolved')))) "
    "RETURNING alerts.fingerprint, alerts.status, alerts.starts_at, alerts.content_hash"
)
_SQLITE_TIME = UTCDateTime().bind_processor(sqlite_dialect.dialect())
_PACK_INLINE_KEYS = 500


def _pack_keys(keys: list["DuplicateKey"]) -> tuple[str, dict[str, tuple[str, str, str]]]:
    """The keys as one JSON parameter, and each one's (status, startsAt as
    stored, content hash): a returned row with all three is a duplicate."""
    assert _SQLITE_TIME is not None
    stored_as: dict[str, tuple[str, str, str]] = {}
    rows = []
    for k in keys:
        starts = _SQLITE_TIME(k.starts_at)
        stored_as[k.fingerprint] = (k.status, starts, k.content_hash)
        rows.append((k.fingerprint, k.status, starts, k.content_hash, k.count, int(k.may_be_stale)))
    return json.dumps(rows, separators=(",", ":")), stored_as


# PostgreSQL plans a long row-value IN list as an OR per row (10,000 keys took
# 3.3 s); joining against unnest() of the key arrays is one hash join instead.
# A hash join visits (and locks) rows in hash order, though: two replicas
# whose batches overlapped deadlocked about once per 8 s round (measured,
# tests/perf/replicas.py). The ``locked`` CTE takes the row locks in
# fingerprint order, as every other lock on alerts is taken, and the update
# joins its rows only.
# Sent straight to psycopg (``%(name)s`` parameters), like SQLite's above.
_TOUCH_REPEATS_PG = (
    # The keys come as one JSON parameter (psycopg dumps six arrays element
    # by element in Python: ~3% of a 1-alert webhook's CPU, measured).
    "WITH k AS (SELECT e->>0 AS fp, e->>1 AS st, CAST(e->>2 AS timestamptz) AS sa, "
    "e->>3 AS h, CAST(e->>4 AS bigint) AS n, CAST(e->>5 AS boolean) AS ok "
    "FROM json_array_elements(CAST(%(keys)s AS json)) AS e), "
    "locked AS (SELECT k.* FROM alerts JOIN k ON alerts.fingerprint = k.fp "
    "ORDER BY alerts.fingerprint FOR UPDATE OF alerts) "
    "UPDATE alerts SET last_seen = %(now)s, "
    "duplicate_count = alerts.duplicate_count + CASE WHEN "
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "THEN k.n ELSE 0 END, "
    "stale_count = alerts.stale_count + CASE WHEN "
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "THEN 0 ELSE k.n END "
    "FROM locked AS k WHERE alerts.fingerprint = k.fp AND ("
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h) "
    "OR (k.ok AND ((alerts.skewed_at IS NULL AND alerts.starts_at > k.sa) "
    "OR (alerts.starts_at = k.sa AND k.st = 'firing' AND alerts.status = 'resolved')))) "
    "RETURNING alerts.fingerprint, "
    "(alerts.status = k.st AND alerts.starts_at = k.sa AND alerts.content_hash = k.h)"
)


# SQL, the order of its parameters, and the bind processors to apply to them.
_SqliteStatement = tuple[str, list[str], list[tuple[str, Callable[[Any], Any]]]]
_sqlite_inserts: dict[tuple[str, tuple[str, ...], bool, frozenset[str]], _SqliteStatement] = {}
_sqlite_updates: dict[tuple[str, ...], _SqliteStatement] = {}


def _sqlite_insert(
    dialect: Any,
    table: sa.Table,
    columns: tuple[str, ...],
    ignore_conflicts: bool,
    serialized: frozenset[str],
) -> _SqliteStatement:
    """SQLAlchemy's compiled SQLite insert of ``columns`` (built once per shape)."""
    key = (table.name, columns, ignore_conflicts, serialized)
    found = _sqlite_inserts.get(key)
    if found is None:
        insert = sqlite_insert(table).values({c: sa.bindparam(c) for c in columns})
        if ignore_conflicts:
            insert = insert.on_conflict_do_nothing()
        found = _sqlite_inserts[key] = _sqlite_compiled(insert, dialect, serialized)
    return found


def _sqlite_update(dialect: Any, columns: tuple[str, ...]) -> _SqliteStatement:
    """The same for an UPDATE of alerts' ``columns``, matched on the
    fingerprint, its parameters named ``b_<column>`` (built once per shape)."""
    found = _sqlite_updates.get(columns)
    if found is None:
        statement = (
            alerts.update()
            .where(alerts.c.fingerprint == sa.bindparam("b_fingerprint"))
            .values({c: sa.bindparam(f"b_{c}") for c in columns if c != "fingerprint"})
        )
        found = _sqlite_updates[columns] = _sqlite_compiled(statement, dialect)
    return found


def _sqlite_compiled(
    statement: Any, dialect: Any, serialized: frozenset[str] = frozenset()
) -> _SqliteStatement:
    """``statement`` compiled for SQLite: its SQL, the order of its parameters
    and the bind processor of each one (none for ``serialized`` parameters,
    which come as JSON text already)."""
    compiled = statement.compile(dialect=dialect)
    order = list(compiled.positiontup or ())
    convert: list[tuple[str, Callable[[Any], Any]]] = [
        (name, f)
        for name in order
        if name not in serialized
        and (f := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
    ]
    return str(compiled), order, convert


@functools.cache
def _pg_bulk_insert(table: sa.Table, columns: tuple[str, ...], ignore_conflicts: bool) -> Any:
    """One INSERT of a whole slice on PostgreSQL: the rows travel as one JSON
    array and the server turns them into the table's row type.

    Through psycopg's executemany each value was adapted and each row sent on
    its own: 10,000 new alerts (40,000 rows) cost 1.1 s of the event loop's
    CPU. As JSON they are one ``json.dumps`` in C per slice, and the parsing
    runs in the server's process, on the other core (tests/perf/stages.py).
    """
    names = ", ".join(columns)  # column names from app/store/tables.py, never input
    sql = (
        f"INSERT INTO {table.name} ({names}) SELECT {names} "  # noqa: S608
        f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"
    )
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    return sa.text(sql)


@functools.cache
def _pg_bulk_update(table: sa.Table, key: str, columns: tuple[str, ...]) -> Any:
    """One UPDATE of a whole slice on PostgreSQL, matched on ``key``: the rows
    as one JSON array (see :func:`_pg_bulk_insert`). The rows were locked
    ``FOR UPDATE`` when they were loaded, so the order they change in does
    not matter."""
    sets = ", ".join(f"{c} = r.{c}" for c in columns if c != key)
    return sa.text(
        f"UPDATE {table.name} SET {sets} "  # noqa: S608 (names from tables.py)
        f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json)) AS r "
        f"WHERE {table.name}.{key} = r.{key}"
    )


def _sqlite_error(sql: str, exc: sqlite3.Error) -> Exception:
    """A driver error as SQLAlchemy would have raised it, so callers (503 on a
    locked or full database, ConcurrentInsert) see no change."""
    return sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error)


async def _pipelined(
    items: Sequence[T],
    build: Callable[[Sequence[T]], P],
    send: Callable[[P], Awaitable[Any]],
    *,
    cancel_on_error: bool,
) -> None:
    """``send`` each slice of ``_WRITE_SLICE`` items as ``build`` makes it;
    slice k+1 is built while slice k's statement runs (on SQLite's thread,
    or in PostgreSQL's server), and nothing else touches the connection
    until that statement is awaited. When something fails, a statement
    still running is cancelled (``cancel_on_error``) or waited for."""
    pending: asyncio.Future[Any] | None = None
    try:
        for start in range(0, len(items), _WRITE_SLICE):
            payload = build(items[start : start + _WRITE_SLICE])
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(send(payload))
            if start + _WRITE_SLICE < len(items):
                # Let it reach its thread or the server before the next slice.
                await asyncio.sleep(0)
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            if cancel_on_error:
                pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class DuplicateKey:
    fingerprint: str
    status: str
    starts_at: datetime
    content_hash: str
    count: int  # times it appears in the batch
    # Its startsAt is within the allowed clock skew: SQL may find it stale.
    may_be_stale: bool = True


@dataclass(frozen=True)
class EscalationRow:
    fingerprint: str
    incident_key: str
    step: int
    receiver: str
    after_s: float
    since: datetime
    fired_at: datetime


def _escalation_values(e: EscalationRow) -> dict[str, Any]:
    return {
        "fingerprint": e.fingerprint,
        "incident_key": e.incident_key,
        "step": e.step,
        "receiver": e.receiver,
        "after_s": e.after_s,
        "since": e.since,
        "fired_at": e.fired_at,
    }


def _not_acked(now: datetime) -> list[Any]:
    """SQL for :func:`app.core.ack.is_acked` being false at ``now`` (an ack that
    ran out counts as none: the step resumes and records its expiry)."""
    columns = alerts.c
    return [
        sa.or_(
            columns.ack_at.is_(None),
            sa.and_(columns.ack_until.is_not(None), columns.ack_until <= now),
        )
    ]


@dataclass
class AlertChanges:
    """What one unit of work writes."""

    new: list[AlertRecord] = field(default_factory=list)
    changed: list[AlertRecord] = field(default_factory=list)  # every column
    seen: list[AlertRecord] = field(default_factory=list)  # last_seen and counters only
    transitions: list[TransitionRow] = field(default_factory=list)
    notifications: list[NotificationRow] = field(default_factory=list)
    quarantined: list[QuarantineRow] = field(default_factory=list)
    # Grouped notices still to turn into rows (ingest reads their groups first).
    groups: list[GroupChange] = field(default_factory=list)
    acks: list[AckRow] = field(default_factory=list)  # ack history rows


class AlertUnit:
    """Loads locked alert rows and writes a batch of changes, in one transaction."""

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert(self, table: sa.Table) -> Any:
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    async def load(self, fingerprints: Iterable[str]) -> dict[str, AlertRecord]:
        """Load and lock the alerts with these fingerprints (see the module docstring)."""
        wanted = sorted(set(fingerprints))
        if self.dialect == "postgresql":
            await self.conn.execute(PREFER_INDEX_WALKS)  # for the rest of the transaction
        found = await self._select_locked(wanted)
        if self.dialect == "postgresql":
            missing = [fp for fp in wanted if fp not in found]
            if missing:
                await self.conn.execute(_ADVISORY_LOCKS, {"fps": missing})
                found.update(await self._select_locked(missing))
        return found

    async def touch_repeats(self, keys: list[DuplicateKey], now: datetime) -> dict[str, bool]:
        """Count the alerts of ``keys`` that repeat their stored state (duplicates)
        or come from before it (stale); return each one's fingerprint with True
        for a duplicate, False for stale."""
        ordered = sorted(keys, key=lambda k: k.fingerprint)
        if self.dialect == "postgresql":
            keys_json = json.dumps(
                [
                    (
                        k.fingerprint,
                        k.status,
                        k.starts_at.isoformat(),  # with its offset: exact as timestamptz
                        k.content_hash,
                        k.count,
                        k.may_be_stale,
                    )
                    for k in ordered
                ],
                separators=(",", ":"),
            )
            rows = await self._pg_fetch(_TOUCH_REPEATS_PG, {"keys": keys_json, "now": now})
            return {row[0]: bool(row[1]) for row in rows}
        # 10,000 keys take tens of milliseconds to pack: off the loop's thread.
        packed, stored_as = (
            await asyncio.to_thread(_pack_keys, ordered)
            if len(ordered) > _PACK_INLINE_KEYS
            else _pack_keys(ordered)
        )
        # Straight on the driver, as one call: through SQLAlchemy the statement
        # crossed to SQLite's thread and back four times (cursor, execute,
        # fetch, close), each a turn of the event loop, on every batch
        # (tests/perf/requests.py: 8-10% of a repeat's CPU).
        assert _SQLITE_TIME is not None
        params = {"keys": packed, "now": _SQLITE_TIME(now)}
        driver = await self._driver()
        try:
            rows = await driver.execute_fetchall(_TOUCH_REPEATS_SQLITE, params)
        except sqlite3.Error as exc:
            raise _sqlite_error(_TOUCH_REPEATS_SQLITE, exc) from exc
        return {row[0]: tuple(row[1:]) == stored_as[row[0]] for row in rows}

    async def _pg_fetch(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """Run ``sql`` on psycopg itself and return its rows: SQLAlchemy's
        execution layer cost ~110 µs of a one-statement batch's ~700.

        Errors come out as SQLAlchemy would raise them. A connection the
        server closed is invalidated first, so the pool drops it and ingest's
        retry on a new connection applies (``is_dropped_connection``)."""
        driver = await self._driver()
        try:
            async with driver.cursor() as cursor:
                await cursor.execute(sql, params)
                return list(await cursor.fetchall())
        except psycopg.Error as exc:
            gone = bool(driver.closed or driver.broken)
            if gone:
                await self.conn.invalidate()
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, psycopg.Error, connection_invalidated=gone
            ) from exc

    async def _driver(self) -> Any:
        """The driver's own connection under this transaction (aiosqlite's or
        psycopg's), for the statements sent to it directly."""
        driver = (await self.conn.get_raw_connection()).driver_connection
        assert driver is not None
        return driver

    async def _select_locked(self, wanted: list[str]) -> dict[str, AlertRecord]:
        found: dict[str, AlertRecord] = {}
        if self.dialect == "postgresql":
            for row in await self.conn.execute(_SELECT_LOCKED_PG, {"fps": wanted}):
                rec = record_from_row(row)
                found[rec.fingerprint] = rec
            return found
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            query = (
                sa.select(alerts)
                .where(alerts.c.fingerprint.in_(chunk))
                .order_by(alerts.c.fingerprint)
            )
            for row in await self.conn.execute(query):
                rec = record_from_row(row)
                found[rec.fingerprint] = rec
        return found

    async def load_flapping(self, after: str, limit: int) -> list[AlertRecord]:
        """Lock and load up to ``limit`` flapping alerts past ``after``, in fingerprint order."""
        return await self._load_where(
            sa.and_(alerts.c.flapping.is_(True), alerts.c.fingerprint > after), limit
        )

    async def load_reminders_due(self, now: datetime, limit: int) -> list[AlertRecord]:
        """Lock and load firing, non-flapping alerts whose reminder is due."""
        due = sa.and_(
            alerts.c.status == Status.FIRING.value,
            alerts.c.flapping.is_(False),
            alerts.c.next_renotify_at.is_not(None),
            alerts.c.next_renotify_at <= now,
        )
        return await self._load_where(due, limit)

    async def load_escalations_due(self, now: datetime, limit: int) -> list[AlertRecord]:
        """Lock and load alerts whose next escalation step is due and that are
        not acknowledged (an expired ack counts as none). The index on
        ``next_escalation_at`` keeps this to the due rows."""
        due = sa.and_(
            alerts.c.next_escalation_at.is_not(None),
            alerts.c.next_escalation_at <= now,
            *_not_acked(now),
        )
        return await self._load_where(due, limit)

    async def record_escalations(self, steps: list[EscalationRow]) -> set[tuple[str, str]]:
        """Insert the steps not recorded yet; return the (fingerprint, receiver)
        of those this call inserted. A step another transaction recorded is
        left out, so its notifications are not queued twice."""
        if not steps:
            return set()
        inserted: set[tuple[str, str]] = set()
        statement = (
            self._insert(alert_escalations)
            .on_conflict_do_nothing()
            .returning(alert_escalations.c.fingerprint, alert_escalations.c.receiver)
        )
        for step in steps:
            result = await self.conn.execute(statement, _escalation_values(step))
            inserted.update((row[0], row[1]) for row in result)
        return inserted

    async def _load_where(self, condition: Any, limit: int) -> list[AlertRecord]:
        query = sa.select(alerts).where(condition).order_by(alerts.c.fingerprint).limit(limit)
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [record_from_row(r) for r in await self.conn.execute(query)]

    async def _link_alerts(self, grouped: list[NotificationRow]) -> None:
        """The alerts each grouped row was about (``notification_alerts``),
        by the ids the rows just got; a row a replica had already queued
        finds its links there too (conflicts are skipped)."""
        if not grouped:
            return
        keys = [r.idempotency_key for r in grouped]
        ids: dict[str, int] = {}
        for start in range(0, len(keys), _CHUNK):
            query = sa.select(notifications.c.idempotency_key, notifications.c.id).where(
                notifications.c.idempotency_key.in_(keys[start : start + _CHUNK])
            )
            ids.update({k: i for k, i in await self.conn.execute(query)})
        links = [
            {"fingerprint": fp, "notification_id": ids[r.idempotency_key]}
            for r in grouped
            if r.idempotency_key in ids
            for fp in r.alerts
        ]
        await self._insert_sliced(notification_alerts, links, dict, ignore_conflicts=True)

    async def _execute_sliced(
        self, statement: Any, items: Sequence[T], values: Callable[[T], dict[str, Any]]
    ) -> None:
        """``executemany`` in slices, each slice's rows built just before it:
        rows and parameters are prepared on the event loop's thread, and
        10,000 at once would stall it for seconds; between slices the loop
        answers other requests."""
        for start in range(0, len(items), _WRITE_SLICE):
            rows = [values(item) for item in items[start : start + _WRITE_SLICE]]
            await self.conn.execute(statement, rows)

    async def _insert_sliced(
        self,
        table: sa.Table,
        items: Sequence[T],
        values: Callable[[T], dict[str, Any]],
        *,
        ignore_conflicts: bool = False,
        serialized: frozenset[str] = frozenset(),
    ) -> None:
        """Insert ``items`` into ``table``; ``serialized`` columns come as JSON
        text on SQLite (on PostgreSQL as the objects themselves)."""
        if not items:
            return
        columns = tuple(values(items[0]))
        if self.dialect != "sqlite":
            statement = _pg_bulk_insert(table, columns, ignore_conflicts)
            await self._pg_json_slices(statement, table, columns, items, values)
            return
        compiled = _sqlite_insert(self.conn.dialect, table, columns, ignore_conflicts, serialized)
        await self._sqlite_slices(compiled, items, values)

    async def _update_alerts(
        self,
        columns: tuple[str, ...],
        items: Sequence[AlertRecord],
        values: Callable[[AlertRecord], dict[str, Any]],
    ) -> None:
        """Update these alerts (locked when loaded) with ``values``: the
        columns named, matched on the fingerprint."""
        if not items:
            return
        if self.dialect != "sqlite":
            bulk = _pg_bulk_update(alerts, "fingerprint", columns)
            await self._pg_json_slices(bulk, alerts, columns, items, values)
            return

        def bound(rec: AlertRecord) -> dict[str, Any]:
            return {f"b_{k}": v for k, v in values(rec).items()}

        await self._sqlite_slices(_sqlite_update(self.conn.dialect, columns), items, bound)

    async def _sqlite_slices(
        self,
        compiled: _SqliteStatement,
        items: Sequence[T],
        values: Callable[[T], dict[str, Any]],
    ) -> None:
        """Run ``compiled`` for every item, ``_WRITE_SLICE`` rows per
        ``executemany``, straight on the driver: each column goes through the
        bind processor SQLAlchemy itself would apply (10,000 alerts: 0.33 s
        against 0.46 s through SQLAlchemy, measured).

        The conversion of slice k+1 and SQLite's writing of slice k take turns
        rather than overlap: the driver needs the GIL for every row it binds,
        and a thread busy in Python hands it over only every switch interval
        (docs/performance.md, fourth stop). Between slices the event loop
        answers other requests.
        """
        sql, order, convert = compiled
        driver = await self._driver()

        def build(chunk: Sequence[T]) -> list[list[Any]]:
            rows = []
            for item in chunk:
                row = values(item)
                for name, f in convert:
                    row[name] = f(row[name])
                rows.append([row[name] for name in order])
            return rows

        try:
            await _pipelined(
                items, build, lambda rows: driver.executemany(sql, rows), cancel_on_error=True
            )
        except sqlite3.Error as exc:
            raise _sqlite_error(sql, exc) from exc

    async def _pg_json_slices(
        self,
        statement: Any,
        table: sa.Table,
        columns: tuple[str, ...],
        items: Sequence[T],
        values: Callable[[T], dict[str, Any]],
    ) -> None:
        """Run ``statement`` once per slice of ``_WRITE_SLICE`` rows, the rows as
        one JSON parameter, pipelined (:func:`_pipelined`). A statement already
        sent is never cancelled: the transaction's rollback comes after it."""
        dates = [c for c in columns if isinstance(table.c[c].type, UTCDateTime)]
        # ISO 8601 with the offset: PostgreSQL's timestamptz reads it exactly.
        convert = remembered_text(datetime.isoformat)

        def build(chunk: Sequence[T]) -> str:
            rows = []
            for item in chunk:
                row = values(item)
                for name in dates:
                    row[name] = convert(row[name])
                rows.append(row)
            return json.dumps(rows, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

        await _pipelined(
            items,
            build,
            lambda text: self.conn.execute(statement, {"rows": text}),
            cancel_on_error=False,
        )

    async def write(self, changes: AlertChanges) -> None:
        if changes.new:
            new = sorted(changes.new, key=lambda r: r.fingerprint)
            try:
                await self._insert_sliced(alerts, new, _row_values)
            except sa.exc.IntegrityError as exc:
                raise ConcurrentInsert(str(exc.orig)[:200]) from None
        if changes.changed:
            await self._update_alerts(_ALL_COLUMNS, changes.changed, _row_values)
        if changes.seen:
            await self._update_alerts(_SEEN_COLUMNS, changes.seen, _seen_values)
        if changes.transitions:
            await self._insert_sliced(
                alert_transitions,
                changes.transitions,
                _transition_values,
                ignore_conflicts=True,
            )
        if changes.notifications:
            # A notice's rows (one per integration) share one payload object:
            # on SQLite it is serialized once, not once per row.
            texts: dict[int, str] = {}

            def values(n: NotificationRow) -> dict[str, Any]:
                row = _notification_values(n)
                text = texts.get(id(n.payload))
                if text is None:
                    text = texts[id(n.payload)] = _json_text(n.payload)
                row["payload"] = text
                return row

            await self._insert_sliced(
                notifications,
                changes.notifications,
                values if self.dialect == "sqlite" else _notification_values,
                ignore_conflicts=True,
                serialized=frozenset({"payload"}),
            )
            await self._link_alerts([r for r in changes.notifications if r.alerts])
            if self.dialect == "postgresql":
                # Wakes delivery in other processes, on commit only (app/store/wakeup.py).
                await notify_outbox(self.conn)
        if changes.quarantined:
            await self._execute_sliced(
                quarantined_alerts.insert(), changes.quarantined, _quarantine_values
            )
        if changes.acks:
            await self._execute_sliced(alert_acks.insert(), changes.acks, ack_values)


def _seen_values(rec: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": rec.fingerprint,
        "last_seen": rec.last_seen,
        "duplicate_count": rec.duplicate_count,
        "stale_count": rec.stale_count,
    }


def _transition_values(t: TransitionRow) -> dict[str, Any]:
    return {
        "fingerprint": t.fingerprint,
        "occurrence": t.occurrence,
        "from_status": t.from_status.value if t.from_status else None,
        "to_status": t.to_status.value,
        "at": t.at,
        "received_at": t.received_at,
        "implied": t.implied,
        "suppressed": t.suppressed,
        "source": t.source,
    }


def _notification_values(n: NotificationRow) -> dict[str, Any]:
    return {
        "idempotency_key": n.idempotency_key,
        "fingerprint": n.fingerprint,
        "ordering_key": n.ordering_key,
        "receiver": n.receiver,
        "integration": n.integration,
        "integration_index": n.integration_index,
        "kind": n.kind.value,
        "status": NS.PENDING.value,
        "dedup_key": n.dedup_key,
        "payload": n.payload,
        "created_at": n.created_at,
        "next_attempt_at": n.created_at,
        "attempts": 0,
        "message_key": n.message_key,
    }


def ack_values(a: AckRow) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "occurrence": a.occurrence,
        "action": a.action.value,
        "actor": a.actor,
        "via": a.via,
        "comment": a.comment,
        "until": a.until,
        "at": a.at,
    }


def _quarantine_values(q: QuarantineRow) -> dict[str, Any]:
    return {
        "received_at": q.received_at,
        "source": q.source,
        "group_key": q.group_key,
        "reason": q.reason,
        "alert_json": q.alert_json,
    }
