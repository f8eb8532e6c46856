"""Acknowledge through the API, on SQLite and PostgreSQL: the state machine of an
occurrence end to end (ack, reminders quiet, expiry resumes them, un-ack,
resolve and new occurrence end it), what PagerDuty receives, the alert API,
its history, the audit log and the metric."""

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import FakePagerDuty, serve

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "ACK-ADMIN-TOKEN-0123456789abcdef"
ALICE = "ACK-ALICE-TOKEN-0123456789abcdef"
KEY = "ACKROUTINGKEY0123456789abcdef012"
LABELS = {"alertname": "DiskFull", "severity": "critical", "instance": "db1"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
ALICE_HEADERS = {"Authorization": f"Bearer {ALICE}"}


def config(pd_url: str) -> str:
    return f"""
auth:
  admin_token: {ADMIN}
  admin_users: [{{name: alice, token: {ALICE}}}]
dedup: {{renotify_interval: 1h}}
delivery: {{timeout: 2s, lease: 10s}}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


async def fire(client: httpx.AsyncClient, status: str = "firing", starts: Any = T0) -> str:
    alert = am_alert(LABELS, status=status, starts_at=starts)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text
    return str(alert["fingerprint"])


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


def actions(pd: FakePagerDuty) -> list[str]:
    return [action for action, _key in pd.order]


async def test_ack_reaches_pagerduty_quiets_reminders_and_expires(db_url: str) -> None:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            fp = await fire(client)
            await drain(app)
            assert actions(pd) == ["trigger"]

            r = await client.post(
                f"/api/v1/alerts/{fp}/ack",
                json={"comment": "replacing the disk", "for": "90m"},
                headers=ALICE_HEADERS,
            )
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["status"] == "acknowledged" and answer["notifications"] == 1
            assert answer["ack"]["by"] == "alice" and answer["ack"]["via"] == "api"
            await drain(app)
            # The same incident, acknowledged, after its trigger.
            assert pd.order[1] == ("acknowledge", pd.order[0][1])
            [incident] = pd.all_incidents()
            assert incident["acknowledged"] and incident["open"]

            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert alert["ack"]["active"] and alert["ack"]["comment"] == "replacing the disk"
            assert alert["ack"]["until"] == "2026-11-21T20:46:43Z"
            assert [a["action"] for a in alert["acks"]] == ["ack"]
            listed = (await client.get("/api/v1/alerts?state=firing")).json()["alerts"]
            assert listed[0]["ack"]["by"] == "alice"
            [kind] = [n["kind"] for n in alert["notifications"] if n["kind"] == "ack"]
            assert kind == "ack"

            # The reminder due after 1h is quiet: the ack holds for 90m.
            sweeper = app.state.services.sweeper
            clock.advance(3600)
            assert (await sweeper.sweep_once()).reminders == 0
            # At 90m the ack expires and the reminder goes out at once.
            clock.advance(1800)
            assert (await sweeper.sweep_once()).reminders == 1
            await drain(app)
            assert actions(pd) == ["trigger", "acknowledge", "trigger"]
            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert alert["ack"] is None
            assert [a["action"] for a in alert["acks"]] == ["expired", "ack"]
            assert alert["acks"][0]["at"] == "2026-11-21T20:46:43Z"

            audit = (await client.get("/api/v1/audit?action=ack", headers=ADMIN_HEADERS)).json()
            [entry] = audit["entries"]
            assert (entry["actor"], entry["target"], entry["outcome"]) == (
                "alice",
                f"alert/{fp}",
                "done",
            )
            assert entry["details"]["comment"] == "replacing the disk"
            metrics = (await client.get("/metrics")).text
            assert 'alertrelay_acks_total{via="api"} 1.0' in metrics
            assert 'alertrelay_acks_total{via="link"} 0.0' in metrics


async def test_unack_resumes_reminders_and_pagerduty_hears_nothing(db_url: str) -> None:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            fp = await fire(client)
            r = await client.post(
                f"/api/v1/alerts/{fp}/ack", json={"by": "bob"}, headers=ADMIN_HEADERS
            )
            assert r.status_code == 200 and r.json()["ack"]["by"] == "bob"
            await drain(app)
            r = await client.delete(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "unacknowledged" and r.json()["notifications"] == 0
            r = await client.delete(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
            assert r.status_code == 409
            clock.advance(3600)
            assert (await app.state.services.sweeper.sweep_once()).reminders == 1
            await drain(app)
            assert actions(pd) == ["trigger", "acknowledge", "trigger"]
            history = (await client.get(f"/api/v1/alerts/{fp}")).json()["acks"]
            assert [(a["action"], a["by"]) for a in history] == [("unack", "admin"), ("ack", "bob")]
            audit = (await client.get("/api/v1/audit", headers=ADMIN_HEADERS)).json()["entries"]
            assert [(e["action"], e["actor"], e["outcome"]) for e in audit] == [
                ("unack", "admin", "not_acked"),
                ("unack", "admin", "done"),
                ("ack", "admin", "done"),
            ]
            assert audit[-1]["details"]["by"] == "bob"


async def test_resolve_and_a_new_occurrence_end_the_ack(db_url: str) -> None:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            fp = await fire(client)
            assert (await client.post(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)).is_success
            # A new occurrence (Alertmanager lost the resolve) ends it.
            clock.advance(60)
            await fire(client, starts=T0 + timedelta(minutes=1))
            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert alert["ack"] is None and alert["acks"][0]["action"] == "ended"
            assert alert["acks"][0]["occurrence"] == "2026-11-21T19:16:43Z"
            # Acked again, then resolved: ended again, and a later ack is refused.
            assert (await client.post(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)).is_success
            await fire(client, status="resolved", starts=T0 + timedelta(minutes=1))
            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert [a["action"] for a in alert["acks"]] == ["ended", "ack", "ended", "ack"]
            r = await client.post(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
            assert r.status_code == 409 and "resolved" in r.json()["error"]
            await drain(app)
            assert pd.open_incidents() == []
            rows = table_rows(db_url, "alert_acks")
            assert len(rows) == 4


async def test_refusals(db_url: str) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=ManualClock(T0)) as (app, client):
            fp = await fire(client)
            url = f"/api/v1/alerts/{fp}/ack"
            assert (await client.post(url)).status_code == 401
            assert (
                await client.post(url, headers={"Authorization": "Bearer nope"})
            ).status_code == 401
            r = await client.post("/api/v1/alerts/0123456789abcdef/ack", headers=ADMIN_HEADERS)
            assert r.status_code == 404
            for bad, code in (
                ({"for": "soon"}, 400),
                ({"for": "0"}, 400),
                ({"comment": 5}, 422),
                ({"who": "x"}, 422),
            ):
                r = await client.post(url, json=bad, headers=ADMIN_HEADERS)
                assert r.status_code == code, (bad, r.text)
            r = await client.post(url, content=b"[1]", headers={**ADMIN_HEADERS, **JSON})
            assert r.status_code == 422
            r = await client.post(url, content=b"{", headers={**ADMIN_HEADERS, **JSON})
            assert r.status_code == 400
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"] is None


async def test_a_read_only_credential_cannot_acknowledge(db_url: str) -> None:
    """Acknowledging writes: auth.read's token and named read users may read
    the alert but neither ack nor un-ack it; the admin token and a named admin
    (read-write) user may."""
    pd = FakePagerDuty()
    read_only = {
        "token": {"Authorization": "Bearer ACK-READ-TOKEN-0123456789abcd"},
        "user": {"Authorization": "Bearer ACK-RUTH-TOKEN-0123456789abcd"},
    }
    read = (
        "  read:\n"
        "    token: ACK-READ-TOKEN-0123456789abcd\n"
        "    users: [{name: ruth, token: ACK-RUTH-TOKEN-0123456789abcd}]\n"
    )
    with serve(pd) as pd_url:
        cfg = config(pd_url).replace("  admin_users:", read + "  admin_users:")
        async with running_app(db_url, cfg, clock=ManualClock(T0)) as (_app, client):
            fp = await fire(client)
            url = f"/api/v1/alerts/{fp}/ack"
            for name, headers in read_only.items():
                assert (await client.get(f"/api/v1/alerts/{fp}", headers=headers)).is_success
                for method in ("POST", "DELETE"):
                    r = await client.request(method, url, headers=headers)
                    assert r.status_code == 401, (name, method, r.status_code)
            alert = (await client.get(f"/api/v1/alerts/{fp}", headers=ADMIN_HEADERS)).json()
            assert alert["ack"] is None and alert["acks"] == []
            r = await client.post(url, headers=ALICE_HEADERS)
            assert r.status_code == 200 and r.json()["ack"]["by"] == "alice"
            r = await client.delete(url, headers=ADMIN_HEADERS)
            assert r.status_code == 200 and r.json()["status"] == "unacknowledged"


def cli(db_url: str, config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env["ALERTRELAY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "app", args[0], "--config", str(config_file), *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


async def test_cli_ack_and_unack(db_url: str, tmp_path: Path) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        cfg = tmp_path / "alertrelay.yml"
        cfg.write_text(config(pd_url))
        # The CLI acts on the database while the server (here in-process) runs.
        async with running_app(db_url, config(pd_url)) as (app, client):
            fp = await fire(client)
            done = cli(db_url, cfg, "ack", fp, "--by", "carol", "--for", "30m", "--comment", "disk")
            assert done.returncode == 0, done.stderr
            assert f"{fp}: acknowledged by carol until " in done.stdout
            assert "(disk)" in done.stdout and "1 notification(s) queued" in done.stdout
            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert (alert["ack"]["by"], alert["ack"]["via"]) == ("carol", "cli")
            await drain(app)
            assert actions(pd) == ["trigger", "acknowledge"]

            done = cli(db_url, cfg, "unack", fp)
            assert done.returncode == 0, done.stderr
            assert "taken back" in done.stdout
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"] is None
            done = cli(db_url, cfg, "unack", fp)
            assert done.returncode == 1 and "not acknowledged" in done.stderr
            done = cli(db_url, cfg, "ack", "0123456789abcdef")
            assert done.returncode == 1 and "no alert" in done.stderr
            done = cli(db_url, cfg, "ack", fp, "--for", "soon")
            assert done.returncode == 2 and "--for" in done.stderr
            audit = (await client.get("/api/v1/audit", headers=ADMIN_HEADERS)).json()["entries"]
            assert [(e["action"], e["actor"], e["outcome"]) for e in audit] == [
                ("ack", "cli", "not_found"),
                ("unack", "cli", "not_acked"),
                ("unack", "cli", "done"),
                ("ack", "cli", "done"),
            ]
            assert audit[-1]["details"]["by"] == "carol"


async def test_an_ack_covers_the_flap_and_ends_when_it_settles_resolved(db_url: str) -> None:
    from tests.integration.test_flapping import LABELS as FLAPPY
    from tests.integration.test_flapping import flap_setup, sweep_until_stable, toggle

    async with flap_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(5):
            await toggle(client, app, clock, i)
        [alert] = (await client.get("/api/v1/alerts?state=flapping")).json()["alerts"]
        fp = alert["fingerprint"]
        r = await client.post(f"/api/v1/alerts/{fp}/ack", json={"comment": "flaky probe"})
        assert r.status_code == 200 and r.json()["notifications"] == 1
        await drain(app)
        [incident] = pd.open_incidents()
        assert incident["acknowledged"]
        # The flap goes on: resolves and re-fires with new startsAt keep the ack.
        for i in range(5, 8):
            await toggle(client, app, clock, i)
            state = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert state["flap"]["flapping"] and state["ack"]["comment"] == "flaky probe", i
        # Flap notices are still sent (one when it started); reminders stay quiet.
        assert [b["kind"] for b in chat.bodies()].count("flapping") == 1
        await sweep_until_stable(app, clock, chat)
        state = (await client.get(f"/api/v1/alerts/{fp}")).json()
        assert state["status"] == "resolved" and state["ack"] is None
        assert [a["action"] for a in state["acks"]] == ["ended", "ack"]
        assert pd.open_incidents() == []
        assert FLAPPY["alertname"] == state["alertname"]


async def test_the_acknowledge_waits_for_its_trigger(db_url: str) -> None:
    """A trigger PagerDuty has not taken yet (503, retried) is still delivered
    before the acknowledge queued after it: same ordering key."""
    from tests.sinks import Reply

    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=clock) as (app, client):
            pd.script(Reply(503, "busy"))
            fp = await fire(client)
            await drain(app)
            assert pd.order == []  # the 503 is not accepted
            r = await client.post(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
            assert r.json()["notifications"] == 1
            rows = [n for n in table_rows(db_url, "notifications") if n["fingerprint"] == fp]
            assert [n["kind"] for n in rows] == ["firing", "ack"]
            assert rows[0]["ordering_key"] == rows[1]["ordering_key"]
            assert rows[0]["dedup_key"] == rows[1]["dedup_key"]
            for _ in range(20):
                clock.advance(60)
                await drain(app)
                if len(pd.order) == 2:
                    break
            assert actions(pd) == ["trigger", "acknowledge"]


async def test_a_kept_slack_message_is_edited_to_say_who_acknowledged(db_url: str) -> None:
    """update_message: the ack edits the message that announced the alert, and
    the un-ack edits it back; nothing new is posted."""
    from tests.chat_fakes import FakeSlackAPI

    token = "xoxb-ACK-TEST-TOKEN-123456"
    slack = FakeSlackAPI(token=token)
    with serve(slack) as slack_url:
        entry = (
            f'{{api_url: "{slack_url}/api/chat.postMessage", token: {token}, '
            'channel: "#alerts", update_message: true, grouping: alert, rate_limit: {per_second: 0}}'
        )
        cfg = f"""
auth: {{admin_token: {ADMIN}}}
delivery: {{timeout: 2s, lease: 10s}}
route: {{receiver: chat}}
receivers:
  - name: chat
    slack_configs: [{entry}]
"""
        async with running_app(db_url, cfg, clock=ManualClock(T0)) as (app, client):
            fp = await fire(client)
            await drain(app)
            assert len(slack.posts) == 1 and slack.updates == []
            r = await client.post(
                f"/api/v1/alerts/{fp}/ack",
                json={"by": "carol", "comment": "on it"},
                headers=ADMIN_HEADERS,
            )
            assert r.json()["notifications"] == 1
            await drain(app)
            assert len(slack.posts) == 1
            [edit] = slack.updates
            assert "FIRING, ACKNOWLEDGED" in edit["text"]
            assert "Acknowledged by carol (on it)." in edit["text"]
            r = await client.delete(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
            assert r.json()["notifications"] == 1
            await drain(app)
            assert len(slack.posts) == 1 and len(slack.updates) == 2
            assert "cknowledged" not in slack.updates[-1]["text"]
            assert "[FIRING]" in slack.updates[-1]["text"]


async def test_an_alerts_ack_history_goes_with_it_when_pruned(db_url: str) -> None:
    from tests.integration.test_retention import DAY, fp, post, prune_all, relay

    async with relay(db_url) as (app, client, _pd, clock):
        await post(client, "Pruned", "firing", T0)
        r = await client.post(f"/api/v1/alerts/{fp('Pruned')}/ack", json={"comment": "x"})
        assert r.status_code == 200
        clock.advance(60)
        await post(client, "Pruned", "resolved", T0, T0 + timedelta(minutes=1))
        assert len(table_rows(db_url, "alert_acks")) == 2  # ack, ended
        await drain(app)
        clock.advance(200 * DAY)
        deleted = await prune_all(app)
        assert deleted["alerts"] == 1
        assert table_rows(db_url, "alert_acks") == []


async def test_an_ack_racing_a_resolve_never_leaves_a_resolved_alert_acked(db_url: str) -> None:
    """The ack locks the alert row as ingest does: whichever commits first, a
    resolved alert ends up without an ack (ack first: the resolve ends it;
    resolve first: the ack is refused 409)."""

    async def send(labels: dict[str, str], status: str) -> None:
        alert = am_alert(labels, status=status)
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.status_code == 200, r.text

    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url)) as (_app, client):
            outcomes = []
            for i in range(12):
                labels = {**LABELS, "instance": f"race-{i}"}  # each its own alert: no flap
                await send(labels, "firing")
                fp = am_alert(labels)["fingerprint"]
                ack = client.post(f"/api/v1/alerts/{fp}/ack", headers=ADMIN_HEADERS)
                _, answer = await asyncio.gather(send(labels, "resolved"), ack)
                outcomes.append(answer.status_code)
                alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
                assert alert["status"] == "resolved" and not alert["flap"]["flapping"]
                assert alert["ack"] is None, i
                actions = [a["action"] for a in alert["acks"]]
                assert actions == (["ended", "ack"] if answer.status_code == 200 else []), i
            assert set(outcomes) <= {200, 409}, outcomes
