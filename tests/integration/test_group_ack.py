"""Where grouped messages meet acknowledgement, on SQLite and PostgreSQL.

A group's message (``grouping: group``) lists each firing alert with its own
acknowledge link; following one acks that alert only. With
``update_message`` (Slack's Web API), the ack and the un-ack edit the
group's message (one post, then edits) to say who acknowledged which alert;
without it, a grouped sink hears nothing of an ack. The alert's API and page
list the group messages that changed or listed it, and pruning takes their
links with them and the group's state once its last occurrence is long over.
"""

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from app.ops.clock import ManualClock
from tests.chat_fakes import FakeSlackAPI
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.integration.test_retention import prune_all
from tests.sinks import WebhookSink, serve

TOKEN = "xoxb-GROUP-ACK-TOKEN-1234"
SECRET = "group-ack-link-secret-0123456789"
ADMIN = "admin-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
GROUP = '{}:{alertname="DiskFull"}'
DAY = 86400.0


def config(slack_url: str, *, update: bool = True, webhook_chat: str = "") -> str:
    extra = (
        f'    mattermost_configs: [{{webhook_url: "{webhook_chat}/hooks/SECRETHOOK", '
        "rate_limit: {per_second: 0}}]\n"
        if webhook_chat
        else ""
    )
    return f"""
external_url: https://alertrelay.example.com
auth:
  admin_token: {ADMIN}
  link_secret: {SECRET}
delivery: {{initial_backoff: 1s, max_backoff: 1s, timeout: 2s, lease: 10s}}
route: {{receiver: chat}}
receivers:
  - name: chat
    slack_configs:
      - api_url: "{slack_url}/api/chat.postMessage"
        token: {TOKEN}
        channel: "#alerts"
        update_message: {str(update).lower()}
        rate_limit: {{per_second: 0}}
{extra}"""


def disk(i: int) -> dict[str, str]:
    return {"alertname": "DiskFull", "severity": "critical", "instance": f"db-{i}"}


async def send(client: httpx.AsyncClient, *alerts: dict[str, Any]) -> None:
    r = await client.post(
        "/webhook/alertmanager",
        content=body(am_webhook(list(alerts), group_key=GROUP)),
        headers=JSON,
    )
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


def fingerprints(db_url: str) -> dict[str, str]:
    """instance -> fingerprint."""
    return {
        r["labels"]["instance"]: r["fingerprint"]
        for r in table_rows(db_url, "alerts", order="fingerprint")
    }


def shown(slack: FakeSlackAPI) -> str:
    """The text of the one message the channel shows."""
    (message,) = slack.messages.values()
    return str(message["attachments"][0]["blocks"][0]["text"]["text"])


def line_of(text: str, instance: str) -> str:
    (line,) = [x for x in text.splitlines() if f"instance={instance} " in x]
    return line


def ack_path(line: str) -> str:
    url = line.split("<https://alertrelay.example.com", 1)[1].split("|Ack>", 1)[0]
    assert url.startswith("/ack/")
    return url


async def test_each_line_acks_its_alert_and_the_group_message_is_edited(db_url: str) -> None:
    slack = FakeSlackAPI(token=TOKEN)
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(slack) as url:
        async with running_app(db_url, config(url), clock=clock) as (app, client):
            await send(client, am_alert(disk(1)), am_alert(disk(2)))
            await drain(app)
            assert len(slack.posts) == 1 and slack.updates == []
            text = shown(slack)
            one, two = line_of(text, "db-1"), line_of(text, "db-2")
            assert ack_path(one) != ack_path(two)

            # The link of db-2's line acknowledges db-2, and only it (named by the
            # receiver whose message carried it).
            page = await client.get(ack_path(two))
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert page.status_code == 200 and token is not None, page.text
            form = {"comment": "swapping disk", "for": "", "csrf_token": token.group(1)}
            r = await client.post(ack_path(two), data=form)
            assert r.status_code == 200, r.text
            await drain(app)
            fps = fingerprints(db_url)
            alerts = {i: (await client.get(f"/api/v1/alerts/{fps[i]}")).json() for i in fps}
            assert alerts["db-2"]["ack"]["active"] and alerts["db-1"]["ack"] is None
            # One message, edited to show the ack on db-2's line; db-1 keeps its link.
            assert len(slack.posts) == 1 and len(slack.updates) == 1
            text = shown(slack)
            assert "acknowledged by chat (swapping disk)" in line_of(text, "db-2")
            assert "/ack/" not in line_of(text, "db-2")
            assert "|Ack>" in line_of(text, "db-1") and "acknowledged" not in line_of(text, "db-1")

            # The un-ack edits it again: db-2's line offers its link again.
            r = await client.delete(f"/api/v1/alerts/{fps['db-2']}/ack", headers=HEADERS)
            assert r.status_code == 200, r.text
            await drain(app)
            assert len(slack.posts) == 1 and len(slack.updates) == 2
            text = shown(slack)
            assert "|Ack>" in line_of(text, "db-2") and "acknowledged by" not in text

            # The alert's API and page list the group's messages, with the reference.
            api = (await client.get(f"/api/v1/alerts/{fps['db-2']}")).json()
            page = (await client.get(f"/alerts/{fps['db-2']}")).text
    grouped = [n for n in api["notifications"] if n["grouped"]]
    assert [n["kind"] for n in grouped] == ["unack", "ack", "firing"]  # newest first
    assert len({n["message_key"] for n in grouped}) == 1
    assert grouped[0]["message_key"].startswith("g:")
    assert [n["message"]["action"] for n in grouped] == ["edited", "edited", "posted"]
    ref = grouped[-1]["message"]["ref"]
    assert all(n["message"]["ref"] == ref for n in grouped)
    assert "group message" in page and "Chat message: edited" in page
    # Ordering: the ack rows share the group's ordering key (delivered after its post).
    rows = table_rows(db_url, "notifications")
    assert len({r["ordering_key"] for r in rows}) == 1


