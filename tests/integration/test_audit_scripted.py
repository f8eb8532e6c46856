"""A scripted run of everything the audit log records, read back from GET /api/v1/audit.

One installation, on SQLite and PostgreSQL: a replay and an ack and un-ack
by a named admin, a reload by the admin token, and ``alertrelay prune`` as
a real process; then the log is listed through the API, newest first, and
every entry's actor, action, target, outcome and details are checked.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from app.core.fingerprint import fingerprint
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, am_alert, am_webhook, body
from tests.integration.test_audit import cli, dead_trigger
from tests.sinks import FakePagerDuty, Reply, serve

ADMIN = "SCRIPT-ADMIN-TOKEN-0123456789ab"
ALICE = "SCRIPT-ALICE-TOKEN-0123456789ab"
KEY = "SCRIPTROUTINGKEY0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
ALICE_HEADERS = {"Authorization": f"Bearer {ALICE}"}


def config(pd_url: str) -> str:
    return f"""
auth:
  admin_token: {ADMIN}
  admin_users: [{{name: alice, token: {ALICE}}}]
delivery: {{timeout: 2s, lease: 10s}}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


async def webhook(client: httpx.AsyncClient, alert: dict) -> None:
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def test_replay_reload_ack_unack_and_prune_leave_these_entries(
    db_url: str, tmp_path: Path
) -> None:
    pd = FakePagerDuty()
    long_ago = datetime.now(UTC) - timedelta(days=400)
    clock = ManualClock(long_ago)
    with serve(pd) as pd_url:
        path = tmp_path / "alertrelay.yml"
        path.write_text(config(pd_url))
        async with running_app(db_url, config(pd_url), clock=clock, config_path=str(path)) as (
            app,
            client,
        ):
            # A year-old alert that fired and resolved: history for prune.
            old = {"alertname": "LongGone", "severity": "warning"}
            await webhook(client, am_alert(old, starts_at=long_ago))
            end = long_ago + timedelta(minutes=5)
            await webhook(client, am_alert(old, status="resolved", starts_at=long_ago, ends_at=end))
            async with asyncio.timeout(30):
                await app.state.services.delivery.drain()

            now = datetime.now(UTC).replace(microsecond=0)  # prune runs on the real clock
            clock.set(now)
            nid = await dead_trigger(app, client, pd, "DiskFull", now)
            fp = fingerprint({"alertname": "DiskFull", "severity": "critical"})
            pd.default = Reply(202)  # type: ignore[misc]

            clock.advance(1)
            r = await client.post(f"/api/v1/notifications/{nid}/replay", headers=ALICE_HEADERS)
            assert r.status_code == 200, r.text
            clock.advance(1)
            assert (await client.post("/-/reload", headers=ADMIN_HEADERS)).status_code == 200
            version = app.state.services.runtime().loaded.version
            clock.advance(1)
            r = await client.post(
                f"/api/v1/alerts/{fp}/ack",
                json={"comment": "replacing the disk", "for": "2h"},
                headers=ALICE_HEADERS,
            )
            assert r.status_code == 200, r.text
            clock.advance(1)
            r = await client.delete(f"/api/v1/alerts/{fp}/ack", headers=ALICE_HEADERS)
            assert r.status_code == 200, r.text

    pruned = await asyncio.to_thread(cli, db_url, "prune", config_file=path)
    assert pruned.returncode == 0, pruned.stderr

    async with running_app(db_url, config("http://127.0.0.1:9")) as (_, client):
        r = await client.get("/api/v1/audit", headers=ADMIN_HEADERS)
        assert r.status_code == 200, r.text
        listed = r.json()["entries"]
    print(json.dumps(listed, indent=1))  # the report quotes these (pytest -s)

    assert [(e["actor"], e["action"], e["target"], e["outcome"]) for e in listed] == [
        ("cli", "prune", "history", "ok"),
        ("alice", "unack", f"alert/{fp}", "done"),
        ("alice", "ack", f"alert/{fp}", "done"),
        ("admin", "reload", "config", "ok"),
        ("alice", "replay", f"notification/{nid}", "requeued"),
    ]
    prune, unack, ack, reload, replay = listed
    assert prune["details"]["deleted"]["alerts"] == 1
    assert prune["details"]["deleted"]["alert_transitions"] == 2
    assert unack["details"] == {"via": "api"}
    assert ack["details"]["comment"] == "replacing the disk"
    assert ack["details"]["until"] == (now + timedelta(seconds=3, hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert ack["details"]["notifications"] == 1  # PagerDuty, which got the trigger
    assert reload["details"] == {"config_version": version}
    assert replay["details"] == {"via": "api"}
    stamps = [e["at"] for e in reversed(listed[1:])]
    assert stamps == [
        (now + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in (1, 2, 3, 4)
    ]
