"""Grouped notifications (``grouping: group``) end to end in one process, on
SQLite and PostgreSQL: one message per Alertmanager group and change on chat
and email, one event per alert on PagerDuty, mails threaded per group
occurrence, and sweeper notices riding group messages."""

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.delivery.worker import DeliveryWorker
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.integration.test_email import Recorder, smtp_server
from tests.sinks import FakePagerDuty, WebhookSink, serve

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"


def config(pd_url: str, chat_url: str, smtp_port: int, extra: str = "") -> str:
    return f"""
global:
  external_url: https://alertrelay.example.com
delivery:
  initial_backoff: 1s
  timeout: 5s
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
dedup:
  renotify_interval: 1h
route:
  receiver: ops
receivers:
  - name: ops
    pagerduty_configs:
      - {{routing_key: {ROUTING_KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}
    slack_configs:
      - api_url: "{chat_url}/services/T0/B0/SECRETSECRET"
        rate_limit: {{per_second: 0}}
{extra}
    email_configs:
      - to: ops@example.com
        from: alertrelay@example.com
        smarthost: 127.0.0.1:{smtp_port}
        require_tls: false
        send_resolved: true
        rate_limit: {{per_second: 0}}
"""


@dataclass
class Env:
    app: Starlette
    client: httpx.AsyncClient
    pd: FakePagerDuty
    chat: WebhookSink
    smtp: Recorder
    clock: ManualClock
    db_url: str


@asynccontextmanager
async def setup(db_url: str, extra: str = "") -> AsyncIterator[Env]:
    pd, chat = FakePagerDuty(), WebhookSink()
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(pd) as pd_url, serve(chat) as chat_url, smtp_server() as (smtp, port):
        text = config(pd_url, chat_url, port, extra)
        async with running_app(db_url, text, clock=clock) as (app, client):
            yield Env(app, client, pd, chat, smtp, clock, db_url)


def group_alerts(group: str, n: int, status: str = "firing") -> list[dict[str, Any]]:
    return [
        am_alert(
            {
                "alertname": "DiskFull",
                "cluster": group,
                "instance": f"db-{i:03d}",
                "severity": "critical",
            },
            status=status,
            annotations={"summary": f"disk of db-{i:03d} full"},
        )
        for i in range(n)
    ]


