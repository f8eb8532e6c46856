"""The audit log: replays, reloads and prunes, by whom, listed by GET /api/v1/audit.

On SQLite and PostgreSQL; the CLI's entries come from real `alertrelay`
processes (`dead-letters --replay`, `prune`).
"""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from starlette.applications import Starlette

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.sinks import FakePagerDuty, Reply, serve

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "AUDIT-ADMIN-TOKEN-0123456789"
KEY = "AUDITROUTINGKEY0123456789abcdef0"


def config(pd_url: str, receiver: str = "page") -> str:
    return f"""
auth:
  admin_token: {ADMIN}
delivery: {{timeout: 2s, lease: 10s}}
route:
  receiver: {receiver}
receivers:
  - name: {receiver}
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


async def dead_trigger(
    app: Starlette, client: httpx.AsyncClient, pd: FakePagerDuty, name: str, starts: datetime = T0
) -> int:
    pd.script(Reply(400, "bad"))
    alert = am_alert({"alertname": name, "severity": "critical"}, starts_at=starts)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()
    (row,) = [
        n
        for n in table_rows(app.state.services.db.url, "notifications")
        if n["payload"]["alertname"] == name
    ]
    assert row["status"] == "dead"
    return int(row["id"])


async def entries(client: httpx.AsyncClient, **params: str) -> list[dict]:
    r = await client.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


async def test_replays_and_reloads_are_recorded_with_actor_target_and_outcome(
    db_url: str, tmp_path: Path
) -> None:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        path = tmp_path / "alertrelay.yml"
        path.write_text(config(pd_url))
        async with running_app(db_url, config(pd_url), clock=clock, config_path=str(path)) as (
            app,
            client,
        ):
            nid = await dead_trigger(app, client, pd, "Audited")
            first_version = app.state.services.runtime().loaded.version

            assert (await client.post(f"/api/v1/notifications/{nid}/replay")).status_code == 401
            assert count(db_url, "audit_log") == 0  # a refused credential is not an action
            clock.advance(1)
            assert (
                await client.post(f"/api/v1/notifications/{nid}/replay", headers=ADMIN_HEADERS)
            ).status_code == 200
            clock.advance(1)
            assert (
                await client.post(f"/api/v1/notifications/{nid}/replay", headers=ADMIN_HEADERS)
            ).status_code == 409

            clock.advance(1)
            path.write_text(config(pd_url, receiver="page2"))
            assert (await client.post("/-/reload", headers=ADMIN_HEADERS)).status_code == 200
            second_version = app.state.services.runtime().loaded.version
            clock.advance(1)
            path.write_text("route: {receiver: nowhere}\nreceivers: []\n")
            assert (await client.post("/-/reload", headers=ADMIN_HEADERS)).status_code == 400
            clock.advance(1)
            await app.state.services.reload_on_signal()  # what SIGHUP runs

            listed = await entries(client)
    assert second_version != first_version
    got = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in reversed(listed)]
    assert got == [
        ("admin", "replay", f"notification/{nid}", "requeued"),
        ("admin", "replay", f"notification/{nid}", "not_dead"),
        ("admin", "reload", "config", "ok"),
        ("admin", "reload", "config", "refused"),
        ("sighup", "reload", "config", "refused"),
    ]
    newest_first = [e["id"] for e in listed]
    assert newest_first == sorted(newest_first, reverse=True)
    assert listed[-1]["at"] == "2026-11-21T19:16:44Z" and listed[-1]["details"] == {"via": "api"}
    assert listed[2]["details"] == {"config_version": second_version}
    # Refused: the version that stays in force, and how many problems (not their text).
    assert listed[1]["details"]["config_version"] == second_version
    assert listed[1]["details"]["errors"] >= 1
    assert listed[0]["details"]["via"] == "SIGHUP"


async def test_filters_and_cursor_paging(db_url: str, tmp_path: Path) -> None:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            ids = [await dead_trigger(app, client, pd, f"Page{i}") for i in range(3)]
            for nid in ids:
                clock.advance(60)
                r = await client.post(f"/api/v1/notifications/{nid}/replay", headers=ADMIN_HEADERS)
                assert r.status_code == 200
            clock.advance(60)
            await client.post("/-/reload", headers=ADMIN_HEADERS)  # no config file: refused

            assert [e["action"] for e in await entries(client, action="reload")] == ["reload"]
            assert len(await entries(client, action="replay")) == 3
            assert await entries(client, actor="cli") == []
            assert len(await entries(client, actor="admin")) == 4
            since = (T0 + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
            until = (T0 + timedelta(minutes=4)).isoformat().replace("+00:00", "+00:00")
            window = await entries(client, since=since, until=until)
            assert [e["target"] for e in window] == [
                f"notification/{ids[2]}",
                f"notification/{ids[1]}",
            ]

            seen: list[int] = []
            cursor = None
            for _ in range(10):
                params = {"limit": "1", "action": "replay"} | ({"cursor": cursor} if cursor else {})
                page = (await client.get("/api/v1/audit", params=params)).json()
                seen += [e["id"] for e in page["entries"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == 3 and seen == sorted(seen, reverse=True)

            for bad, field in [
                ({"action": "delete"}, "action"),
                ({"since": "yesterday"}, "since"),
                ({"until": "2026-01-01T00:00:00"}, "until"),
                ({"cursor": "garbage!"}, "cursor"),
                ({"limit": "0"}, "limit"),
            ]:
                r = await client.get("/api/v1/audit", params=bad)
                assert r.status_code == 400 and r.json()["error"].startswith(field), (bad, r.text)


async def test_without_any_auth_the_actor_is_anonymous(db_url: str) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        text = config(pd_url).replace(f"auth:\n  admin_token: {ADMIN}\n", "")
        async with running_app(db_url, text) as (app, client):
            nid = await dead_trigger(app, client, pd, "Open")
            assert (await client.post(f"/api/v1/notifications/{nid}/replay")).status_code == 200
            (entry,) = await entries(client)
    assert entry["actor"] == "anonymous" and entry["outcome"] == "requeued"


def cli(db_url: str, *args: str, config_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env["ALERTRELAY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "app", *args[:1], "--config", str(config_file), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


async def test_the_cli_replays_and_prunes_as_cli(db_url: str, tmp_path: Path) -> None:
    """History a year old (the app ran on a clock set back), then `prune --dry-run`,
    `prune`, and `dead-letters --replay` as real processes."""
    pd = FakePagerDuty()
    long_ago = T0 - timedelta(days=400)
    clock = ManualClock(long_ago)
    with serve(pd) as pd_url:
        path = tmp_path / "alertrelay.yml"
        path.write_text(config(pd_url))
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            old_dead = await dead_trigger(app, client, pd, "OldDead", long_ago)
            for i in range(3):
                alert = am_alert({"alertname": f"Old{i}"}, starts_at=long_ago)
                await client.post(
                    "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
                )
                done = am_alert(
                    {"alertname": f"Old{i}"},
                    status="resolved",
                    starts_at=long_ago,
                    ends_at=long_ago + timedelta(minutes=1),
                )
                await client.post(
                    "/webhook/alertmanager", content=body(am_webhook([done])), headers=JSON
                )
            await app.state.services.delivery.drain()
            now = datetime.now(UTC)  # the command prunes by the real clock
            clock.set(now)  # and one dead letter that is recent
            recent_dead = await dead_trigger(app, client, pd, "RecentDead", now)

    dry = await asyncio.to_thread(cli, db_url, "prune", "--dry-run", config_file=path)
    assert dry.returncode == 0, dry.stderr
    would = {line.split()[0]: int(line.split()[1]) for line in dry.stdout.splitlines()}
    # The three resolved alerts with their history; the old dead letter (its
    # alert still fires, so it stays) with its attempt.
    assert would["alerts"] == 3 and would["alert_transitions"] == 6 and would["notifications"] == 7
    assert would["delivery_attempts"] == 7
    assert count(db_url, "alerts") == 5  # a dry run deletes nothing

    done = await asyncio.to_thread(cli, db_url, "prune", config_file=path)
    assert done.returncode == 0, done.stderr
    deleted = {
        line.split()[0]: int(line.split()[1])
        for line in done.stdout.splitlines()
        if line.split()[2:] == ["deleted"]
    }
    assert deleted == would
    assert count(db_url, "alerts") == 2 and count(db_url, "notifications") == 1
    assert count(db_url, "notifications", f"id = {old_dead}") == 0
    if db_url.startswith("sqlite"):
        assert "SQLite file" in done.stdout and "auto_vacuum=incremental" in done.stdout

    replay = await asyncio.to_thread(
        cli, db_url, "dead-letters", "--replay", str(recent_dead), config_file=path
    )
    assert replay.returncode == 0, replay.stderr

    log = table_rows(db_url, "audit_log")
    assert [(e["actor"], e["action"], e["target"], e["outcome"]) for e in log] == [
        ("cli", "prune", "history", "ok"),
        ("cli", "replay", f"notification/{recent_dead}", "requeued"),
    ]
    assert log[0]["details"]["deleted"] == deleted
    assert log[1]["details"] == {"via": "cli"}
