"""SQLite gives pruned space back: migration 0004 switches on incremental
auto-vacuum for new and existing files, and pruning then shrinks the file.
New files get large pages; existing ones keep the page size they have."""

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.config.sections import RetentionConfig
from app.ops.clock import ManualClock
from app.store import migrate
from app.store.engine import NEW_FILE_PAGE_SIZE, Database
from app.store.retention import Cutoffs, file_space, incremental_vacuum, prune
from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, T0, am_alert, am_webhook, body


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def four_kib_wal_file(path: Path) -> None:
    """A file made as SQLite's default makes it, before this version: 4 KB pages, WAL."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def test_a_new_database_is_incremental(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    migrate.upgrade(f"sqlite:///{path}")
    assert pragma(path, "auto_vacuum") == 2


def test_a_new_database_gets_large_pages(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    migrate.upgrade(f"sqlite:///{path}")
    plain = sqlite3.connect(":memory:")
    default = plain.execute("PRAGMA page_size").fetchone()[0]
    plain.close()
    assert pragma(path, "page_size") == NEW_FILE_PAGE_SIZE != default
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_the_app_opens_first_gets_large_pages(tmp_path: Path) -> None:
    """A new file a connection reaches before the migrations (they then find
    it in WAL mode, where the page size can no longer change)."""
    path = tmp_path / "first.db"
    db = Database(f"sqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        await db.dispose()
    migrate.upgrade(f"sqlite:///{path}")
    assert pragma(path, "page_size") == NEW_FILE_PAGE_SIZE


def test_an_existing_database_keeps_its_page_size_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    four_kib_wal_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE keep (x TEXT)")
        conn.executemany("INSERT INTO keep VALUES (?)", [("y" * 500,) for _ in range(200)])
    migrate.upgrade(url)
    assert pragma(path, "page_size") == 4096
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM keep").fetchone()[0] == 200
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_documented_conversion_gives_an_old_file_large_pages(tmp_path: Path) -> None:
    """docs/operations.md's snippet, run as written on a migrated 4 KB file."""
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    start = "```sh\npython3 - alertrelay.db"
    snippet = text.split(start, 1)[1].split("\n```", 1)[0]
    path = tmp_path / "alertrelay.db"
    four_kib_wal_file(path)
    migrate.upgrade(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO quarantined_alerts (received_at, source, group_key, reason, alert_json) VALUES (?, 'am', '', 'r', ?)",
            [("2026-01-01 00:00:00.000000", "x" * 3000) for _ in range(300)],
        )
    conn.close()  # leaving WAL needs the file to itself, as the docs say
    assert pragma(path, "page_size") == 4096
    done = subprocess.run(
        ["bash", "-c", f"{sys.executable} - alertrelay.db" + snippet],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"page size {NEW_FILE_PAGE_SIZE}"
    assert pragma(path, "page_size") == NEW_FILE_PAGE_SIZE
    assert pragma(path, "auto_vacuum") == 2  # VACUUM keeps incremental mode
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM quarantined_alerts").fetchone()[0] == 300
    migrate.upgrade(f"sqlite:///{path}")  # still at head, nothing to do


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
