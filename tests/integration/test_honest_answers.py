"""A 503 means nothing was stored; a notification id past 2^63 is not a 5xx."""

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, am_alert, am_webhook, body, table_rows

# The webhook's deadline is short (0.3 s), the database's lock wait long (5 s).
CONFIG = "server: {ingest_timeout: 300ms}\n" + LOG_CONFIG


@contextmanager
def write_lock(db_url: str, held_s: float) -> Iterator[threading.Event]:
    """Hold the alerts table's write lock from another connection for ``held_s``."""
    taken = threading.Event()

    def hold() -> None:
        if db_url.startswith("sqlite"):
            conn = sqlite3.connect(make_url(db_url).database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg.connect(
                make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
            )  # type: ignore[assignment]
            conn.execute("LOCK TABLE alerts IN EXCLUSIVE MODE")
        taken.set()
        threading.Event().wait(held_s)
        conn.rollback() if not db_url.startswith("sqlite") else conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        taken.wait(10)
        yield taken
    finally:
        thread.join(30)


async def test_a_503_means_nothing_was_stored_under_concurrency(db_url: str) -> None:
    async with running_app(db_url, CONFIG) as (_, client):

        async def post(name: str) -> httpx.Response:
            alerts = [am_alert({"alertname": name, "i": str(i)}) for i in range(20)]
            return await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )

        with write_lock(db_url, 1.5):
            # The first webhook's batch starts its transaction and waits for the
            # lock past the webhook's deadline; the others queue behind it.
            first = asyncio.create_task(post("First"))
            await asyncio.sleep(0.1)
            others = [asyncio.create_task(post(f"Other{i}")) for i in range(4)]
            answers = {"First": await first}
            for i, task in enumerate(others):
                answers[f"Other{i}"] = await task
    stored = {r["labels"]["alertname"] for r in table_rows(db_url, "alerts", "fingerprint")}
    codes = {name: r.status_code for name, r in answers.items()}
    # Every answer tells the truth: 200 = all stored, 503 = none stored.
    for name, r in answers.items():
        assert r.status_code in (200, 503), (name, r.status_code, r.text)
        assert (name in stored) is (r.status_code == 200), (name, codes, sorted(stored))
    # The first was already committing when its deadline passed: it waited and
    # says so; the ones still queued were withdrawn and answered 503.
    assert codes["First"] == 200, codes
    assert 503 in codes.values(), codes
    assert len(table_rows(db_url, "alerts", "fingerprint")) == 20 * sum(
        1 for c in codes.values() if c == 200
    )


async def test_a_notification_id_past_int64_is_404_not_5xx(db_url: str) -> None:
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        for raw in [str(2**63), str(2**63 - 1), str(2**64 + 5), "9" * 40, "0", "-1", "1e3", "abc"]:
            r = await client.get(f"/api/v1/notifications/{raw}")
            assert r.status_code in (404, 422), (raw, r.status_code, r.text)
            r = await client.post(f"/api/v1/notifications/{raw}/replay")
            assert r.status_code in (404, 422), (raw, r.status_code, r.text)
