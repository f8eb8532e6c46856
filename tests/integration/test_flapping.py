"""Flap detection through ingest, the sweeper and delivery, on SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.core.fingerprint import fingerprint
from app.core.flapping import FlapParams, FlapState, add_transitions, score_at
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import FakePagerDuty, WebhookSink, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"
LABELS = {"alertname": "Flappy", "severity": "critical", "instance": "db-1"}


def config(pd_url: str, chat_url: str, flapping: str = "") -> str:
    return f"""
{flapping}
delivery: {{timeout: 2s, lease: 10s}}
route:
  receiver: page
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: page
      flapping: {{enabled: false}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
    webhook_configs: [{{url: "{chat_url}/chat"}}]
"""


@asynccontextmanager
async def flap_setup(
    db_url: str, flapping: str = ""
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakePagerDuty, WebhookSink, ManualClock]]:
    pd, chat = FakePagerDuty(), WebhookSink()
    clock = ManualClock(T0)
    with serve(pd) as pd_url, serve(chat) as chat_url:
        async with running_app(db_url, config(pd_url, chat_url, flapping), clock=clock) as (
            app,
            client,
        ):
            yield app, client, pd, chat, clock


async def toggle(
    client: httpx.AsyncClient,
    app: Starlette,
    clock: ManualClock,
    i: int,
    labels: dict[str, str] = LABELS,
) -> None:
    """Transition i (0-based) of an alert toggling every 5 minutes from T0."""
    clock.set(T0 + timedelta(minutes=5 * i))
    occurrence = T0 + timedelta(minutes=10 * (i // 2))
    if i % 2 == 0:
        alert = am_alert(labels, starts_at=occurrence)
    else:
        alert = am_alert(labels, status="resolved", starts_at=occurrence, ends_at=clock.now())
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200
    await deliver(app)


async def deliver(app: Starlette) -> None:
    async with asyncio.timeout(20):
        await app.state.services.delivery.drain()


async def sweep_until_stable(
    app: Starlette, clock: ManualClock, chat: WebhookSink, limit_minutes: int = 120
) -> float:
    started = clock.now()
    for _ in range(limit_minutes * 2):
        clock.advance(30)
        await app.state.services.sweeper.sweep_once()
        await deliver(app)
        if chat.bodies() and chat.bodies()[-1]["kind"] == "stable":
            return (clock.now() - started).total_seconds() / 60
    raise AssertionError("the flap never calmed down")


async def test_flap_lifecycle_one_notice_silence_one_notice(db_url: str) -> None:
    async with flap_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(8):
            await toggle(client, app, clock, i)
            firing = i % 2 == 0
            # At every step: an incident is open exactly while the alert fires,
            # or while it flaps (the flapping notice holds one open).
            flapping = i >= 4
            assert (len(pd.open_incidents()) == 1) == (firing or flapping), i
            if i == 5:
                listed = (await client.get("/api/v1/alerts?state=flapping")).json()["alerts"]
                assert [a["alertname"] for a in listed] == ["Flappy"] and listed[0]["flap"][
                    "score"
                ] > 4
                assert "alertrelay_alerts_flapping 1.0" in (await client.get("/metrics")).text
        kinds = [b["kind"] for b in chat.bodies()]
        assert kinds == ["firing", "resolved", "firing", "resolved", "flapping"]
        flap_note = chat.bodies()[-1]
        assert flap_note["title"].startswith("[FLAPPING] Flappy (critical): 5 transitions")
        minutes = await sweep_until_stable(app, clock, chat)
        # The last transition was at 35 min, with a score of 5.528: calm 56.5
        # minutes later (within one 30 s sweep), counted here from 35 min.
        assert 56.5 <= minutes <= 57.0
        assert "alertrelay_alerts_flapping 0.0" in (await client.get("/metrics")).text
        detail = (await client.get("/api/v1/alerts")).json()["alerts"][0]
    assert [b["kind"] for b in chat.bodies()] == [
        "firing",
        "resolved",
        "firing",
        "resolved",
        "flapping",
        "stable",
    ]
    stable = chat.bodies()[-1]
    assert stable["status"] == "resolved" and stable["title"].startswith(
        "[STABLE, RESOLVED] Flappy"
    )
    assert stable["text"].startswith("Flappy stopped flapping after 8 transitions and is resolved.")
    assert pd.open_incidents() == [] and pd.dropped == []  # nothing left open for a resolved alert
    pd_kinds = [
        (e["event_action"], e.get("payload", {}).get("summary", "")[:10])
        for i in pd.all_incidents()
        for e in i["events"]
    ]
    assert [a for a, _ in pd_kinds] == [
        "trigger",
        "resolve",
        "trigger",
        "resolve",
        "trigger",
        "resolve",
    ]
    assert "FLAPPING" in pd.all_incidents()[2]["events"][0]["payload"]["summary"]
    transitions = table_rows(db_url, "alert_transitions")
    assert [t["suppressed"] for t in transitions] == [None] * 4 + ["flapping"] * 4
    assert detail["flap"]["flapping"] is False and detail["status"] == "resolved"


async def test_flap_that_ends_firing_keeps_the_incident_open(db_url: str) -> None:
    async with flap_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(7):
            await toggle(client, app, clock, i)
        await sweep_until_stable(app, clock, chat)
        assert chat.bodies()[-1]["kind"] == "stable" and chat.bodies()[-1]["status"] == "firing"
        # Still firing after the flap: its incident stays open...
        assert len(pd.open_incidents()) == 1
        # ...until the alert really resolves, which closes that same incident.
        await client.post(
            "/webhook/alertmanager",
            content=body(
                am_webhook(
                    [
                        am_alert(
                            LABELS,
                            status="resolved",
                            starts_at=T0 + timedelta(minutes=30),
                            ends_at=clock.now(),
                        )
                    ]
                )
            ),
            headers=JSON,
        )
        await deliver(app)
    assert pd.open_incidents() == [] and pd.dropped == []
    assert [b["kind"] for b in chat.bodies()][-2:] == ["stable", "resolved"]


async def test_route_override_turns_flapping_off(db_url: str) -> None:
    watchdog = {"alertname": "Watchdog", "severity": "none"}
    async with flap_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(10):
            await toggle(client, app, clock, i, watchdog)
        assert (await client.get("/api/v1/alerts?state=flapping")).json()["alerts"] == []
    assert [b["kind"] for b in chat.bodies()] == ["firing", "resolved"] * 5
    assert {t["suppressed"] for t in table_rows(db_url, "alert_transitions")} == {None}


async def test_resolved_never_seen_firing_counts_two_transitions(db_url: str) -> None:
    async with flap_setup(db_url, "flapping: {enter_score: 2.5}") as (app, client, pd, chat, clock):
        clock.set(T0 + timedelta(minutes=1))
        alert = am_alert(LABELS, status="resolved", starts_at=T0, ends_at=clock.now())
        await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
        detail = (await client.get("/api/v1/alerts")).json()["alerts"][0]
        assert 1.9 < detail["flap"]["score"] <= 2.0


def p5_events(labels: dict[str, str]) -> list[tuple[dict[str, Any], datetime]]:
    """250 firing/resolved episodes of one alert, 2 minutes apart: 500 transitions."""
    events: list[tuple[dict[str, Any], datetime]] = []
    for k in range(250):
        start = T0 + timedelta(minutes=2 * k)
        end = start + timedelta(minutes=1)
        events.append((am_alert(labels, starts_at=start), start))
        events.append((am_alert(labels, status="resolved", starts_at=start, ends_at=end), end))
    return events


@pytest.mark.postgres
async def test_db_p5_two_replicas_no_lost_update(db_url: str) -> None:
    """Every one of 500 transitions of one alert posted to two replicas at the
    same moment; then two alerts' transitions interleaved across both: the
    serial score, exactly, and one transition row per event."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL")
    flapping = "flapping: {half_life: 1h, enter_score: 999, exit_score: 1, max_score: 1000}"
    clock = ManualClock(T0 + timedelta(days=1))
    text = "route: {receiver: r}\nreceivers: [{name: r}]\n" + flapping
    one = p5_events(LABELS)
    x_labels, y_labels = {**LABELS, "instance": "db-x"}, {**LABELS, "instance": "db-y"}
    xs, ys = p5_events(x_labels), p5_events(y_labels)

    async def send(client: httpx.AsyncClient, alert: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def outcomes(results: list[dict[str, Any]]) -> tuple[int, int]:
        return sum(r["transitions"] for r in results), sum(
            r["duplicates"] + r["stale"] for r in results
        )

    async with (
        running_app(db_url, text, clock=clock) as (_, a),
        running_app(db_url, text, clock=clock) as (_, b),
    ):
        # Phase 1: each event reaches both replicas at once, as from an HA
        # Alertmanager pair; one of them applies it, the other sees a duplicate.
        for i, (alert, _) in enumerate(one):
            results = await asyncio.gather(send(a, alert), send(b, alert))
            assert outcomes(list(results)) == (1, 1), (i, results)
        # Phase 2: two alerts at once, each replica getting both alerts'
        # events in opposite orders, every event still raced by both.
        for i, ((x, _), (y, _)) in enumerate(zip(xs, ys, strict=True)):
            results = await asyncio.gather(send(a, x), send(b, y), send(b, x), send(a, y))
            assert outcomes(list(results)) == (2, 2), (i, results)

    rows = {r["fingerprint"]: r for r in table_rows(db_url, "alerts", "fingerprint")}
    transitions = table_rows(db_url, "alert_transitions")
    params = FlapParams(half_life_s=3600, enter_score=999, exit_score=1, max_score=1000)
    at = T0 + timedelta(days=1)
    assert len(rows) == 3 and len(transitions) == 1500
    for labels, events in ((LABELS, one), (x_labels, xs), (y_labels, ys)):
        fp = fingerprint(labels)
        assert sum(1 for t in transitions if t["fingerprint"] == fp) == 500
        serial = add_transitions(FlapState(), [when for _, when in events], params)
        row = rows[fp]
        stored = FlapState(row["flap_score"], row["flap_score_at"], row["flapping"])
        assert score_at(stored, at, params) == pytest.approx(
            score_at(serial, at, params), rel=1e-12
        )