def webhook(group: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return am_webhook(
        alerts,
        group_key=f'{{}}:{{cluster="{group}"}}',
        groupLabels={"cluster": group},
        commonLabels={"cluster": group, "alertname": "DiskFull"},
    )


async def post(env: Env, payload: dict[str, Any]) -> dict[str, Any]:
    r = await env.client.post("/webhook/alertmanager", content=body(payload), headers=JSON)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def drain(app: Starlette) -> None:
    worker: DeliveryWorker = app.state.services.delivery
    async with asyncio.timeout(60):
        await worker.drain()


def mails(env: Env) -> list[EmailMessage]:
    return [
        email.message_from_bytes(m.content, policy=email.policy.default)  # type: ignore[misc]
        for m in env.smtp.accepted
    ]


def chat_texts(env: Env) -> list[str]:
    out = []
    for r in env.chat.requests():
        data = r.json()
        out.append(data["attachments"][0]["blocks"][0]["text"]["text"])
    return out


async def test_three_groups_fire_and_resolve_as_six_chat_posts_and_six_mails(db_url: str) -> None:
    async with setup(db_url) as env:
        for group in ("eu", "us", "ap"):
            result = await post(env, webhook(group, group_alerts(group, 30)))
            # 30 PagerDuty rows, one Slack row and one mail row.
            assert result["notifications"] == 32
        again = await post(env, webhook("eu", group_alerts("eu", 30)))  # Alertmanager's repeat
        assert again["notifications"] == 0 and again["duplicates"] == 30
        await drain(env.app)
        assert len(env.chat.requests()) == 3
        assert len(env.smtp.accepted) == 3
        assert len(env.pd.open_incidents()) == 90

        for group in ("eu", "us", "ap"):
            await post(env, webhook(group, group_alerts(group, 30, "resolved")))
        await drain(env.app)
    assert len(env.chat.requests()) == 6
    assert env.pd.open_incidents() == [] and len(env.pd.all_incidents()) == 90
    # Groups have their own ordering keys, so posts of different groups may
    # arrive in any order; within a group, the firing post comes first.
    posts = [r.json() for r in env.chat.requests()]
    eu = [p for p in posts if "cluster=eu" in p["blocks"][0]["text"]["text"]]
    assert len(eu) == 2
    titles = [p["blocks"][0]["text"]["text"] for p in eu]
    assert titles == ["*[FIRING:30] cluster=eu: 30 firing*", "*[RESOLVED] cluster=eu: 30 resolved*"]
    texts = [p["attachments"][0]["blocks"][0]["text"]["text"] for p in eu]
    assert texts[0].startswith("30 firing. Now 30 firing in this group.")
    # 20 listed (the default max_alerts_per_message), the rest counted with the console link.
    assert texts[0].count("\n- ") == 20
    assert "…and 10 more: <https://alertrelay.example.com/alerts?state=active&amp;q=eu|" in texts[0]
    assert "<https://runbooks.example.com/diskfull|Runbook>" in texts[0]
    assert texts[1].startswith("30 resolved. Now 0 firing, 30 resolved in this group.")

    sent = mails(env)
    assert len(sent) == 6
    by_group: dict[str, list[EmailMessage]] = {}
    for m in sent:
        by_group.setdefault(str(m["Subject"]).split()[1], []).append(m)
    assert sorted(by_group) == ["cluster=ap:", "cluster=eu:", "cluster=us:"]
    for first, resolve in by_group.values():
        assert first["In-Reply-To"] is None
        assert resolve["In-Reply-To"] == first["Message-ID"] == resolve["References"]
        assert resolve["Message-ID"] != first["Message-ID"]
    # One row per group and change, whatever the number of alerts.
    grouped = [
        n for n in table_rows(env.db_url, "notifications") if n["integration"] != "pagerduty"
    ]
    assert len(grouped) == 12
    assert {n["status"] for n in grouped} == {"sent"}


async def test_a_group_message_lists_the_group_not_only_the_webhook(db_url: str) -> None:
    async with setup(db_url) as env:
        await post(env, webhook("eu", group_alerts("eu", 3)))
        one = group_alerts("eu", 4)[3:]  # a fourth alert arrives alone
        await post(env, webhook("eu", one))
        gone = group_alerts("eu", 1, "resolved")  # the first resolves, alone too
        await post(env, webhook("eu", gone))
        await drain(env.app)
    texts = chat_texts(env)
    assert len(texts) == 3
    assert texts[1].startswith("1 firing. Now 4 firing in this group.")
    assert texts[1].index("(new) DiskFull instance=db-003") < texts[1].index("db-000")
    assert texts[2].startswith("1 resolved. Now 3 firing, 1 resolved in this group.")
    assert "Resolved:\n- (just resolved) DiskFull instance=db-000" in texts[2]
    # All three mails belong to one occurrence: the later two answer the first.
    first, *later = mails(env)
    assert [m["In-Reply-To"] for m in later] == [first["Message-ID"]] * 2


async def test_a_new_occurrence_starts_a_new_thread(db_url: str) -> None:
    async with setup(db_url) as env:
        await post(env, webhook("eu", group_alerts("eu", 2)))
        await post(env, webhook("eu", group_alerts("eu", 2, "resolved")))
        env.clock.advance(600)
        later = [
            am_alert(a["labels"], starts_at=T0 + timedelta(minutes=10))
            for a in group_alerts("eu", 2)
        ]
        await post(env, webhook("eu", later))
        await drain(env.app)
    first, resolve, again = mails(env)
    assert resolve["In-Reply-To"] == first["Message-ID"]
    assert again["In-Reply-To"] is None and again["Message-ID"] != first["Message-ID"]
    keys = [
        n["payload"]["group"]["message_key"]
        for n in table_rows(db_url, "notifications")
        if n["integration"] == "email"
    ]
    assert keys[0] == keys[1] != keys[2]
    assert count(db_url, "alert_groups") == 1


async def test_grouping_alert_keeps_one_message_per_alert(db_url: str) -> None:
    extra = "        grouping: alert\n"
    async with setup(db_url, extra) as env:
        await post(env, webhook("eu", group_alerts("eu", 3)))
        await drain(env.app)
    assert len(env.chat.requests()) == 3  # Slack: per alert, as asked
    assert len(env.smtp.accepted) == 1  # email still groups


async def test_reminders_of_a_group_ride_one_message(db_url: str) -> None:
    async with setup(db_url) as env:
        await post(env, webhook("eu", group_alerts("eu", 5)))
        await drain(env.app)
        env.clock.advance(3601)
        result = await env.app.state.services.sweeper.sweep_once()
        assert result.reminders == 5
        await drain(env.app)
    texts = chat_texts(env)
    assert len(texts) == 2
    assert texts[1].startswith("5 still firing. Now 5 firing in this group.")
    assert texts[1].count("\n- DiskFull instance=db-") == 5  # all alike: no mark per line
    assert len(env.pd.all_incidents()) == 5


@pytest.mark.parametrize("n", [300])
async def test_three_hundred_alerts_fit_every_chat_sink(db_url: str, n: int) -> None:
    extra = "        max_alerts_per_message: 300\n"
    async with setup(db_url, extra) as env:
        await post(env, webhook("eu", group_alerts("eu", n)))
        await drain(env.app)
    (text,) = chat_texts(env)
    assert len(text) <= 3000
    listed = text.count("\n- ")
    assert 5 < listed < n
    assert text.endswith(
        f"…and {n - listed} more: <https://alertrelay.example.com/alerts?state=active&amp;q=eu|see all in the console>"
    )


def slack_update_config(url: str, token: str, more: str = "") -> str:
    """One receiver with a Slack Web API integration that edits its messages
    (and ``more`` integrations beside it)."""
    return f"""
route: {{receiver: ops}}
receivers:
  - name: ops
    slack_configs:
      - api_url: "{url}/api/chat.postMessage"
        token: {token}
        channel: "#alerts"
        update_message: true
        rate_limit: {{per_second: 0}}
{more}"""


async def test_update_message_edits_the_group_message(db_url: str) -> None:
    """With update_message (Slack's Web API), a group occurrence is one post
    and its later changes edit it: more alerts, then the resolve."""
    from tests.chat_fakes import FakeSlackAPI

    api = FakeSlackAPI(token="xoxb-GROUP-TEST-TOKEN")
    with serve(api) as url:
        text = slack_update_config(url, "xoxb-GROUP-TEST-TOKEN")
        clock = ManualClock(T0 + timedelta(minutes=1))
        async with running_app(db_url, text, clock=clock) as (app, client):
            env = Env(app, client, FakePagerDuty(), WebhookSink(), Recorder(), clock, db_url)
            await post(env, webhook("eu", group_alerts("eu", 30)))
            await drain(app)
            await post(env, webhook("eu", group_alerts("eu", 35)))
            await drain(app)
            await post(env, webhook("eu", group_alerts("eu", 35, "resolved")))
            await drain(app)
    assert len(api.posts) == 1 and len(api.updates) == 2
    (shown,) = api.messages.values()
    assert shown["blocks"][0]["text"]["text"] == "*[RESOLVED] cluster=eu: 35 resolved*"
    assert [u["blocks"][0]["text"]["text"] for u in api.updates] == [
        "*[FIRING:35] cluster=eu: 5 firing*",
        "*[RESOLVED] cluster=eu: 35 resolved*",
    ]
    (ref,) = table_rows(db_url, "message_refs", order="message_key")
    assert ref["message_key"].startswith("g:")


async def test_flapping_and_stable_notices_ride_the_group_message(db_url: str) -> None:
    """One alert of a group flaps while another keeps firing, so the group's
    occurrence stays open: with update_message, the flapping notice (decided by
    a webhook) and the stable notice (decided by the sweeper) edit the group's
    one message, as the alert's firing and resolves did. A per-alert webhook
    gets the same notices one by one."""
    from tests.chat_fakes import FakeSlackAPI
    from tests.integration.test_flapping import sweep_until_stable

    api, per_alert = FakeSlackAPI(token="xoxb-FLAP-TEST-TOKEN"), WebhookSink()
    with serve(api) as url, serve(per_alert) as hook_url:
        text = slack_update_config(
            url, "xoxb-FLAP-TEST-TOKEN", f'    webhook_configs: [{{url: "{hook_url}/hook"}}]\n'
        )
        clock = ManualClock(T0)
        async with running_app(db_url, text, clock=clock) as (app, client):
            steady = am_alert(
                {"alertname": "DiskFull", "cluster": "eu", "instance": "db-2"}, starts_at=T0
            )
            flappy = {"alertname": "DiskFull", "cluster": "eu", "instance": "db-1"}
            for i in range(8):  # db-1 toggles every 5 minutes, as in test_flapping
                clock.set(T0 + timedelta(minutes=5 * i))
                occurrence = T0 + timedelta(minutes=10 * (i // 2))
                toggled = (
                    am_alert(flappy, starts_at=occurrence)
                    if i % 2 == 0
                    else am_alert(
                        flappy, status="resolved", starts_at=occurrence, ends_at=clock.now()
                    )
                )
                r = await client.post(
                    "/webhook/alertmanager",
                    content=body(webhook("eu", [toggled, steady])),
                    headers=JSON,
                )
                assert r.status_code == 200, r.text
                await drain(app)
            await sweep_until_stable(app, clock, per_alert)
    per_alert_kinds = [b["kind"] for b in per_alert.bodies()]
    assert per_alert_kinds == ["firing", "firing", "resolved", "firing", "resolved"] + [
        "flapping",
        "stable",
    ]
    # Slack: one post, then one edit per notice of db-1 (none while it flaps).
    assert len(api.posts) == 1 and len(api.messages) == 1
    titles = [b["blocks"][0]["text"]["text"] for b in api.posts + api.updates]
    assert titles == [
        "*[FIRING:2] cluster=eu: 2 firing*",
        "*[FIRING:1, RESOLVED:1] cluster=eu: 1 resolved*",
        "*[FIRING:2] cluster=eu: 1 firing*",
        "*[FIRING:1, RESOLVED:1] cluster=eu: 1 resolved*",
        "*[FIRING:2] cluster=eu: 1 flapping*",
        "*[FIRING:1, RESOLVED:1] cluster=eu: 1 stopped flapping*",
    ]
    texts = [b["attachments"][0]["blocks"][0]["text"]["text"] for b in api.updates]
    assert "- (flapping: 5 transitions) DiskFull instance=db-1" in texts[3]
    assert "- (stopped flapping: 8 transitions) DiskFull instance=db-1" in texts[4]
    rows = [r for r in table_rows(db_url, "notifications") if r["integration"] == "slack"]
    assert [r["kind"] for r in rows] == [
        "firing",
        "resolved",
        "firing",
        "resolved",
        "flapping",
        "stable",
    ]
    assert len({r["message_key"] for r in rows}) == 1
    assert [r["message_ref"]["action"] for r in rows] == ["posted"] + ["edited"] * 5


async def test_google_chat_threads_a_group_occurrence(db_url: str) -> None:
    """Google Chat cannot edit: a group occurrence's messages share one threadKey
    (REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD), and the next occurrence starts another."""
    from tests.sinks import QuerySink

    chat = QuerySink()
    with serve(chat) as url:
        text = f"""
route: {{receiver: ops}}
receivers:
  - name: ops
    googlechat_configs:
      - url: "{url}/v1/spaces/S/messages?key=K&token=T"
        rate_limit: {{per_second: 0}}
"""
        clock = ManualClock(T0 + timedelta(minutes=1))
        async with running_app(db_url, text, clock=clock) as (app, client):
            for payload in (
                webhook("eu", group_alerts("eu", 2)),
                webhook("eu", group_alerts("eu", 3)[2:]),  # one more alert
                webhook("eu", group_alerts("eu", 3, "resolved")),  # the occurrence ends
            ):
                r = await client.post("/webhook/alertmanager", content=body(payload), headers=JSON)
                assert r.status_code == 200, r.text
            clock.advance(600)
            again = [
                am_alert(a["labels"], starts_at=T0 + timedelta(minutes=10))
                for a in group_alerts("eu", 1)
            ]
            r = await client.post(
                "/webhook/alertmanager", content=body(webhook("eu", again)), headers=JSON
            )
            assert r.status_code == 200, r.text
            await drain(app)
    sent = chat.bodies()
    titles = [m["cardsV2"][0]["card"]["header"]["title"] for m in sent]
    assert titles == [
        "[FIRING:2] cluster=eu: 2 firing",
        "[FIRING:3] cluster=eu: 1 firing",
        "[RESOLVED] cluster=eu: 3 resolved",
        "[FIRING:1] cluster=eu: 1 firing",
    ]
    keys = [m["thread"]["threadKey"] for m in sent]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert all(k.startswith("alertrelay-alertrelay/group/") for k in keys)
    assert {q.rsplit("&", 1)[1] for q in chat.queries} == {
        "messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    }
