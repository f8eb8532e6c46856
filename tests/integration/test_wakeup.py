"""Delivery wake-up across processes on one PostgreSQL (LISTEN/NOTIFY, app/store/wakeup.py).

One app ingests (its own delivery loop is off); "the other process" is a
second app on the same database whose DeliveryWorker polls once a minute and
is woken only by its OutboxListener. Within a test, a row can reach the sink
only through the NOTIFY that the first app's commit sends.
"""

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.delivery.worker import DeliveryWorker
from app.ops.clock import Clock, ManualClock
from app.store import outbox
from app.store.wakeup import OutboxListener
from tests.conftest import pg_admin_conn, running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import Reply, WebhookSink, serve

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def needs_postgres(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("processes share a PostgreSQL")


def hook_config(hook_url: str, extra: str = "") -> str:
    return f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{hook_url}/h'}}]}}]\n{extra}"


async def fire(client: httpx.AsyncClient, name: str) -> None:
    alert = am_alert({"alertname": name, "severity": "critical"})
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["notifications"] == 1, r.json()


async def landed(hook: WebhookSink, count: int, within: float) -> bool:
    """True once the sink holds ``count`` requests, False if not within ``within`` s."""
    try:
        async with asyncio.timeout(within):
            while len(hook.requests()) < count:
                await asyncio.sleep(0.002)
    except TimeoutError:
        return False
    return True


async def post_one_by_one(
    client: httpx.AsyncClient, hook: WebhookSink, n: int, prefix: str = "Wake"
) -> list[float]:
    """Post ``n`` alerts, each 0.1 s after the previous one reached the sink;
    their accepted-to-received latencies in posting order.

    The pause lets the worker record the previous send and go back to its
    wait, so each alert has to wake it again."""
    latencies = []
    start = len(hook.requests())
    for i in range(n):
        posted = time.monotonic()
        await fire(client, f"{prefix}{i}")
        assert await landed(hook, start + i + 1, 5), f"alert {i} not delivered within 5 s"
        latencies.append(hook.requests()[start + i].at - posted)
        await asyncio.sleep(0.1)
    return latencies


def backends(db_url: str, application_name: str) -> list[tuple[int, str]]:
    """(pid, query) of this test database's connections with that application_name."""
    with pg_admin_conn() as conn:
        rows = conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (make_url(db_url).database, application_name),
        ).fetchall()
    return [(int(pid), str(query)) for pid, query in rows]


def terminate(db_url: str, application_name: str) -> int:
    with pg_admin_conn() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (make_url(db_url).database, application_name),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


async def eventually(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.02)


@dataclass
class Other:
    worker: DeliveryWorker
    listener: OutboxListener
    application_name: str


@asynccontextmanager
async def other_process(
    db_url: str, text: str, *, listen: bool = True, clock: Clock | None = None
) -> AsyncIterator[Other]:
    """A second app on the database whose delivery loop polls once a minute
    and is woken by its own listener only (its own ingest is not used)."""
    async with running_app(db_url, text) as (app, _):
        s = app.state.services
        wake = asyncio.Event()
        name = f"wakeup-test-{uuid.uuid4().hex[:8]}"
        listener = OutboxListener(db_url, wake, application_name=name)
        worker = DeliveryWorker(
            s.db,
            s.runtime,
            clock or s.clock,
            s.metrics,
            s.http,
            worker_id="other",
            wake=wake,
            poll_interval=60.0,
        )
        if listen:
            listener.start()
            async with asyncio.timeout(5):
                await listener.listening.wait()
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(
            0.2
        )  # its first turn (and the connect wake-up) found nothing: now in its 60 s wait
        try:
            yield Other(worker, listener, name)
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task
            await listener.stop()


