"""SQLite gives pruned space back: migration 0004 switches on incremental
auto-vacuum for new and existing files, and pruning then shrinks the file."""

import sqlite3
from datetime import timedelta
from pathlib import Path

from app.config.sections import RetentionConfig
from app.ops.clock import ManualClock
from app.store import migrate
from app.store.retention import Cutoffs, file_space, incremental_vacuum, prune
from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, T0, am_alert, am_webhook, body


def pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def test_a_new_database_is_incremental(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    migrate.upgrade(f"sqlite:///{path}")
    assert pragma(path, "auto_vacuum") == 2


def test_an_existing_database_with_data_is_converted_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url, "0002")
    assert pragma(path, "auto_vacuum") == 0
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as the app leaves it
        conn.executemany(
            "INSERT INTO quarantined_alerts (received_at, source, group_key, reason, alert_json) VALUES (?, 'am', '', 'r', ?)",
            [("2026-01-01 00:00:00.000000", "x" * 2000) for _ in range(500)],
        )
    migrate.upgrade(url)
    assert pragma(path, "auto_vacuum") == 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM quarantined_alerts").fetchone()[0] == 500
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Down and up again: the mode stays, the schema round-trips.
    migrate.downgrade(url, "0002")
    migrate.upgrade(url)
    assert pragma(path, "auto_vacuum") == 2


async def test_pruning_shrinks_the_file(sqlite_url: str) -> None:
    clock = ManualClock(T0)
    async with running_app(sqlite_url, LOG_CONFIG, clock=clock) as (app, client):
        note = "n" * 3000
        for batch in range(10):
            alerts = [
                am_alert({"alertname": f"Big{batch}-{i}"}, annotations={"summary": note})
                for i in range(100)
            ]
            assert (
                await client.post(
                    "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
                )
            ).status_code == 200
            clock.advance(60)
            done = [
                am_alert(
                    {"alertname": f"Big{batch}-{i}"},
                    status="resolved",
                    annotations={"summary": note},
                    ends_at=clock.now(),
                )
                for i in range(100)
            ]
            assert (
                await client.post(
                    "/webhook/alertmanager", content=body(am_webhook(done)), headers=JSON
                )
            ).status_code == 200
        await app.state.services.delivery.drain()
        db = app.state.services.db
        before = await file_space(db)
        assert before is not None and before.auto_vacuum == "incremental"
        report = await prune(
            db,
            Cutoffs.at(clock.now() + timedelta(days=400), RetentionConfig()),
            rows=500,
            batches_per_rule=None,
        )
        assert report.deleted["alerts"] == 1000
        freed = await file_space(db)
        assert (
            freed is not None and freed.free_bytes > before.size_bytes // 2
        )  # pages freed, file as big
        assert freed.size_bytes == before.size_bytes
        for _ in range(100):
            await incremental_vacuum(db, 1024)
            after = await file_space(db)
            assert after is not None
            if not after.free_bytes:
                break
    assert after.free_bytes == 0
    assert after.size_bytes < before.size_bytes // 2, (before, after)
    # The WAL is checkpointed into the main file by then: the file on disk shrank too.
    assert Path(sqlite_url.removeprefix("sqlite:///")).stat().st_size < before.size_bytes // 2