async def test_without_update_message_an_ack_sends_nothing_to_a_grouped_sink(
    db_url: str,
) -> None:
    slack, mm = FakeSlackAPI(token=TOKEN), WebhookSink()
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(slack) as url, serve(mm) as mm_url:
        text = config(url, update=False, webhook_chat=mm_url)
        async with running_app(db_url, text, clock=clock) as (app, client):
            await send(client, am_alert(disk(1)))
            await drain(app)
            assert len(slack.posts) == 1 and len(mm.received) == 1
            # Mattermost's incoming webhook renders links as [Ack](url).
            assert "[Ack](https://alertrelay.example.com/ack/" in mm.received[0].json()["text"]
            fp = fingerprints(db_url)["db-1"]
            r = await client.post(f"/api/v1/alerts/{fp}/ack", headers=HEADERS)
            assert r.status_code == 200 and r.json()["notifications"] == 0, r.text
            await drain(app)
    assert len(slack.posts) == 1 and slack.updates == [] and len(mm.received) == 1


async def test_pruning_takes_group_links_and_closed_groups(db_url: str) -> None:
    slack = FakeSlackAPI(token=TOKEN)
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(slack) as url:
        async with running_app(db_url, config(url), clock=clock) as (app, client):
            await send(client, am_alert(disk(1)), am_alert(disk(2)))
            await drain(app)
            clock.advance(60)
            ends = clock.now()
            await send(client, am_alert(disk(1), status="resolved", endsAt=ends.isoformat()))
            await drain(app)
            assert count(db_url, "alert_groups") == 1
            links = count(db_url, "notification_alerts")
            assert links == 4  # the post: both alerts; the edit: both listed

            # Long after, db-2 still fires: its group, the group's rows, their
            # links and the message's reference stay, so an ack still edits it.
            clock.advance(40 * DAY)
            deleted = await prune_all(app)
            assert deleted["alerts"] == 1  # db-1, resolved 40 days ago
            assert deleted["alert_groups"] == deleted["notifications"] == 0
            assert deleted["notification_alerts"] == deleted["message_refs"] == 0
            fp = fingerprints(db_url)["db-2"]
            r = await client.post(f"/api/v1/alerts/{fp}/ack", headers=HEADERS)
            assert r.status_code == 200 and r.json()["notifications"] == 1, r.text
            await drain(app)
            assert len(slack.posts) == 1 and len(slack.updates) == 2
            # (db-1 is gone: db-2 alone is the group, its labels the title.)
            assert shown(slack).endswith("· acknowledged by admin")

            # db-2 resolves: the group closes. Its rows go at the notifications
            # age, its state once resolved_alerts (30d) is over.
            ends = clock.now()
            await send(client, am_alert(disk(2), status="resolved", endsAt=ends.isoformat()))
            await drain(app)
            clock.advance(29 * DAY)
            deleted = await prune_all(app)
            assert deleted["alert_groups"] == 0
            # The post and db-1's resolve (69 days old); the ack's edit is 29 days old.
            assert deleted["notifications"] == 2 and deleted["notification_alerts"] == 4
            clock.advance(2 * DAY)
            deleted = await prune_all(app)
            assert deleted["alert_groups"] == 1 and deleted["notifications"] == 2
            assert deleted["notification_alerts"] == 2 and deleted["message_refs"] == 1
    assert count(db_url, "alert_groups") == 0 and count(db_url, "notification_alerts") == 0
