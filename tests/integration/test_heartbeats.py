"""Heartbeats through ingest and the sweeper, on SQLite and PostgreSQL.

A Watchdog alert repeated by Alertmanager is the heartbeat's proof of life;
without it for ``interval`` a HeartbeatMissing alert fires through the
normal path (routing, dedup, delivery) and resolves when the Watchdog is
back. Restarts and a second replica neither miss nor double it.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from app.core.fingerprint import fingerprint
from app.core.heartbeats import labels as missing_labels
from app.ops.clock import ManualClock
from app.ops.metrics import Metrics
from app.store.engine import Database
from app.sweeper.loop import Sweeper
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.sinks import FakePagerDuty, WebhookSink, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"
WATCHDOG = {"alertname": "Watchdog", "cluster": "prod", "severity": "none"}
MISSING_FP = fingerprint(missing_labels("prod-am"))


def config(pd_url: str, chat_url: str, receiver: str = "", escalate: str = "") -> str:
    return f"""
delivery: {{timeout: 2s, lease: 10s}}
dedup: {{renotify_interval: 0}}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
heartbeats:
  - name: prod-am
    matchers: ['alertname="Watchdog"', 'cluster="prod"']
    interval: 10m
    {f"receiver: {receiver}" if receiver else ""}
route:
  receiver: chat
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: blackhole
    - matchers: ['severity="critical"']
      receiver: page
      {f"escalate: {escalate}" if escalate else ""}
receivers:
  - name: blackhole
  - name: chat
    webhook_configs: [{{url: "{chat_url}/chat"}}]
  - name: manager
    webhook_configs: [{{url: "{chat_url}/manager"}}]
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


Setup = tuple[Starlette, httpx.AsyncClient, FakePagerDuty, WebhookSink, ManualClock]


@asynccontextmanager
async def sinks() -> AsyncIterator[tuple[FakePagerDuty, WebhookSink, str, str]]:
    pd, chat = FakePagerDuty(), WebhookSink()
    with serve(pd) as pd_url, serve(chat) as chat_url:
        yield pd, chat, pd_url, chat_url


async def watchdog(client: httpx.AsyncClient, labels: dict[str, str] = WATCHDOG) -> None:
    alert = am_alert(labels, starts_at=T0 - timedelta(days=1))
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def tick(app: Starlette, clock: ManualClock, when: datetime) -> Any:
    clock.set(when)
    result = await app.state.services.sweeper.sweep_once()
    await app.state.services.sweeper.refresh_gauges()
    async with asyncio.timeout(20):
        await app.state.services.delivery.drain()
    return result