async def test_rows_queued_by_another_process_wake_its_delivery_loop(db_url: str) -> None:
    needs_postgres(db_url)
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = hook_config(hook_url)
        async with running_app(db_url, text) as (_, client), other_process(db_url, text):
            latencies = await post_one_by_one(client, hook, 10)
    assert max(latencies) < 1.0 and statistics.median(latencies) < 0.2, [
        round(x, 3) for x in latencies
    ]
    rows = table_rows(db_url, "notifications")
    assert len(rows) == 10 and {r["status"] for r in rows} == {"sent"}
    # Delivered by the other process, not by the ingesting one.
    assert [a["worker"] for a in table_rows(db_url, "delivery_attempts")] == ["other"] * 10


async def test_listener_survives_its_connection_being_killed(db_url: str) -> None:
    needs_postgres(db_url)
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = hook_config(hook_url)
        async with running_app(db_url, text) as (_, client), other_process(db_url, text) as other:
            assert max(await post_one_by_one(client, hook, 1, "Before")) < 1.0
            ((old_pid, query),) = backends(db_url, other.application_name)
            assert query == "LISTEN alertrelay_outbox"
            await asyncio.sleep(1.0)  # up long enough to count as a drop, retried at once
            assert terminate(db_url, other.application_name) == 1
            await eventually(lambda: other.listener.connections == 2, 5, "listener reconnected")
            ((new_pid, query),) = backends(db_url, other.application_name)
            assert new_pid != old_pid and query == "LISTEN alertrelay_outbox"
            # The connect wake-up has been handled; the next alert needs a NOTIFY again.
            await asyncio.sleep(0.2)
            latencies = await post_one_by_one(client, hook, 3, "After")
    assert max(latencies) < 1.0, [round(x, 3) for x in latencies]
    assert [a["worker"] for a in table_rows(db_url, "delivery_attempts")] == ["other"] * 4


async def test_rows_committed_while_nobody_listened_are_picked_up_on_connect(db_url: str) -> None:
    needs_postgres(db_url)
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = hook_config(hook_url)
        async with (
            running_app(db_url, text) as (_, client),
            other_process(db_url, text, listen=False) as other,
        ):
            await fire(client, "Missed")
            # Without a listener the once-a-minute loop does not hear of it.
            assert not await landed(hook, 1, 0.5)
            started = time.monotonic()
            other.listener.start()
            assert await landed(hook, 1, 5)
            assert hook.requests()[0].at - started < 1.0


async def test_replay_in_another_process_wakes_delivery(db_url: str) -> None:
    needs_postgres(db_url)
    hook = WebhookSink()
    hook.default = Reply(400)  # type: ignore[misc]
    with serve(hook) as hook_url:
        text = hook_config(hook_url)
        async with running_app(db_url, text) as (app, client), other_process(db_url, text):
            await fire(client, "Replayed")
            assert await landed(hook, 1, 5)
            await eventually(
                lambda: [r["status"] for r in table_rows(db_url, "notifications")] == ["dead"],
                5,
                "dead letter",
            )
            hook.default = Reply()  # type: ignore[misc]
            await asyncio.sleep(0.2)  # the other loop recorded the outcome and is back in its wait
            (row,) = table_rows(db_url, "notifications")
            s = app.state.services
            started = time.monotonic()
            async with s.db.write() as conn:
                result = await outbox.replay(conn, s.db.kind, row["id"], s.clock.now())
            assert result.status is outbox.ReplayStatus.REQUEUED
            assert await landed(hook, 2, 5)
            assert hook.requests()[1].at - started < 1.0
    assert [r["status"] for r in table_rows(db_url, "notifications")] == ["sent"]


async def test_sweeper_reminders_wake_another_process(db_url: str) -> None:
    needs_postgres(db_url)
    hook = WebhookSink()
    clock = ManualClock(T0 + timedelta(minutes=1))  # both processes read the same time
    with serve(hook) as hook_url:
        text = hook_config(hook_url, "dedup: {renotify_interval: 1h}\n")
        async with (
            running_app(db_url, text, clock=clock) as (app, client),
            other_process(db_url, text, clock=clock),
        ):
            await fire(client, "Reminded")
            assert await landed(hook, 1, 5)
            await asyncio.sleep(0.2)
            clock.advance(3601)
            started = time.monotonic()
            assert (await app.state.services.sweeper.sweep_once()).reminders == 1
            assert await landed(hook, 2, 5)
            assert hook.requests()[1].at - started < 1.0
    assert [r["kind"] for r in table_rows(db_url, "notifications")] == ["firing", "reminder"]


