"""The one-click acknowledge link, on SQLite and PostgreSQL: the link rides in the
Slack message, GET only shows, POST (with the CSRF token) acknowledges, and
every kind of bad link is refused with its own page and 4xx."""

import asyncio
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from app.core.acklink import LinkClaims, make_token
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import FakePagerDuty, Reply, WebhookSink, serve

SECRET = "link-secret-0123456789abcdefghij"
KEY = "LINKROUTINGKEY0123456789abcdef01"
LABELS = {"alertname": "DiskFull", "severity": "critical", "instance": "db1"}


class Slack(WebhookSink):
    default = Reply(200, "ok", headers={"Content-Type": "text/html"})


def config(pd_url: str, slack_url: str, *, links: bool = True) -> str:
    link = f"external_url: https://alertrelay.example.com/\nauth: {{link_secret: {SECRET}}}\n"
    return f"""
{link if links else ""}
delivery: {{timeout: 2s, lease: 10s}}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
    slack_configs: [{{api_url: "{slack_url}/services/T/B/X", grouping: alert}}]
"""


async def fire(client: httpx.AsyncClient, status: str = "firing", starts: Any = T0) -> None:
    alert = am_alert(LABELS, status=status, starts_at=starts)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


def ack_path(slack: Slack) -> str:
    """The path of the Acknowledge button in the last Slack message."""
    message = slack.bodies()[-1]
    urls = [
        e["url"]
        for block in message["attachments"][0]["blocks"]
        if block["type"] == "actions"
        for e in block["elements"]
        if e["action_id"] == "acknowledge"
    ]
    [url] = urls
    assert url.startswith("https://alertrelay.example.com/ack/")
    return urlsplit(url).path


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_the_link_shows_on_get_and_acknowledges_on_post(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pd, slack = FakePagerDuty(), Slack()
    with serve(pd) as pd_url, serve(slack) as slack_url:
        cfg = config(pd_url, slack_url)
        async with running_app(db_url, cfg, clock=ManualClock(T0)) as (app, client):
            await fire(client)
            await drain(app)
            path = ack_path(slack)
            assert SECRET not in str(slack.bodies())
            fp = (await client.get("/api/v1/alerts")).json()["alerts"][0]["fingerprint"]

            page = await client.get(path)
            assert page.status_code == 200
            assert "Acknowledge DiskFull?" in page.text and "page" in page.text
            # A preview (GET) acknowledges nothing.
            page2 = await client.get(path)
            assert page2.status_code == 200
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"] is None

            # A POST without the page's CSRF token is refused.
            r = await client.post(path, data={"comment": "x"})
            assert r.status_code == 403
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"] is None

            r = await client.post(
                path, data={"comment": "on it", "for": "", "csrf_token": csrf(page2.text)}
            )
            assert r.status_code == 200, r.text
            assert "Acknowledged by page" in r.text
            alert = (await client.get(f"/api/v1/alerts/{fp}")).json()
            assert alert["ack"]["by"] == "page" and alert["ack"]["via"] == "link"
            assert alert["ack"]["comment"] == "on it"
            await drain(app)
            assert [a for a, _ in pd.order] == ["trigger", "acknowledge"]
            # The Slack message was not repeated (no update_message: no new post).
            assert len(slack.bodies()) == 1
            audit = (await client.get("/api/v1/audit?action=ack")).json()["entries"]
            assert audit[0]["actor"] == "page" and audit[0]["details"]["receiver"] == "page"
            metrics = (await client.get("/metrics")).text
            assert 'alertrelay_acks_total{via="link"} 1.0' in metrics
            # The secret signs links; it is in no row, answer or log line.
            for table, order in (
                ("notifications", "id"),
                ("alerts", "fingerprint"),
                ("alert_acks", "id"),
                ("audit_log", "id"),
            ):
                assert SECRET not in str(table_rows(db_url, table, order)), table
            assert SECRET not in str((await client.get(f"/api/v1/alerts/{fp}")).json())
            assert SECRET not in caplog.text and SECRET not in metrics


async def test_bad_links_are_refused_each_with_its_page(db_url: str) -> None:
    pd, slack = FakePagerDuty(), Slack()
    clock = ManualClock(T0)
    with serve(pd) as pd_url, serve(slack) as slack_url:
        cfg = config(pd_url, slack_url)
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            await fire(client)
            await drain(app)
            path = ack_path(slack)
            token = path.rsplit("/", 1)[1]
            page = await client.get(path)
            form = {"csrf_token": csrf(page.text)}

            # Wrong signature: one character of the MAC changed.
            flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
            for method in ("GET", "POST"):
                r = await client.request(method, f"/ack/{flipped}", data=form)
                assert r.status_code == 403 and "not valid" in r.text
            r = await client.get("/ack/garbage")
            assert r.status_code == 403

            # Expired: a token signed with the right secret but past its time.
            fp = (await client.get("/api/v1/alerts")).json()["alerts"][0]["fingerprint"]
            old = make_token(SECRET.encode(), LinkClaims(fp, T0, "page", T0 - timedelta(seconds=1)))
            for method in ("GET", "POST"):
                r = await client.request(method, f"/ack/{old}", data=form)
                assert r.status_code == 410 and "expired" in r.text

            # Replayed after resolve.
            await fire(client, status="resolved")
            for method in ("GET", "POST"):
                r = await client.request(method, path, data=form)
                assert r.status_code == 409 and "Already resolved" in r.text

            # Another occurrence: it fired again; the old link does not ack the new one.
            clock.advance(600)
            await fire(client, starts=T0 + timedelta(minutes=10))
            for method in ("GET", "POST"):
                r = await client.request(method, path, data=form)
                assert r.status_code == 409 and "occurrence is over" in r.text
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"] is None
            # The new message's link works for the new occurrence.
            await drain(app)
            new_path = ack_path(slack)
            assert new_path != path
            page = await client.get(new_path)
            r = await client.post(new_path, data={"csrf_token": csrf(page.text)})
            assert r.status_code == 200
            assert (await client.get(f"/api/v1/alerts/{fp}")).json()["ack"]["by"] == "page"

            # An alert no longer stored.
            gone = make_token(
                SECRET.encode(), LinkClaims("0123456789abcdef", T0, "page", T0 + timedelta(days=1))
            )
            assert (await client.get(f"/ack/{gone}")).status_code == 404


async def test_without_link_secret_there_is_no_link(db_url: str) -> None:
    pd, slack = FakePagerDuty(), Slack()
    with serve(pd) as pd_url, serve(slack) as slack_url:
        cfg = config(pd_url, slack_url, links=False)
        async with running_app(db_url, cfg, clock=ManualClock(T0)) as (app, client):
            await fire(client)
            await drain(app)
            assert "/ack/" not in str(slack.bodies())
            r = await client.get("/ack/anything.at-all")
            assert r.status_code == 404 and "links are off" in r.text


ACK_URL = "https://alertrelay.example.com/ack/eyJmcCI6MX0.c2lnbmF0dXJl"
CHAT_CONFIGS = {
    "slack": {"api_url": "https://hooks.slack.com/services/T/B/X"},
    "msteams": {"webhook_url": "https://example.webhook.office.com/workflows/x"},
    "googlechat": {"url": "https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t"},
    "discord": {"webhook_url": "https://discord.com/api/webhooks/1/abc"},
    "mattermost": {"webhook_url": "https://mattermost.example.com/hooks/abc"},
    "email": {"to": "ops@example.com", "from": "ar@example.com", "smarthost": "mail:25"},
}


async def test_every_chat_and_the_email_render_the_acknowledge_link() -> None:
    from app.notifiers import CONFIG_MODELS
    from tests.helpers import notice_payload, sink_message, sink_notifier

    models = dict(CONFIG_MODELS.values())
    for name, raw in CHAT_CONFIGS.items():
        cfg = models[name].model_validate(raw)
        with_link = sink_message(notice_payload(ack_url=ACK_URL), cfg)
        without = sink_message(notice_payload(), cfg)
        async with sink_notifier(name, cfg) as notifier:
            if name == "email":
                mail = notifier.build_message(with_link).as_string()  # type: ignore[attr-defined]
                assert "Acknowledge" in mail and "alertrelay.example.com/ack/" in mail.replace(
                    "=\n", ""
                ), name
                plain = notifier.build_message(without).as_string()  # type: ignore[attr-defined]
                assert "Acknowledge" not in plain
                continue
            sent = notifier.prepare(with_link).body.decode()
            assert ACK_URL in sent and "Acknowledge" in sent, name
            assert "Acknowledge" not in notifier.prepare(without).body.decode(), name


async def test_the_link_works_without_the_read_credential(db_url: str) -> None:
    """With auth.read set, the console and the API need it; the link's page
    (and its stylesheet) do not: the signed token is the credential."""
    pd, slack = FakePagerDuty(), Slack()
    with serve(pd) as pd_url, serve(slack) as slack_url:
        cfg = config(pd_url, slack_url).replace(
            f"auth: {{link_secret: {SECRET}}}",
            f"auth: {{link_secret: {SECRET}, read: {{token: read-token-0123456789}}}}",
        )
        async with running_app(db_url, cfg, clock=ManualClock(T0)) as (app, client):
            await fire(client)
            await drain(app)
            path = ack_path(slack)
            assert (await client.get("/")).status_code == 401
            assert (await client.get("/api/v1/alerts")).status_code == 401
            assert (await client.get("/static/console.css")).status_code == 200
            page = await client.get(path)
            assert page.status_code == 200 and "Acknowledge DiskFull?" in page.text
            r = await client.post(path, data={"csrf_token": csrf(page.text)})
            assert r.status_code == 200 and "Acknowledged by page" in r.text
            await drain(app)
            assert [a for a, _ in pd.order] == ["trigger", "acknowledge"]
