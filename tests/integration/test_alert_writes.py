"""The alert unit's writes read back exactly what was written, on both databases.

SQLite's rows go to the driver through SQLAlchemy's bind processors;
PostgreSQL's travel as one JSON array per slice (app/store/alerts.py). Both
must keep every column: timestamps to the microsecond and in UTC, text
beyond ASCII, floats, booleans, JSON maps, and NULL where a column is
empty. A slice boundary sits inside these batches (more rows than one
statement takes).
"""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.core.domain import AlertRecord, Status, TransitionRow
from app.store.alerts import _WRITE_SLICE, AlertChanges, AlertUnit, ConcurrentInsert
from app.store.engine import Database, sync_url

T0 = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)
N = _WRITE_SLICE + 7


def record(i: int) -> AlertRecord:
    return AlertRecord(
        fingerprint=f"{i:016x}",
        labels={"alertname": "Disk", "instance": f"host-{i}", "note": 'ünïcödé ✓ "q" \\ b'},
        annotations={"summary": "disk full", "description": "line one\nline two\ttab"},
        status=Status.FIRING,
        starts_at=T0 + timedelta(microseconds=i),
        ends_at=None,
        generator_url="http://prometheus:9090/graph?g0.expr=up%3D%3D0",
        source="alertmanager",
        group_key='{}:{alertname="Disk"}',
        first_seen=T0,
        last_seen=T0,
        last_changed=T0,
        flap_score=0.1 + i / 3,
        flap_score_at=T0,
        content_hash="h" * 16,
        runbook_url=None,
    )


async def load(db: Database, fingerprints: list[str]) -> dict[str, AlertRecord]:
    async with db.write() as conn:
        return await AlertUnit(conn, db.kind).load(fingerprints)


async def test_new_changed_and_seen_alerts_read_back_as_written(db_url: str) -> None:
    db = Database(db_url)
    try:
        new = [record(i) for i in range(N)]
        transitions = [
            TransitionRow(r.fingerprint, r.starts_at, None, Status.FIRING, T0, T0, False, None, "x")
            for r in new
        ]
        async with db.write() as conn:
            await AlertUnit(conn, db.kind).write(AlertChanges(new=new, transitions=transitions))
        fps = [r.fingerprint for r in new]
        assert await load(db, fps) == {r.fingerprint: r for r in new}

        later = T0 + timedelta(minutes=5, microseconds=7)
        changed = [
            replace(
                r,
                status=Status.RESOLVED,
                ends_at=later,
                last_changed=later,
                flapping=True,
                flap_started_at=later,
                escalated_to=("second", "manager"),
                ack_comment="looked at it — fine",
                clock_skew="startsAt",
            )
            for r in new[: N // 2]
        ]
        seen = [
            replace(r, last_seen=later, duplicate_count=3, stale_count=1) for r in new[N // 2 :]
        ]
        async with db.write() as conn:
            await AlertUnit(conn, db.kind).write(AlertChanges(changed=changed, seen=seen))
        assert await load(db, fps) == {r.fingerprint: r for r in changed + seen}

        engine = sa.create_engine(sync_url(db_url))
        try:
            with engine.connect() as conn:
                stored = conn.execute(
                    sa.text("SELECT count(*), count(DISTINCT occurrence) FROM alert_transitions")
                ).one()
        finally:
            engine.dispose()
        assert tuple(stored) == (N, N)
    finally:
        await db.dispose()


async def test_an_alert_another_writer_created_first_is_a_concurrent_insert(db_url: str) -> None:
    """The safety net under the creation locks: inserting a row that exists
    raises ConcurrentInsert (the ingest retries and finds the row), and
    nothing of the failed batch is kept."""
    db = Database(db_url)
    try:
        first = record(1)
        async with db.write() as conn:
            await AlertUnit(conn, db.kind).write(AlertChanges(new=[first]))
        with pytest.raises(ConcurrentInsert):
            async with db.write() as conn:
                await AlertUnit(conn, db.kind).write(
                    AlertChanges(new=[record(2), replace(first, labels={"alertname": "Other"})])
                )
        found = await load(db, [first.fingerprint, record(2).fingerprint])
        assert found == {first.fingerprint: first}
        assert json.dumps(found[first.fingerprint].labels, sort_keys=True) == json.dumps(
            first.labels, sort_keys=True
        )
    finally:
        await db.dispose()