async def test_serve_listens_on_postgresql_only_and_stops_cleanly(db_url: str) -> None:
    hook = WebhookSink()
    with serve(hook) as hook_url:
        async with running_app(db_url, hook_config(hook_url), background=True) as (app, _):
            listener = app.state.services.listener
            if not db_url.startswith("postgresql"):
                assert listener is None  # SQLite: one process, the in-process wake-up is enough
                return
            assert listener is not None
            async with asyncio.timeout(5):
                await listener.listening.wait()
            assert [q for _, q in backends(db_url, "alertrelay-wakeup")] == [
                "LISTEN alertrelay_outbox"
            ]
    await eventually(
        lambda: not backends(db_url, "alertrelay-wakeup"),
        5,
        "listener connection closed on shutdown",
    )


def test_alertrelay_worker_process_is_woken_by_ingest_elsewhere(
    db_url: str, tmp_path: Path
) -> None:
    """The real ``alertrelay worker`` process. Its poll (0.5 s) alone would
    find each alert ~0.4 s after it was posted (posted 0.1 s after the
    previous send, when the loop is back in its wait): the median shows the
    wake-up."""
    needs_postgres(db_url)
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = hook_config(hook_url)
        path = tmp_path / "worker.yml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
        env |= {
            "ALERTRELAY_DATABASE_URL": db_url,
            "ALERTRELAY_WORKER_ID": "cli-worker",
            "ALERTRELAY_LOG_LEVEL": "warning",
        }
        with (tmp_path / "worker.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app", "worker", "--config", str(path)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            deadline = time.monotonic() + 30
            while [q for _, q in backends(db_url, "alertrelay-wakeup")] != [
                "LISTEN alertrelay_outbox"
            ]:
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, "the worker never listened"
                time.sleep(0.05)
            time.sleep(0.3)

            async def ingest() -> list[float]:
                async with running_app(db_url, text) as (_, client):
                    return await post_one_by_one(client, hook, 10)

            latencies = asyncio.run(ingest())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()
    assert max(latencies) < 1.0 and statistics.median(latencies) < 0.15, [
        round(x, 3) for x in latencies
    ]
    assert [a["worker"] for a in table_rows(db_url, "delivery_attempts")] == ["cli-worker"] * 10
    assert not backends(db_url, "alertrelay-wakeup")  # SIGTERM closed the listener


async def test_unreachable_database_backs_off_capped_and_never_logs_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on port 1: the listener warns (URL redacted), retries
    with a doubling, capped delay, never raises, and stops at once."""
    caplog.set_level("WARNING", logger="app.store.wakeup")
    wake = asyncio.Event()
    listener = OutboxListener(
        "postgresql://relay:S3CRETpassw0rd@127.0.0.1:1/alertrelay",
        wake,
        min_backoff_s=0.05,
        max_backoff_s=0.2,
    )
    listener.start()
    await asyncio.sleep(1.2)
    started = time.monotonic()
    await listener.stop()
    assert time.monotonic() - started < 1.0
    assert listener.connections == 0 and not listener.listening.is_set() and not wake.is_set()
    records = [r for r in caplog.records if r.name == "app.store.wakeup"]
    delays = [r.__dict__["retry_in_s"] for r in records]
    assert len(delays) >= 5 and delays[:3] == [0.05, 0.1, 0.2] and set(delays[3:]) == {0.2}, delays
    for r in records:
        assert (
            r.levelname == "WARNING"
            and r.getMessage() == "outbox wake-up listener cannot connect; polling meanwhile"
        )
        assert r.__dict__["db"] == "postgresql://relay:***@127.0.0.1:1/alertrelay"
        assert "S3CRETpassw0rd" not in str(r.__dict__)
        assert r.__dict__["error"]  # the reason is kept, for the operator