async def heartbeat(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/heartbeats")
    assert r.status_code == 200
    (hb,) = r.json()["heartbeats"]
    return dict(hb)


async def test_missing_heartbeat_fires_through_the_normal_path_and_resolves(db_url: str) -> None:
    clock = ManualClock(T0)
    async with sinks() as (pd, chat, pd_url, chat_url):
        async with running_app(db_url, config(pd_url, chat_url), clock=clock) as (app, client):
            await tick(app, clock, T0)
            hb = await heartbeat(client)
            assert hb["last_seen"] is None and not hb["missing"] and hb["age_s"] == 0
            # Proof of life at 1 and (a repeat, a duplicate alert) at 5 minutes.
            clock.set(T0 + timedelta(minutes=1))
            await watchdog(client)
            clock.set(T0 + timedelta(minutes=5))
            await watchdog(client)
            # An alert that does not match proves nothing.
            await watchdog(client, {**WATCHDOG, "cluster": "staging"})
            result = await tick(app, clock, T0 + timedelta(minutes=14, seconds=59))
            assert result.heartbeats == 0 and pd.requests() == []
            hb = await heartbeat(client)
            assert hb["last_seen"].startswith("2026-11-21T19:21:43")  # T0 + 5m
            assert hb["age_s"] == 599
            metrics = (await client.get("/metrics")).text
            assert 'alertrelay_heartbeat_age_seconds{name="prod-am"} 599.0' in metrics

            # 10 minutes without proof: HeartbeatMissing, critical, pages.
            result = await tick(app, clock, T0 + timedelta(minutes=15))
            assert result.heartbeats == 1
            hb = await heartbeat(client)
            assert hb["missing"] and hb["missing_since"].startswith("2026-11-21T19:31:43")
            (incident,) = pd.open_incidents()
            trigger = incident["events"][0]
            assert trigger["payload"]["summary"].startswith(
                "[FIRING] HeartbeatMissing (critical): No heartbeat 'prod-am' for 10m"
            )
            assert trigger["payload"]["custom_details"]["labels"] == missing_labels("prod-am")
            assert {"href": "https://runbooks.example.com/heartbeatmissing", "text": "Runbook"} in (
                trigger["links"]
            )
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
            assert alert["status"] == "firing"
            # More sweeps: no second notification.
            for minute in (16, 30, 60):
                result = await tick(app, clock, T0 + timedelta(minutes=minute))
                assert result.heartbeats == 0
            assert len(pd.requests()) == 1

            # The Watchdog is back: resolved (the ingest wakes the sweeper).
            clock.set(T0 + timedelta(minutes=61))
            await watchdog(client)
            result = await tick(app, clock, T0 + timedelta(minutes=61))
            assert result.heartbeats == 1
            assert pd.open_incidents() == [] and pd.dropped == []
            assert not (await heartbeat(client))["missing"]
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
            assert alert["status"] == "resolved"
            assert [t["to"] for t in alert["transitions"]] == ["resolved", "firing"]  # newest first
    assert chat.requests() == []  # routed by its labels: critical → page, not chat


async def test_heartbeat_missing_escalates_and_is_acknowledged_like_any_alert(
    db_url: str,
) -> None:
    """HeartbeatMissing lives the life of any occurrence: nobody acks it, so
    its route's first step fires; an ack reaches PagerDuty and holds the next
    step; the heartbeat's return resolves it, ends the ack and closes every
    incident it opened."""
    clock = ManualClock(T0)
    steps = "[{after: 15m, receiver: chat}, {after: 45m, receiver: manager}]"
    async with sinks() as (pd, chat, pd_url, chat_url):
        cfg = config(pd_url, chat_url, escalate=steps)
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            await tick(app, clock, T0)
            assert (await tick(app, clock, T0 + timedelta(minutes=10))).heartbeats == 1
            assert len(pd.open_incidents()) == 1 and chat.requests() == []
            # Missing since 10 minutes; 15 minutes later, unacknowledged: escalated.
            assert (await tick(app, clock, T0 + timedelta(minutes=24))).escalations == 0
            assert (await tick(app, clock, T0 + timedelta(minutes=25))).escalations == 1
            [note] = chat.requests()
            assert (note.path, note.json()["kind"]) == ("/chat", "escalation")
            assert note.json()["alertname"] == "HeartbeatMissing"
            assert note.json()["text"].startswith("Escalated: firing for 15m, notified: page")

            clock.set(T0 + timedelta(minutes=30))
            r = await client.post(f"/api/v1/alerts/{MISSING_FP}/ack", json={"by": "dana"})
            assert r.status_code == 200 and r.json()["notifications"] == 1, r.text
            # The manager's step (55 minutes) is held by the ack.
            assert (await tick(app, clock, T0 + timedelta(minutes=60))).escalations == 0
            assert [e["event_action"] for e in pd.open_incidents()[0]["events"]] == [
                "trigger",
                "acknowledge",
            ]

            clock.set(T0 + timedelta(minutes=61))
            await watchdog(client)
            assert (await tick(app, clock, clock.now())).heartbeats == 1
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
            assert alert["status"] == "resolved" and alert["ack"] is None
            assert [a["action"] for a in alert["acks"]] == ["ended", "ack"]
    assert pd.open_incidents() == [] and pd.dropped == []
    assert [(r.path, r.json()["kind"]) for r in chat.requests()] == [
        ("/chat", "escalation"),
        ("/chat", "resolved"),
    ]


async def test_a_heartbeat_receiver_overrides_routing(db_url: str) -> None:
    clock = ManualClock(T0)
    async with sinks() as (pd, chat, pd_url, chat_url):
        cfg = config(pd_url, chat_url, receiver="chat")
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            await tick(app, clock, T0)
            await tick(app, clock, T0 + timedelta(minutes=10))
    assert [r.json()["alertname"] for r in chat.requests()] == ["HeartbeatMissing"]
    assert pd.requests() == []


async def test_a_heartbeat_receiver_keeps_the_escalation_of_the_route_its_labels_match(
    db_url: str,
) -> None:
    """``receiver`` changes where HeartbeatMissing goes, nothing else: its
    labels (severity critical) match the critical route, so that route's
    escalation step applies to it."""
    clock = ManualClock(T0)
    async with sinks() as (pd, chat, pd_url, chat_url):
        cfg = config(
            pd_url, chat_url, receiver="chat", escalate="[{after: 15m, receiver: manager}]"
        )
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            await tick(app, clock, T0)
            assert (await tick(app, clock, T0 + timedelta(minutes=10))).heartbeats == 1
            assert (await tick(app, clock, T0 + timedelta(minutes=25))).escalations == 1
    assert pd.requests() == []
    assert [(r.path, r.json()["kind"]) for r in chat.requests()] == [
        ("/chat", "firing"),
        ("/manager", "escalation"),
    ]
    assert chat.requests()[1].json()["text"].startswith("Escalated: firing for 15m, notified: chat")


async def test_a_heartbeat_that_keeps_dropping_out_flaps_like_any_alert(db_url: str) -> None:
    """A Watchdog that comes and goes makes HeartbeatMissing fire and resolve
    again and again, and flap detection applies to it as to any alert: at its
    6th transition (a resolve) it is flapping, a flapping notice holds the
    PagerDuty incident open instead of resolving it, and the transitions after
    it are suppressed."""
    clock = ManualClock(T0)
    async with sinks() as (pd, _chat, pd_url, chat_url):
        async with running_app(db_url, config(pd_url, chat_url), clock=clock) as (app, client):
            await tick(app, clock, T0)
            last_proof = T0
            for _ in range(4):
                # Missing 10 minutes after the last proof, back one minute later.
                assert (await tick(app, clock, last_proof + timedelta(minutes=10))).heartbeats == 1
                last_proof += timedelta(minutes=11)
                clock.set(last_proof)
                await watchdog(client)
                assert (await tick(app, clock, last_proof)).heartbeats == 1
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
    assert alert["status"] == "resolved"
    assert alert["flap"]["flapping"] and alert["flap"]["transitions"] == 8, alert["flap"]
    oldest_first = [t.get("suppressed") for t in reversed(alert["transitions"])]
    assert oldest_first == [None] * 5 + ["flapping"] * 3
    assert [(i["open"], [e["event_action"] for e in i["events"]]) for i in pd.all_incidents()] == [
        (False, ["trigger", "resolve"]),
        (False, ["trigger", "resolve"]),
        (True, ["trigger", "trigger"]),  # the 5th transition, then the flapping notice
    ]
    assert pd.dropped == []


async def test_restart_keeps_the_heartbeat_clock(db_url: str) -> None:
    """A restart does not raise a false alarm for a fresh heartbeat, and does
    fire for one that went missing while alertrelay was down."""
    async with sinks() as (pd, _chat, pd_url, chat_url):
        cfg = config(pd_url, chat_url)
        clock = ManualClock(T0)
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            await tick(app, clock, T0)
            await watchdog(client)
        # Back 5 minutes later: fresh, no alarm.
        clock = ManualClock(T0 + timedelta(minutes=5))
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            result = await tick(app, clock, clock.now())
            assert result.heartbeats == 0
            assert (await heartbeat(client))["watched_since"].startswith("2026-11-21T19:16:43")
        # Down for an hour meanwhile, and Alertmanager died too: fires at once,
        # with the time it went missing.
        clock = ManualClock(T0 + timedelta(hours=1))
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            result = await tick(app, clock, clock.now())
            assert result.heartbeats == 1
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
            assert alert["starts_at"].startswith("2026-11-21T19:26:43")  # T0 + 10m
    assert len(pd.open_incidents()) == 1


async def test_a_heartbeat_never_seen_starts_its_clock_at_startup(db_url: str) -> None:
    async with sinks() as (pd, _chat, pd_url, chat_url):
        clock = ManualClock(T0)
        async with running_app(db_url, config(pd_url, chat_url), clock=clock) as (app, client):
            assert (await tick(app, clock, T0 + timedelta(minutes=9))).heartbeats == 0
            assert (await tick(app, clock, T0 + timedelta(minutes=18))).heartbeats == 0
            assert (await tick(app, clock, T0 + timedelta(minutes=19))).heartbeats == 1
            hb = await heartbeat(client)
            assert hb["last_seen"] is None and hb["missing"]


async def test_two_replicas_fire_heartbeat_missing_once(db_url: str) -> None:
    """Two sweepers with engines of their own (as two replicas have) sweep at
    the same moments: one HeartbeatMissing transition each way, one set of
    notifications."""
    async with sinks() as (pd, _chat, pd_url, chat_url):
        cfg = config(pd_url, chat_url)
        clock = ManualClock(T0)
        async with running_app(db_url, cfg, clock=clock) as (app, client):
            services = app.state.services
            other_db = Database(db_url, busy_timeout_s=10)
            other = Sweeper(other_db, services.runtime, clock, Metrics())
            try:
                await tick(app, clock, T0)
                clock.set(T0 + timedelta(minutes=10))
                sweepers = (services.sweeper, other, services.sweeper, other)
                results = await asyncio.gather(*(s.sweep_once() for s in sweepers))
                assert sum(r.heartbeats for r in results) == 1, results
                await watchdog(client)
                results = await asyncio.gather(*(s.sweep_once() for s in sweepers))
                assert sum(r.heartbeats for r in results) == 1, results
            finally:
                await other_db.dispose()
            async with asyncio.timeout(20):
                await services.delivery.drain()
    rows = [r for r in table_rows(db_url, "alert_transitions") if r["fingerprint"] == MISSING_FP]
    assert sorted(r["to_status"] for r in rows) == ["firing", "resolved"]
    assert count(db_url, "notifications") == 2
    assert [e["event_action"] for i in pd.all_incidents() for e in i["events"]] == [
        "trigger",
        "resolve",
    ]


async def test_unwatched_heartbeat_resolves(db_url: str) -> None:
    """A heartbeat removed from the config while missing resolves its alert."""
    async with sinks() as (pd, _chat, pd_url, chat_url):
        clock = ManualClock(T0)
        async with running_app(db_url, config(pd_url, chat_url), clock=clock) as (app, _):
            await tick(app, clock, T0)
            assert (await tick(app, clock, T0 + timedelta(minutes=10))).heartbeats == 1
        without = config(pd_url, chat_url).split("heartbeats:")[0] + (
            "route:" + config(pd_url, chat_url).split("route:", 1)[1]
        )
        async with running_app(db_url, without, clock=clock) as (app, client):
            assert (await tick(app, clock, T0 + timedelta(minutes=11))).heartbeats == 1
            assert (await client.get("/api/v1/heartbeats")).json()["heartbeats"] == []
            alert = (await client.get(f"/api/v1/alerts/{MISSING_FP}")).json()
            assert alert["status"] == "resolved"
            assert (await tick(app, clock, T0 + timedelta(minutes=12))).heartbeats == 0
    assert pd.open_incidents() == [] and pd.dropped == []
