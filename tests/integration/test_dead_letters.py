"""Dead letters: replays get a fresh retry budget, and ``alertrelay dead-letters`` as a real subprocess.

On SQLite and PostgreSQL. The command reads the database named by
ALERTRELAY_DATABASE_URL and the config given with --config, like an operator
would run it beside a stopped or running service.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from app.ops.clock import Clock, ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import ECHO, FakePagerDuty, Reply, WebhookSink, serve

ROOT = Path(__file__).resolve().parents[2]
ROUTING_KEY = "DEADLETTERKEY0123456789abcdef012"
HOOK_TOKEN = "DEADLETTERTOKEN-4242"


def config(pd_url: str, hook_url: str) -> str:
    return f"""
delivery: {{initial_backoff: 1s, max_backoff: 60s, timeout: 1s, lease: 10s}}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: "{pd_url}/v2/enqueue"}}]
    webhook_configs: [{{url: "{hook_url}/hook", token: {HOOK_TOKEN}}}]
"""


@asynccontextmanager
async def relay(
    db_url: str, clock: Clock | None = None
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakePagerDuty, WebhookSink, str]]:
    pd, hook = FakePagerDuty(), WebhookSink()
    with serve(pd) as pd_url, serve(hook) as hook_url:
        text = config(pd_url, hook_url)
        async with running_app(db_url, text, clock=clock) as (app, client):
            yield app, client, pd, hook, text


async def fire(client: httpx.AsyncClient, name: str, status: str = "firing") -> None:
    alert = am_alert({"alertname": name, "severity": "critical"}, status=status)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


def rows(db_url: str) -> list[dict[str, Any]]:
    return table_rows(db_url, "notifications")


def pd_row(db_url: str) -> dict[str, Any]:
    (row,) = [r for r in rows(db_url) if r["integration"] == "pagerduty"]
    return row


# ------------------------------------------------------------ replay and max_age


async def test_a_replayed_old_row_gets_its_retries_again(db_url: str) -> None:
    """max_age (1 h) runs from the replay, not from when the row was first queued."""
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with relay(db_url, clock) as (app, client, pd, hook, _):
        pd.script(Reply(400, "bad"))  # dead at once
        await fire(client, "Old")
        await drain(app)
        row = pd_row(db_url)
        assert row["status"] == "dead" and row["queued_at"] is None  # created_at stands in
        clock.advance(2 * 3600)  # fixed two hours later, past max_age
        r = await client.post(f"/api/v1/notifications/{row['id']}/replay")
        assert r.status_code == 200, r.text
        assert pd_row(db_url)["queued_at"] == clock.now()
        pd.script(Reply(500, "blip"))  # one retryable failure
        await drain(app)
        row = pd_row(db_url)
        assert row["status"] == "pending", row["last_error"]  # retried, not dead again
        assert row["attempts"] == 1 and row["last_status_code"] == 500
        assert 0 <= (row["next_attempt_at"] - clock.now()).total_seconds() <= 1.0 + 1e-6
        clock.advance(2)
        await drain(app)
    row = pd_row(db_url)
    assert row["status"] == "sent" and row["attempts"] == 2 and row["replays"] == 1
    assert [r.status for r in pd.requests()] == [400, 500, 202]
    assert len(pd.open_incidents()) == 1


async def test_a_replayed_row_still_dies_at_max_age_from_its_replay(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with relay(db_url, clock) as (app, client, pd, hook, _):
        pd.script(Reply(400, "bad"))
        await fire(client, "Old")
        await drain(app)
        clock.advance(2 * 3600)
        assert (
            await client.post(f"/api/v1/notifications/{pd_row(db_url)['id']}/replay")
        ).status_code == 200
        pd.default = Reply(500, "down")  # type: ignore[misc]
        await drain(app)
        clock.advance(3601)  # an hour after the replay
        await drain(app)
    row = pd_row(db_url)
    assert row["status"] == "dead" and row["attempts"] == 2
    assert "max_age of 3600s reached" in row["last_error"]


# ------------------------------------------------------------ the command


def run(
    db_url: str, *args: str, config_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env["ALERTRELAY_DATABASE_URL"] = db_url
    extra = ["--config", str(config_file)] if config_file is not None else []
    return subprocess.run(
        [sys.executable, "-m", "app", "dead-letters", *extra, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


async def make_dead(db_url: str, tmp_path: Path, names: list[str]) -> Path:
    """Fire ``names``; both sinks answer 400 echoing the request (secrets and all): every row dead."""
    async with relay(db_url) as (app, client, pd, hook, text):
        pd.default = Reply(400, ECHO)  # type: ignore[misc]
        hook.default = Reply(400, ECHO)  # type: ignore[misc]
        for name in names:
            await fire(client, name)
        await drain(app)
    assert {r["status"] for r in rows(db_url)} == {"dead"}
    path = tmp_path / "alertrelay.yml"
    path.write_text(text)
    return path


def no_secret(*texts: str) -> None:
    for text in texts:
        assert ROUTING_KEY not in text and HOOK_TOKEN not in text


async def test_listing_shows_dead_rows_and_no_secret(db_url: str, tmp_path: Path) -> None:
    path = await make_dead(db_url, tmp_path, ["ListA", "ListB"])
    dead = rows(db_url)
    assert len(dead) == 4
    result = await asyncio.to_thread(run, db_url, config_file=path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for row in dead:
        (line,) = [ln for ln in lines if ln.split()[0] == str(row["id"])]
        assert f"page/{row['integration']}/0" in line
        assert row["fingerprint"] in line and "attempts=1" in line
        assert "HTTP 400" in line and row["last_error"] in line
    no_secret(result.stdout, result.stderr)
    # The database is untouched by a listing.
    assert rows(db_url) == dead


async def test_listing_with_nothing_dead(db_url: str) -> None:
    result = await asyncio.to_thread(run, db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no dead notifications"


async def test_replay_one_requeues_exactly_that_row_once(db_url: str, tmp_path: Path) -> None:
    path = await make_dead(db_url, tmp_path, ["OneA", "OneB"])
    target = pd_row_of(db_url, "OneA")
    result = await asyncio.to_thread(run, db_url, "--replay", str(target["id"]), config_file=path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{target['id']}: requeued"
    after = {r["id"]: r for r in rows(db_url)}
    assert after[target["id"]]["status"] == "pending" and after[target["id"]]["replays"] == 1
    assert after[target["id"]]["attempts"] == 0 and after[target["id"]]["dead_at"] is None
    assert [i for i, r in after.items() if r["status"] == "dead"] == sorted(
        set(after) - {target["id"]}
    )
    # Again: refused, and still queued once.
    again = await asyncio.to_thread(run, db_url, "--replay", str(target["id"]), config_file=path)
    assert again.returncode == 1
    assert f"notification {target['id']} is not dead" in again.stderr
    assert {r["id"]: (r["status"], r["replays"]) for r in rows(db_url)} == {
        i: (r["status"], r["replays"]) for i, r in after.items()
    }
    no_secret(result.stdout, result.stderr, again.stdout, again.stderr)
    # Delivered once, with a healthy sink.
    async with relay(db_url) as (app, client, pd, hook, _):
        await drain(app)
    assert len(pd.requests()) == 1 and pd.requests()[0].json()["dedup_key"] == target["dedup_key"]
    assert hook.requests() == []
    assert rows_by_id(db_url)[target["id"]]["status"] == "sent"


async def test_replay_all_requeues_every_dead_row(db_url: str, tmp_path: Path) -> None:
    path = await make_dead(db_url, tmp_path, ["AllA", "AllB", "AllC"])
    ids = [r["id"] for r in rows(db_url)]
    result = await asyncio.to_thread(run, db_url, "--replay-all", config_file=path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{i}: requeued" for i in ids]
    assert {(r["status"], r["replays"]) for r in rows(db_url)} == {("pending", 1)}
    # Nothing left to replay: says so, and queues nothing twice.
    again = await asyncio.to_thread(run, db_url, "--replay-all", config_file=path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "no dead notifications"
    assert {(r["status"], r["replays"]) for r in rows(db_url)} == {("pending", 1)}
    async with relay(db_url) as (app, client, pd, hook, _):
        await drain(app)
    assert len(pd.requests()) == 3 and len(hook.requests()) == 3
    assert {r["status"] for r in rows(db_url)} == {"sent"}


async def test_replay_of_an_unknown_id_fails_clearly(db_url: str) -> None:
    result = await asyncio.to_thread(run, db_url, "--replay", "99999")
    assert result.returncode == 1
    assert result.stderr.strip() == "notification 99999 not found"
    usage = await asyncio.to_thread(run, db_url, "--replay", "abc")
    assert usage.returncode == 2 and "invalid int value" in usage.stderr


async def test_replay_of_a_superseded_trigger_is_refused(db_url: str, tmp_path: Path) -> None:
    """Through the command: a dead trigger whose alert resolved since stays dead."""
    async with relay(db_url) as (app, client, pd, hook, text):
        pd.script(Reply(400, "bad"))
        await fire(client, "Gone")
        await drain(app)
        await fire(client, "Gone", status="resolved")
        await drain(app)
    trigger = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
    assert trigger["status"] == "dead"
    result = await asyncio.to_thread(run, db_url, "--replay", str(trigger["id"]))
    assert result.returncode == 1
    later = [r for r in rows(db_url) if r["integration"] == "pagerduty"][1]["id"]
    assert (
        f"{trigger['id']}: not replayed, superseded by notification {later}"
        in result.stdout + result.stderr
    )
    assert rows_by_id(db_url)[trigger["id"]]["status"] == "dead"


def test_unreachable_database_fails_without_a_traceback_or_password(tmp_path: Path) -> None:
    result = run("postgresql://alertrelay:S3CRETPASS@127.0.0.1:9/alertrelay")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "S3CRETPASS" not in result.stderr + result.stdout
    assert "cannot use database postgresql://alertrelay:***@127.0.0.1:9/alertrelay" in result.stderr


def pd_row_of(db_url: str, name: str) -> dict[str, Any]:
    (row,) = [
        r
        for r in rows(db_url)
        if r["integration"] == "pagerduty" and r["payload"]["alertname"] == name
    ]
    return row


def rows_by_id(db_url: str) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in rows(db_url)}


def test_a_database_behind_the_code_is_refused(sqlite_url: str) -> None:
    """Run before `alertrelay migrate` after an upgrade: told so, instead of an SQL error."""
    from app.store import migrate

    migrate.downgrade(sqlite_url, "0001")
    result = run(sqlite_url)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        f"schema is at revision 0001, this alertrelay needs {migrate.head_revision()}"
        in result.stderr
    )
    assert "alertrelay migrate" in result.stderr
