"""The outbox: claiming due notifications, recording outcomes, replaying dead ones.

Claims take a lease (owner, token, expiry) and count the attempt before
anything is sent, so a crash mid-send leaves a visible, countable attempt:
the next claim of that row records it as ``interrupted`` in
``delivery_attempts``. Finished attempts are recorded with their outcome.
PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``; SQLite with one guarded
``UPDATE … RETURNING`` inside ``BEGIN IMMEDIATE`` (SQLAlchemy would silently
drop SKIP LOCKED there, and select-then-update hands two workers the same
rows). A row is claimable only when no earlier row of its ordering key
(fingerprint and integration) is still pending or in flight: per
destination, a resolve never overtakes its trigger, even while the trigger
backs off. Every outcome is fenced by the lease token: a worker whose lease
expired and was re-claimed changes nothing.
"""

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.domain import NoticeKind, integration_key
from app.core.domain import NotificationStatus as NS
from app.core.payload import NoticePayload
from app.store import message_refs
from app.store.engine import PREFER_INDEX_WALKS
from app.store.message_refs import RefWrite, StoredRef
from app.store.tables import UTCDateTime, delivery_attempts, notifications
from app.store.wakeup import notify_outbox

n = notifications.c
_earlier = notifications.alias("earlier")


class Result(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    # Settled without sending: its message already shows a newer state (an
    # edit would go backwards). The row counts as sent; its attempt says why.
    SKIPPED = "skipped"
    RELEASED = "released"  # handed back unsent: at shutdown, or too little lease left
    DEFERRED = "deferred"  # handed back unsent: its destination's rate limit is spent


@dataclass(frozen=True)
class Claimed:
    id: int
    idempotency_key: str
    fingerprint: str
    receiver: str
    integration: str
    integration_index: int
    kind: NoticeKind
    dedup_key: str
    payload: NoticePayload  # as fanout wrote it (JSON)
    created_at: datetime
    queued_at: datetime  # when it last joined the queue (a replay restarts max_age)
    attempt: int  # this attempt's number, counted at claim
    lease_token: str
    claimed_at: datetime
    message_key: str | None = None  # the chat message the row belongs to
    # That message's reference as stored when the row was claimed.
    message_ref: StoredRef | None = None

    @property
    def integration_key(self) -> str:
        return integration_key(self.receiver, self.integration, self.integration_index)


@dataclass(frozen=True)
class Outcome:
    id: int
    lease_token: str
    attempt: int
    result: Result
    finished_at: datetime
    duration_ms: float = 0.0
    integration: str = ""
    started_at: datetime | None = None
    next_attempt_at: datetime | None = None
    error: str | None = None
    status_code: int | None = None
    # What the attempt did with the row's chat message (posted, edited,
    # skipped…), stored on the row; and the reference to record with it.
    message: dict[str, Any] | None = None
    ref_write: RefWrite | None = None


_RETURNING = (
    n.id,
    n.idempotency_key,
    n.fingerprint,
    n.receiver,
    n.integration,
    n.integration_index,
    n.kind,
    n.dedup_key,
    n.payload,
    n.created_at,
    # Rows never replayed leave queued_at NULL: inserts need not write it.
    sa.func.coalesce(n.queued_at, n.created_at, type_=UTCDateTime()).label("queued_at"),
    n.attempts,
    n.lease_token,
    n.message_key,
)


def _not_blocked() -> Any:
    """No earlier row of the same ordering key is still pending or in flight."""
    return ~(
        sa.select(_earlier.c.id)
        .where(
            _earlier.c.ordering_key == n.ordering_key,
            _earlier.c.id < n.id,
            _earlier.c.status.in_([NS.PENDING.value, NS.IN_FLIGHT.value]),
        )
        .exists()
    )


# The claim's statements are built once and bound per call: building them
# anew every transaction (the walks, the "no earlier row" check, the guarded
# update) was about a quarter of the claim's CPU (tests/perf/claims.py).
_NOW = sa.bindparam("b_now", type_=UTCDateTime())
_EXPIRED = sa.and_(n.status == NS.IN_FLIGHT.value, n.lease_expires_at < _NOW)
_DUE = sa.and_(n.status == NS.PENDING.value, n.next_attempt_at <= _NOW)
_NOT_EXCLUDED = sa.tuple_(n.receiver, n.integration, n.integration_index).not_in(
    sa.bindparam("b_excluded", expanding=True)
)


def _walk(condition: Any, order: Any, *, excluding: bool, postgres: bool) -> sa.Select[Any]:
    """Candidates in ``order``, stopping at the bound ``b_walk_limit``."""
    stmt = (
        sa.select(
            n.id,
            n.receiver,
            n.integration,
            n.integration_index,
            n.status,
            n.attempts,
            n.lease_owner,
        )
        .where(condition, _not_blocked(), *([_NOT_EXCLUDED] if excluding else []))
        .order_by(order, n.id)
        .limit(sa.bindparam("b_walk_limit", type_=sa.Integer()))
    )
    if postgres:
        stmt = stmt.with_for_update(skip_locked=True, of=notifications)
    return stmt


# (expired leases?, excluding?, postgres?) -> the walk's statement
_WALKS = {
    (expired, excluding, postgres): _walk(
        _EXPIRED if expired else _DUE,
        n.lease_expires_at if expired else n.next_attempt_at,
        excluding=excluding,
        postgres=postgres,
    )
    for expired in (True, False)
    for excluding in (True, False)
    for postgres in (True, False)
}

_CLAIM = (
    notifications.update()
    .where(n.id.in_(sa.bindparam("b_ids", expanding=True)), sa.or_(_DUE, _EXPIRED))
    .values(
        status=NS.IN_FLIGHT.value,
        lease_owner=sa.bindparam("b_worker"),
        lease_token=sa.bindparam("b_token"),
        lease_expires_at=sa.bindparam("b_lease_until", type_=UTCDateTime()),
        attempts=n.attempts + 1,
    )
    .returning(*_RETURNING)
)


Room = Callable[[str, str, int], int]

# The walks below must read the index in order and stop at their limit.
# Right after a burst (a 10,000-alert webhook queues 20,000 rows) the table's
# statistics still say it is nearly empty, and PostgreSQL then chose a bitmap
# scan of every due row, the "no earlier row pending" check on each, and a
# sort: 80-120 ms a claim at 20,000 rows queued, and the backlog drained at
# ~90 rows/s for minutes (tests/perf/ingest.py's payload run). With
# PREFER_INDEX_WALKS it walks the index: 7-13 ms, whatever the statistics.
# The claim's transaction, after the walks, only updates rows by id and
# reads message references by key.


async def claim(
    conn: AsyncConnection,
    dialect: str,
    *,
    worker: str,
    token: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    room: Room,
    exclude: Iterable[tuple[str, str, int]] = (),
    expired_leases: bool = True,
    by_reference: Callable[[str, str, int], bool] | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due rows for ``worker``; their attempt counts go up by one.

    ``room(receiver, integration, index)`` is how many more sends that
    destination may have in flight: a single claim never takes more, so one
    hanging sink cannot fill every slot. ``exclude`` names destinations with
    no room at all (left out in SQL). ``expired_leases=False`` skips looking
    for rows whose lease ran out, which only a dead or hung worker leaves
    behind: callers look now and then. ``by_reference(receiver, integration,
    index)`` says which destinations edit or thread their messages: only their
    rows' message references are read (all rows' when it is None).

    Candidates come from two index walks that stop early: rows whose lease
    ran out, then pending rows oldest due first. (Per destination, order is
    kept by the "no earlier row pending" check, not by this global order.
    Sorting every due row by id had cost a correlated lookup per row per
    claim: 34 ms with 4,000 queued.) The chosen rows are then claimed by an
    UPDATE that checks again that they are claimable, so two claimers can
    never both take a row.
    """
    excluded = list(exclude)
    postgres = dialect == "postgresql"
    if postgres:
        await conn.execute(PREFER_INDEX_WALKS)
    params: dict[str, Any] = {
        "b_now": now,
        # Look past a few busy destinations' rows to find others'.
        "b_walk_limit": min(limit * 8, 2000),
    }
    if excluded:
        params["b_excluded"] = excluded
    chosen: list[int] = []
    interrupted: list[dict[str, Any]] = []  # attempts cut short by a dead worker
    left: dict[tuple[str, str, int], int] = {}
    for expired in (True, False) if expired_leases else (False,):
        if len(chosen) >= limit:
            break
        walk = _WALKS[(expired, bool(excluded), postgres)]
        for row in await conn.execute(walk, params):
            key = (row.receiver, row.integration, row.integration_index)
            if key not in left:
                left[key] = room(*key)
            if left[key] <= 0:
                continue
            left[key] -= 1
            chosen.append(int(row.id))
            if row.status == NS.IN_FLIGHT.value:
                # Its worker died or hung between claim and outcome: that
                # attempt may or may not have reached the sink.
                interrupted.append(
                    {
                        "notification_id": int(row.id),
                        "attempt": row.attempts,
                        "worker": row.lease_owner or "?",
                        "started_at": now,
                        "finished_at": now,
                        "outcome": "interrupted",
                        "error": "its worker stopped before recording an outcome (lease expired)",
                    }
                )
            if len(chosen) >= limit:
                break
    if not chosen:
        return []
    claim_params = {
        "b_ids": chosen,
        "b_now": now,
        "b_worker": worker,
        "b_token": token,
        "b_lease_until": lease_until,
    }
    rows = [r._mapping for r in await conn.execute(_CLAIM, claim_params)]
    if not rows:
        return []
    refs = await message_refs.load(
        conn,
        (
            (integration_key(m["receiver"], m["integration"], m["integration_index"]), key)
            for m in rows
            if (key := m["message_key"])
            and (
                by_reference is None
                or by_reference(m["receiver"], m["integration"], m["integration_index"])
            )
        ),
    )
    claimed = [
        Claimed(
            id=m["id"],
            idempotency_key=m["idempotency_key"],
            fingerprint=m["fingerprint"],
            receiver=m["receiver"],
            integration=m["integration"],
            integration_index=m["integration_index"],
            kind=NoticeKind(m["kind"]),
            dedup_key=m["dedup_key"],
            payload=m["payload"],
            created_at=m["created_at"],
            queued_at=m["queued_at"],
            attempt=m["attempts"],
            lease_token=m["lease_token"],
            claimed_at=now,
            message_key=m["message_key"],
            message_ref=refs.get(
                (
                    integration_key(m["receiver"], m["integration"], m["integration_index"]),
                    m["message_key"] or "",
                )
            ),
        )
        for m in sorted(rows, key=lambda m: m["id"])
    ]
    if interrupted:
        await conn.execute(delivery_attempts.insert(), interrupted)
    return claimed


_SETTLED = (Result.SENT, Result.SKIPPED)

# What an attempt did with its row's chat message (one statement per batch).
_MESSAGE_DONE = (
    notifications.update()
    .where(n.id == sa.bindparam("b_id"))
    .values(message_ref=sa.bindparam("b_message", type_=notifications.c.message_ref.type))
)

_FINISH_SENT = (
    notifications.update()
    .where(
        sa.tuple_(n.id, n.lease_token).in_(sa.bindparam("keys", expanding=True)),
        n.status == NS.IN_FLIGHT.value,
    )
    .values(
        status=NS.SENT.value,
        sent_at=sa.bindparam("now"),
        lease_owner=None,
        lease_token=None,
        lease_expires_at=None,
        last_error=None,
        last_status_code=None,
    )
    .returning(n.id)
)

# A worker that lost its lease finds its attempt already recorded as
# interrupted by the worker that took the row over: it says what happened.
_ATTEMPT_LEASE_LOST = (
    delivery_attempts.update()
    .where(
        delivery_attempts.c.notification_id == sa.bindparam("b_id"),
        delivery_attempts.c.attempt == sa.bindparam("b_attempt"),
    )
    .values(
        outcome="lease_lost",
        finished_at=sa.bindparam("b_finished"),
        status_code=sa.bindparam("b_status"),
        error=sa.bindparam("b_error"),
        duration_ms=sa.bindparam("b_duration"),
    )
)


def _values_for(o: Outcome) -> dict[str, Any]:
    common: dict[str, Any] = {
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "last_error": o.error,
        "last_status_code": o.status_code,
    }
    if o.result is Result.RETRY:
        assert o.next_attempt_at is not None
        return {**common, "status": NS.PENDING.value, "next_attempt_at": o.next_attempt_at}
    if o.result is Result.DEAD:
        return {**common, "status": NS.DEAD.value, "dead_at": o.finished_at}
    # Released or deferred: back in line, and the attempt not held against it.
    return {
        **common,
        "status": NS.PENDING.value,
        "next_attempt_at": o.next_attempt_at or o.finished_at,
        "attempts": n.attempts - 1,
    }


async def finish(conn: AsyncConnection, outcomes: list[Outcome], worker: str) -> set[int]:
    """Record outcomes; returns the ids whose lease was lost (only their attempt is noted)."""
    if not outcomes:
        return set()
    applied: set[int] = set()
    now = max(o.finished_at for o in outcomes)
    sent = [o for o in outcomes if o.result in _SETTLED]
    if sent:
        keys = [(o.id, o.lease_token) for o in sent]
        result = await conn.execute(_FINISH_SENT, {"keys": keys, "now": now})
        applied.update(row[0] for row in result)
    for o in outcomes:
        if o.result in _SETTLED:
            continue
        result = await conn.execute(
            notifications.update()
            .where(n.id == o.id, n.lease_token == o.lease_token, n.status == NS.IN_FLIGHT.value)
            .values(**_values_for(o))
        )
        if result.rowcount == 1:
            applied.add(o.id)
    recorded = [o for o in outcomes if o.id in applied]
    # The message reference and what the attempt did with it, in the same
    # transaction as the outcome: a restart or another replica edits the
    # message this attempt posted.
    await message_refs.write(conn, [o.ref_write for o in recorded if o.ref_write], now)
    described = [{"b_id": o.id, "b_message": o.message} for o in recorded if o.message is not None]
    if described:
        await conn.execute(_MESSAGE_DONE, described)
    if recorded:
        await conn.execute(
            delivery_attempts.insert(),
            [
                {
                    "notification_id": o.id,
                    "attempt": o.attempt,
                    "worker": worker,
                    "started_at": o.started_at or o.finished_at,
                    "finished_at": o.finished_at,
                    "outcome": o.result.value,
                    "status_code": o.status_code,
                    "error": o.error,
                    "duration_ms": round(o.duration_ms, 3),
                }
                for o in recorded
            ],
        )
    lost = [o for o in outcomes if o.id not in applied]
    if lost:
        await conn.execute(
            _ATTEMPT_LEASE_LOST,
            [
                {
                    "b_id": o.id,
                    "b_attempt": o.attempt,
                    "b_finished": o.finished_at,
                    "b_status": o.status_code,
                    "b_error": o.error,
                    "b_duration": round(o.duration_ms, 3),
                }
                for o in lost
            ],
        )
    return {o.id for o in outcomes} - applied


class ReplayStatus(enum.StrEnum):
    REQUEUED = "requeued"
    NOT_FOUND = "not_found"
    NOT_DEAD = "not_dead"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Replay:
    id: int
    status: ReplayStatus
    superseded_by: int | None = None


async def replay(
    conn: AsyncConnection, dialect: str, notification_id: int, now: datetime
) -> Replay:
    """Put a dead notification back in line, once.

    A dead notification that would open or keep an incident (it reports the
    alert firing) is not replayed when a later notification for the same
    alert and destination exists: it would reopen an incident that the later
    one already settled, and PagerDuty would then keep it open forever.
    """
    query = sa.select(n.id, n.status, n.ordering_key, n.payload).where(n.id == notification_id)
    if dialect == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return Replay(notification_id, ReplayStatus.NOT_FOUND)
    m = row._mapping
    if m["status"] != NS.DEAD.value:
        return Replay(notification_id, ReplayStatus.NOT_DEAD)
    if (m["payload"] or {}).get("status") == "firing":
        later = (
            await conn.execute(
                sa.select(sa.func.min(n.id)).where(
                    n.ordering_key == m["ordering_key"], n.id > notification_id
                )
            )
        ).scalar()
        if later is not None:
            return Replay(notification_id, ReplayStatus.SUPERSEDED, int(later))
    result = await conn.execute(
        notifications.update()
        .where(n.id == notification_id, n.status == NS.DEAD.value)
        .values(
            status=NS.PENDING.value,
            next_attempt_at=now,
            queued_at=now,  # max_age starts again, as the attempt count does
            attempts=0,
            replays=n.replays + 1,
            dead_at=None,
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
        )
    )
    if result.rowcount != 1:  # someone else replayed it first
        return Replay(notification_id, ReplayStatus.NOT_DEAD)
    if dialect == "postgresql":
        await notify_outbox(conn)  # the CLI replays from its own process
    return Replay(notification_id, ReplayStatus.REQUEUED)


async def dead_ids(conn: AsyncConnection, limit: int = 100_000) -> list[int]:
    rows = await conn.execute(
        sa.select(n.id).where(n.status == NS.DEAD.value).order_by(n.id).limit(limit)
    )
    return [int(r[0]) for r in rows]
