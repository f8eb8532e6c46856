"""A receiver's (or an integration's) own ``delivery:`` settings decide its retries, on SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import Reply, WebhookSink, serve


def config(hook_url: str, strict: str, strict_hook: str = "") -> str:
    """Every alert goes to both receivers; ``strict`` carries the override under test."""
    return f"""
delivery: {{initial_backoff: 1s, max_backoff: 60s, timeout: 1s, lease: 10s}}
route:
  receiver: nobody
  routes:
    - matchers: ['severity="critical"']
      receiver: strict
      continue: true
    - matchers: ['severity="critical"']
      receiver: lax
receivers:
  - name: nobody
  - name: strict
{strict}
    webhook_configs: [{{url: "{hook_url}/strict"{strict_hook}}}]
  - name: lax
    webhook_configs: [{{url: "{hook_url}/lax"}}]
"""


@asynccontextmanager
async def failing_sink(
    db_url: str, strict: str, strict_hook: str = ""
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, WebhookSink, ManualClock]]:
    hook = WebhookSink()
    hook.default = Reply(500, "down")  # type: ignore[misc]
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(hook) as hook_url:
        async with running_app(db_url, config(hook_url, strict, strict_hook), clock=clock) as (
            app,
            client,
        ):
            r = await client.post(
                "/webhook/alertmanager",
                content=body(
                    am_webhook([am_alert({"alertname": "DiskFull", "severity": "critical"})])
                ),
                headers=JSON,
            )
            assert r.status_code == 200, r.text
            yield app, client, hook, clock


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


def by_receiver(db_url: str) -> dict[str, dict[str, Any]]:
    rows = table_rows(db_url, "notifications")
    assert len(rows) == 2
    return {r["receiver"]: r for r in rows}


def hits(hook: WebhookSink, path: str) -> int:
    return sum(1 for r in hook.requests() if r.path == path)


async def test_receiver_max_attempts_override(db_url: str) -> None:
    async with failing_sink(db_url, "    delivery: {max_attempts: 2}") as (
        app,
        client,
        hook,
        clock,
    ):
        for _ in range(5):
            await drain(app)
            clock.advance(61)  # past any backoff under the 60 s cap
        await drain(app)
    rows = by_receiver(db_url)
    assert rows["strict"]["status"] == "dead" and rows["strict"]["attempts"] == 2
    assert "gave up after 2 attempts" in rows["strict"]["last_error"]
    # The default of 10 attempts still applies to the other receiver.
    assert rows["lax"]["status"] == "pending" and rows["lax"]["attempts"] == 6
    assert hits(hook, "/strict") == 2 and hits(hook, "/lax") == 6


async def test_integration_override_beats_its_receivers(db_url: str) -> None:
    """Integration over receiver over global: the receiver says 2, its webhook says 4."""
    async with failing_sink(
        db_url, "    delivery: {max_attempts: 2}", strict_hook=", delivery: {max_attempts: 4}"
    ) as (app, client, hook, clock):
        for _ in range(6):
            await drain(app)
            clock.advance(61)
    rows = by_receiver(db_url)
    assert rows["strict"]["status"] == "dead" and rows["strict"]["attempts"] == 4
    assert "gave up after 4 attempts" in rows["strict"]["last_error"]
    assert rows["lax"]["status"] == "pending" and rows["lax"]["attempts"] == 6


async def test_receiver_max_age_override(db_url: str) -> None:
    async with failing_sink(db_url, "    delivery: {max_age: 30s}") as (app, client, hook, clock):
        await drain(app)  # attempt 1 at 0 s fails: retry within a second
        rows = by_receiver(db_url)
        assert rows["strict"]["status"] == "pending" and rows["strict"]["attempts"] == 1
        clock.advance(31)
        await drain(app)  # attempt 2 at 31 s fails: any retry lands past 30 s
    rows = by_receiver(db_url)
    assert rows["strict"]["status"] == "dead" and rows["strict"]["attempts"] == 2
    assert "max_age of 30s reached" in rows["strict"]["last_error"]
    # The default max_age (1 h) keeps the other receiver's row going.
    assert rows["lax"]["status"] == "pending" and rows["lax"]["attempts"] == 2
    assert rows["lax"]["last_status_code"] == 500
