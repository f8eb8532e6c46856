"""Query shapes that must stay index searches when the tables hold a year.

SQLite plans without statistics (alertrelay never runs ANALYZE), so the plan
of a statement on an empty database is the plan it gets at a million rows.
Each case was a full scan once; the year benchmark (tests/perf/year.py)
measured what that cost.
"""

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from app.store.alerts import _TOUCH_REPEATS_SQLITE
from app.store.engine import sync_url
from app.store.tables import alerts, notifications
from tests.helpers import sent_statements


def plan(db_url: str, stmt: Any, params: dict[str, Any] | None = None) -> str:
    """SQLite's plan for ``stmt`` as alertrelay's engine sends it (bound values and all)."""
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn, sent_statements(engine) as sent:
            conn.execute(stmt, params or {})  # the tables are empty: nothing changes
            conn.rollback()
            statement, parameters = sent[-1]
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return "\n".join(str(r[-1]) for r in rows)
    finally:
        engine.dispose()


def test_the_repeat_fast_path_searches_the_primary_key(sqlite_url: str) -> None:
    """Every repeated webhook runs it: a scan cost 200 ms per webhook at 100,000 alerts."""
    at = "2026-01-01 00:00:00.000000"
    keys = json.dumps(
        [
            ["0123456789abcdef", "firing", at, "h", 1, 1],
            ["fedcba9876543210", "resolved", at, "h", 2, 1],
        ]
    )
    # The app sends it straight to the driver, "now" as it is stored.
    shown = plan(sqlite_url, sa.text(_TOUCH_REPEATS_SQLITE), {"keys": keys, "now": at})
    assert "SCAN alerts" not in shown, shown
    assert "SEARCH alerts USING INDEX sqlite_autoindex_alerts_1 (fingerprint=?)" in shown, shown


def test_counts_by_state_and_severity_read_an_index_only(sqlite_url: str) -> None:
    a = alerts.c
    stmt = sa.select(a.status, a.flapping, a.severity, sa.func.count()).group_by(
        a.status, a.flapping, a.severity
    )
    shown = plan(sqlite_url, stmt)
    assert "USING COVERING INDEX ix_alerts_status_flapping_severity" in shown, shown


def test_a_status_list_walks_the_newest_first(sqlite_url: str) -> None:
    n = notifications.c
    stmt = sa.select(notifications).where(n.status == "dead").order_by(n.id.desc()).limit(51)
    shown = plan(sqlite_url, stmt)
    assert "ix_notifications_status_id" in shown and "TEMP B-TREE" not in shown, shown


def test_the_repeat_fast_path_locks_in_fingerprint_order_on_postgres(db_url: str) -> None:
    """Two replicas' batches overlap: a lock order set by a hash join deadlocked
    them about once per 8 s round (tests/perf/replicas.py). The locks are
    taken by a sort on the fingerprint, as every other lock on alerts is."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite locks the whole database")
    from app.store.alerts import _TOUCH_REPEATS_PG

    at = datetime(2026, 1, 1, tzinfo=UTC)
    keys = [
        ["0123456789abcdef", "firing", at.isoformat(), "h", 1, True],
        ["fedcba9876543210", "resolved", at.isoformat(), "h", 2, True],
    ]
    params = {"keys": json.dumps(keys), "now": at}
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN " + _TOUCH_REPEATS_PG, params).all()
            conn.rollback()
    finally:
        engine.dispose()
    shown = "\n".join(r[0] for r in rows)
    # LockRows over a Sort by fingerprint: rows are locked in sorted order;
    # the update joins the locked rows only.
    lock = shown.index("LockRows")
    # (the key's fingerprint, ``e->>0`` from the JSON parameter, equals the
    # row's by the join, so either sorts the rows the same)
    sort_key = re.search(
        r"Sort Key: (\S+\.(fp|fingerprint)|\(\(e\.value ->> 0\)\))\n", shown[lock:]
    )
    assert sort_key is not None, shown
    assert "CTE Scan on locked" in shown, shown


async def _jitted(conn: Any, sent: list[tuple[str, Any]]) -> list[str]:
    """The statements of ``sent`` PostgreSQL would compile with JIT, as the
    transaction's settings stand now."""
    out = []
    for statement, parameters in sent:
        if "set_config" in statement:
            continue
        rows = (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
        if any(r[0].strip().startswith("JIT:") for r in rows):
            out.append(" ".join(statement.split())[:120])
    return out


async def test_a_claim_and_a_locking_read_walk_the_index_right_after_a_burst_on_postgres(
    db_url: str,
) -> None:
    """Right after a 10,000-alert webhook the statistics still describe an
    empty table; PostgreSQL then planned a bitmap scan of every due row and
    a sort (80-120 ms a claim at 20,000 rows, drained at ~90 rows/s). The
    claim's own statements, and the ingest's locking read of the alerts,
    replayed under EXPLAIN, must walk the index."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no planner statistics to go stale")
    from app.store import outbox
    from app.store.alerts import AlertUnit
    from tests.conftest import running_app
    from tests.perf.workload import bench_config, bulk_body

    token = "plan-test-token-0123456789"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    async with running_app(db_url, bench_config("http://127.0.0.1:9", 2, token)) as (app, client):
        r = await client.post(
            "/webhook/alertmanager", content=bulk_body(10_000, "b"), headers=headers
        )
        assert r.status_code == 200 and r.json()["notifications"] == 20_000, r.text
        db = app.state.services.db
        async with db.write() as conn:
            now = datetime.now(UTC)
            with sent_statements(db.write_engine) as sent:
                claimed = await outbox.claim(
                    conn,
                    "postgresql",
                    worker="plan-test",
                    token="t",
                    now=now,
                    lease_until=now,
                    limit=16,
                    room=lambda *_: 16,
                )
            assert len(claimed) == 16
            settings = next(s for s in sent if "set_config" in s[0])
            walk = next(s for s in sent if "SKIP LOCKED" in s[0] and "next_attempt_at" in s[0])
            await conn.exec_driver_sql(*settings)
            rows = (await conn.exec_driver_sql("EXPLAIN " + walk[0], walk[1])).all()
            shown = "\n".join(r[0] for r in rows)
            jitted = await _jitted(conn, sent)
            await conn.rollback()
        async with db.write() as conn:
            with sent_statements(db.write_engine) as sent:
                await AlertUnit(conn, "postgresql").load(f"{i:016x}" for i in range(10_000))
            read = next(s for s in sent if "FOR UPDATE" in s[0])
            rows = (await conn.exec_driver_sql("EXPLAIN " + read[0], read[1])).all()
            locking_read = "\n".join(r[0] for r in rows)
            jitted += await _jitted(conn, sent)
            await conn.rollback()
    assert "Index Scan using ix_notifications_status_next_attempt_at_id" in shown, shown
    assert "Bitmap Heap Scan" not in shown and "Sort" not in shown, shown
    # The next batch's locking read, in the same state: it had scanned the
    # table and compared each row with each fingerprint (3.8 s for 10,000
    # fingerprints at 20,000 alerts).
    # A statement with no index to walk gets a scan at a cost inflated by
    # 10^10, which made PostgreSQL compile it with JIT (20-100 ms for the
    # claim's read of a few message references).
    assert jitted == [], jitted
    assert "Index Scan using pk_alerts" in locking_read, locking_read
    assert "Seq Scan" not in locking_read and "Sort" not in locking_read, locking_read
