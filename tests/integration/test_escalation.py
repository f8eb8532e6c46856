"""Escalation through ingest, the sweeper and delivery, on SQLite and PostgreSQL.

A critical alert pages ``page``; nobody acknowledges it; after 15 minutes
``second`` is told (an incident of its own at PagerDuty) and after 45
``manager``; the resolve closes every incident that was opened. Several
sweepers at once, in processes of their own, take each step exactly once.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from app.core.escalation import escalation_key
from app.core.fingerprint import fingerprint
from app.core.notices import incident_key
from app.ops.clock import ManualClock, SystemClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.sinks import FakePagerDuty, WebhookSink, serve

ROOT = Path(__file__).resolve().parents[2]
KEY_PAGE = "PAGEKEY0123456789abcdef012345678"
KEY_SECOND = "SECONDKEY0123456789abcdef0123456"
LABELS = {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"}
FP = fingerprint(LABELS)
K0 = incident_key(FP, T0)


def config(pd_url: str, chat_url: str, after: tuple[str, str] = ("15m", "45m")) -> str:
    pd = f'url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}'
    return f"""
delivery: {{timeout: 2s, lease: 10s}}
dedup: {{renotify_interval: 0}}
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      escalate:
        - after: {after[0]}
          receiver: second
        - after: {after[1]}
          receiver: manager
receivers:
  - name: chat
    webhook_configs: [{{url: "{chat_url}/chat"}}]
  - name: page
    pagerduty_configs: [{{routing_key: {KEY_PAGE}, {pd}}}]
    webhook_configs: [{{url: "{chat_url}/page"}}]
  - name: second
    pagerduty_configs: [{{routing_key: {KEY_SECOND}, {pd}}}]
    webhook_configs: [{{url: "{chat_url}/second"}}]
  - name: manager
    webhook_configs: [{{url: "{chat_url}/manager"}}]
"""


Setup = tuple[Starlette, httpx.AsyncClient, FakePagerDuty, WebhookSink, ManualClock]


@asynccontextmanager
async def escalation_setup(db_url: str) -> AsyncIterator[Setup]:
    pd, chat = FakePagerDuty(), WebhookSink()
    clock = ManualClock(T0)
    with serve(pd) as pd_url, serve(chat) as chat_url:
        async with running_app(db_url, config(pd_url, chat_url), clock=clock) as (app, client):
            yield app, client, pd, chat, clock


async def post(client: httpx.AsyncClient, alert: dict[str, Any]) -> None:
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def tick(app: Starlette, clock: ManualClock, when: datetime) -> Any:
    clock.set(when)
    result = await app.state.services.sweeper.sweep_once()
    async with asyncio.timeout(20):
        await app.state.services.delivery.drain()
    return result


def paths(chat: WebhookSink) -> list[tuple[str, str]]:
    return [(r.path, r.json()["kind"]) for r in chat.requests()]


async def test_unacknowledged_alert_escalates_once_per_step_and_the_resolve_closes_all(
    db_url: str,
) -> None:
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        await post(client, am_alert(LABELS, starts_at=T0))
        await tick(app, clock, T0 + timedelta(seconds=1))
        assert paths(chat) == [("/page", "firing")]
        assert [i["routing_key"] for i in pd.open_incidents()] == [KEY_PAGE]

        # 14 minutes: nothing due yet.
        result = await tick(app, clock, T0 + timedelta(minutes=14))
        assert result.escalations == 0 and len(chat.requests()) == 1

        # 16 minutes: "second" is told, once, however often the sweeper runs.
        for _ in range(3):
            await tick(app, clock, T0 + timedelta(minutes=16))
        assert paths(chat) == [("/page", "firing"), ("/second", "escalation")]
        note = chat.requests()[-1].json()
        assert note["title"].startswith("[ESCALATED] DiskFull (critical)")
        assert note["text"].startswith("Escalated: firing for 16m, notified: page")
        opened = {i["routing_key"]: i["dedup_key"] for i in pd.open_incidents()}
        assert opened == {KEY_PAGE: K0, KEY_SECOND: escalation_key(K0, "second")}
        trigger = pd.open_incidents()[1]["events"][0]
        assert trigger["event_action"] == "trigger"
        assert trigger["payload"]["custom_details"]["escalation"]["notified"] == ["page"]

        # 46 minutes: the manager, told that page and second were told before.
        await tick(app, clock, T0 + timedelta(minutes=46))
        assert paths(chat)[-1] == ("/manager", "escalation")
        assert "notified: page, second" in chat.requests()[-1].json()["text"]
        metrics = (await client.get("/metrics")).text
        assert 'alertrelay_escalations_total{receiver="second"} 1.0' in metrics
        escalation = (await client.get(f"/api/v1/alerts/{FP}")).json()["escalation"]
        assert escalation["escalated_to"] == ["second", "manager"]
        assert escalation["next_step_at"] is None and escalation["since"] == "2026-11-21T19:16:43Z"
        assert [(s["receiver"], s["step"]) for s in escalation["steps"]] == [
            ("manager", 1),
            ("second", 0),
        ]
        assert 'alertrelay_escalations_total{receiver="manager"} 1.0' in metrics

        # The resolve reaches the routed receiver and everyone escalated to.
        clock.set(T0 + timedelta(minutes=50))
        await post(client, am_alert(LABELS, status="resolved", starts_at=T0, ends_at=clock.now()))
        await tick(app, clock, T0 + timedelta(minutes=50))
        assert sorted(paths(chat)[-3:]) == [
            ("/manager", "resolved"),
            ("/page", "resolved"),
            ("/second", "resolved"),
        ]
        assert pd.open_incidents() == [] and pd.dropped == [] and pd.rejected == []
        assert len(pd.all_incidents()) == 2
        # Nothing more once resolved.
        result = await tick(app, clock, T0 + timedelta(hours=3))
        assert result.escalations == 0
    steps = table_rows(db_url, "alert_escalations")
    assert [(s["receiver"], s["step"], s["incident_key"]) for s in steps] == [
        ("second", 0, K0),
        ("manager", 1, K0),
    ]
    assert count(db_url, "notifications", "kind = 'escalation'") == 3  # 2 + 1 integrations


async def flap_transition(
    app: Starlette, client: httpx.AsyncClient, clock: ManualClock, i: int
) -> None:
    """The ``i``-th transition of a flap: fire and resolve every 2 minutes from
    T0, each fire a new occurrence; then a sweep."""
    clock.set(T0 + timedelta(minutes=2 * i))
    occurrence = T0 + timedelta(minutes=4 * (i // 2))
    if i % 2 == 0:
        alert = am_alert(LABELS, starts_at=occurrence)
    else:
        alert = am_alert(LABELS, status="resolved", starts_at=occurrence, ends_at=clock.now())
    await post(client, alert)
    await tick(app, clock, clock.now())


async def test_a_flapping_alert_escalates_while_its_flap_holds_the_incident_open(
    db_url: str,
) -> None:
    """Flapping counts as firing: the flap holds one incident open, and the
    clock runs from the occurrence that opened it; the flap's re-fires (new
    occurrences) do not restart it. Incidents closed before the flap began
    (a fire and a resolve each) do not count."""
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(10):
            await flap_transition(app, client, clock, i)
        # The 5th transition (a fire at 8 minutes) began the flap and holds its incident.
        assert [k for _p, k in paths(chat)] == [
            "firing",
            "resolved",
            "firing",
            "resolved",
            "flapping",
        ]
        detail = (await client.get("/api/v1/alerts")).json()["alerts"][0]
        assert detail["flap"]["flapping"] and detail["status"] == "resolved"
        held = incident_key(FP, T0 + timedelta(minutes=8))
        await tick(app, clock, T0 + timedelta(minutes=22))
        assert paths(chat)[-1] == ("/page", "flapping")
        # 15 minutes after it opened, resolved at this instant but flapping:
        # escalated, as firing.
        await tick(app, clock, T0 + timedelta(minutes=24))
        assert paths(chat)[-1] == ("/second", "escalation")
        assert "Escalated: flapping for 16m" in chat.requests()[-1].json()["text"]
        assert escalation_key(held, "second") in [i["dedup_key"] for i in pd.open_incidents()]
        # The flap calms down while resolved: the stable notice closes both incidents.
        for minute in range(25, 300, 5):
            await tick(app, clock, T0 + timedelta(minutes=minute))
            if paths(chat)[-1][1] == "stable":
                break
        assert pd.open_incidents() == [] and pd.dropped == []
        assert ("/second", "stable") in paths(chat)
        # manager's step (45 minutes) fell inside the flap too.
        assert ("/manager", "escalation") in paths(chat)
        assert ("/manager", "stable") in paths(chat)


async def test_an_ack_given_during_a_flap_holds_the_steps_through_its_re_fires(
    db_url: str,
) -> None:
    """Flapping, ack and escalation together: the ack covers the incident the
    flap holds, so the flap's re-fires (each a new startsAt) neither end it
    nor let a step fire; an un-ack lets every step that fell due meanwhile
    fire at once, on the clock of the incident the flap opened (not restarted
    by the re-fires)."""
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        for i in range(10):
            await flap_transition(app, client, clock, i)
        assert paths(chat)[-1] == ("/page", "flapping")  # the flap began at 8 minutes
        clock.set(T0 + timedelta(minutes=19))
        await ack(client, {"by": "erin", "comment": "flaky probe"})
        # The flap goes on past both steps' times (23 and 53 minutes): its
        # re-fires keep the ack, and no step is taken.
        for i in range(10, 30):
            await flap_transition(app, client, clock, i)
            state = (await client.get(f"/api/v1/alerts/{FP}")).json()
            assert state["flap"]["flapping"] and state["ack"]["by"] == "erin", i
        assert [k for p, k in paths(chat) if k == "escalation"] == []
        assert [a for a, _ in pd.order].count("acknowledge") == 1
        assert [(r["action"], r["actor"]) for r in table_rows(db_url, "alert_acks")] == [
            ("ack", "erin")
        ]
        # Un-acked at 59 minutes: both steps are overdue and fire at the next
        # sweep, as flapping, timed from the incident the flap opened at 8 minutes.
        clock.set(T0 + timedelta(minutes=59))
        r = await client.delete(f"/api/v1/alerts/{FP}/ack")
        assert r.status_code == 200, r.text
        result = await tick(app, clock, clock.now())
        assert result.escalations == 2
        told = [r.json() for r in chat.requests() if r.json()["kind"] == "escalation"]
        assert sorted(r.path for r in chat.requests() if r.json()["kind"] == "escalation") == [
            "/manager",
            "/second",
        ]
        assert all(t["text"].startswith("Escalated: flapping for 51m") for t in told), told


async def test_escalation_of_an_alert_already_old_when_first_seen(db_url: str) -> None:
    """An alert that began an hour before alertrelay saw it is overdue for both
    steps: both are taken at the first sweep."""
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        clock.set(T0 + timedelta(hours=1))
        await post(client, am_alert(LABELS, starts_at=T0))
        await tick(app, clock, clock.now())
        assert sorted(paths(chat)) == [
            ("/manager", "escalation"),
            ("/page", "firing"),
            ("/second", "escalation"),
        ]


# --- several sweepers at once ------------------------------------------------

N_ALERTS = 60


def _two_sweeper_config(path: Path) -> Path:
    cfg = path / "sweepers.yml"
    cfg.write_text(
        """
dedup: {renotify_interval: 0}
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      escalate:
        - {after: 1s, receiver: second}
        - {after: 2s, receiver: manager}
receivers:
  - name: chat
    log_configs: [{}]
  - name: page
    log_configs: [{}]
  - name: second
    log_configs: [{}, {stream: stderr}]
  - name: manager
    log_configs: [{}]
"""
    )
    return cfg


async def _seed(db_url: str, cfg: Path) -> None:
    """N critical alerts that began an hour ago: every step is due at once."""
    began = datetime.now(UTC) - timedelta(hours=1)
    alerts = [am_alert({**LABELS, "instance": f"db-{i}"}, starts_at=began) for i in range(N_ALERTS)]
    async with running_app(db_url, cfg.read_text(), clock=SystemClock()) as (_app, client):
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
        )
        assert r.status_code == 200


def _sweepers(
    db_url: str,
    cfg: Path,
    n: int,
    seconds: float,
    env: dict[str, str] | None = None,
    lead: float = 0.0,
) -> tuple[float, list[subprocess.Popen[str]]]:
    """Start ``n`` sweeper processes; returns when they begin (Unix time) and them."""
    # All begin together, once every interpreter is up.
    start = time.time() + 2.0 + lead
    return start, [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.sweeper_process",
                db_url,
                str(cfg),
                str(start),
                str(seconds),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for _ in range(n)
    ]


def _results(procs: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


async def test_two_sweeper_processes_take_each_step_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    """Alerts keep arriving while two sweeper processes run, so their steps
    fall due one after another and both sweepers compete for them."""
    cfg = _two_sweeper_config(tmp_path)
    start, procs = _sweepers(db_url, cfg, 2, 6.0, lead=1.0)
    async with running_app(db_url, cfg.read_text(), clock=SystemClock()) as (_app, client):
        await asyncio.sleep(max(start - time.time(), 0))
        for batch in range(N_ALERTS // 5):  # 5 alerts every 100 ms for 1.2 s
            alerts = [
                am_alert({**LABELS, "instance": f"db-{batch}-{i}"}, starts_at=datetime.now(UTC))
                for i in range(5)
            ]
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )
            assert r.status_code == 200
            await asyncio.sleep(0.1)
    results = _results(procs)
    steps = N_ALERTS * 2
    # Together they took every step once: 2 steps per alert; second has two
    # integrations, manager one.
    assert sum(r["escalations"] for r in results) == steps, results
    assert sum(r["notifications"] for r in results) == N_ALERTS * 3, results
    # Both swept all along (which one wins each step is a race; the sum is
    # what must be exact). The split is printed for the record.
    assert all(r["sweeps"] > 10 for r in results), results
    assert count(db_url, "alert_escalations") == steps
    assert count(db_url, "notifications", "kind = 'escalation'") == N_ALERTS * 3
    print(f"two sweepers on {db_url.split(':')[0]}: {results}")


async def test_a_sweeper_killed_mid_escalation_loses_and_doubles_nothing(
    db_url: str, tmp_path: Path
) -> None:
    cfg = _two_sweeper_config(tmp_path)
    await _seed(db_url, cfg)
    _start, (killed,) = _sweepers(
        db_url, cfg, 1, 3.0, env={"ALERTRELAY_FAILPOINT": "escalation_before_commit"}
    )
    killed.communicate(timeout=60)
    assert killed.returncode == -9
    assert count(db_url, "alert_escalations") == 0  # its transaction died with it
    assert count(db_url, "notifications", "kind = 'escalation'") == 0
    (survivor,) = _results(_sweepers(db_url, cfg, 1, 1.0)[1])
    assert survivor["escalations"] == N_ALERTS * 2
    assert count(db_url, "alert_escalations") == N_ALERTS * 2
    assert count(db_url, "notifications", "kind = 'escalation'") == N_ALERTS * 3
    print(f"killed sweeper on {db_url.split(':')[0]}: exit -9, 0 rows; survivor: {survivor}")


# --- acknowledgement ---------------------------------------------------------


async def ack(client: httpx.AsyncClient, body_: dict[str, Any]) -> None:
    r = await client.post(f"/api/v1/alerts/{FP}/ack", json=body_)
    assert r.status_code == 200, r.text


async def test_an_ack_stops_the_next_steps_reaches_every_incident_and_expiry_resumes(
    db_url: str,
) -> None:
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        await post(client, am_alert(LABELS, starts_at=T0))
        # The page goes out first: drained together, the page and the step
        # are sent concurrently and reach the sink in either order.
        await tick(app, clock, T0 + timedelta(seconds=1))
        assert paths(chat) == [("/page", "firing")]
        await tick(app, clock, T0 + timedelta(minutes=16))  # second is told
        assert paths(chat)[-1] == ("/second", "escalation")

        clock.set(T0 + timedelta(minutes=20))
        await ack(client, {"by": "alice", "comment": "on it", "for": "40m"})
        await tick(app, clock, clock.now())
        # Both incidents acknowledged, each under its own key.
        assert sorted(k for a, k in pd.order if a == "acknowledge") == sorted(
            [K0, escalation_key(K0, "second")]
        )
        # 46 minutes: the manager's step is due, but the alert is acknowledged.
        result = await tick(app, clock, T0 + timedelta(minutes=46))
        assert result.escalations == 0
        assert ("/manager", "escalation") not in paths(chat)

        # The ack runs out at 60 minutes: the step resumes, and the expiry is recorded.
        result = await tick(app, clock, T0 + timedelta(minutes=61))
        assert result.escalations == 1
        assert paths(chat)[-1] == ("/manager", "escalation")
        assert "firing for 1h 1m" in chat.requests()[-1].json()["text"]
    history = [(r["action"], r["actor"]) for r in table_rows(db_url, "alert_acks")]
    assert history == [("ack", "alice"), ("expired", "alice")]


async def test_an_ack_before_the_first_step_holds_them_all_until_unack(db_url: str) -> None:
    async with escalation_setup(db_url) as (app, client, pd, chat, clock):
        await post(client, am_alert(LABELS, starts_at=T0))
        clock.set(T0 + timedelta(minutes=5))
        await ack(client, {"by": "bob"})
        for minute in (16, 46, 120):
            assert (await tick(app, clock, T0 + timedelta(minutes=minute))).escalations == 0
        r = await client.delete(f"/api/v1/alerts/{FP}/ack")
        assert r.status_code == 200, r.text
        result = await tick(app, clock, T0 + timedelta(minutes=121))
        assert result.escalations == 2
        assert sorted(p for p, k in paths(chat) if k == "escalation") == ["/manager", "/second"]
        # The resolve closes every incident opened.
        clock.set(T0 + timedelta(minutes=130))
        await post(client, am_alert(LABELS, status="resolved", starts_at=T0, ends_at=clock.now()))
        await tick(app, clock, clock.now())
        assert pd.open_incidents() == [] and pd.dropped == []


async def test_a_step_already_recorded_is_not_recorded_again(db_url: str) -> None:
    """The insert-if-absent under every step: a sweeper deciding from a stale
    read (its step already taken by another) inserts nothing, so it queues
    nothing."""
    from app.store.alerts import AlertUnit, EscalationRow

    async with escalation_setup(db_url) as (app, client, _pd, _chat, clock):
        await post(client, am_alert(LABELS, starts_at=T0))
        await tick(app, clock, T0 + timedelta(minutes=16))
        db = app.state.services.db
        row = EscalationRow(FP, K0, 0, "second", 900.0, T0, clock.now())
        again = EscalationRow(FP, K0, 1, "manager", 2700.0, T0, clock.now())
        async with db.write() as conn:
            inserted = await AlertUnit(conn, db.kind).record_escalations([row, again])
        assert inserted == {(FP, "manager")}
    assert count(db_url, "alert_escalations") == 2


async def test_the_console_alert_page_shows_the_escalation(db_url: str) -> None:
    async with escalation_setup(db_url) as (app, client, _pd, _chat, clock):
        await post(client, am_alert(LABELS, starts_at=T0))
        await tick(app, clock, T0 + timedelta(minutes=16))
        page = (await client.get(f"/alerts/{FP}")).text
        section = page.split('id="escalation"', 1)[1].split("</section>", 1)[0]
        assert "Clock running since" in section and "2026-11-21 19:16:43 UTC" in section
        assert "next step due" in section and "2026-11-21 20:01:43 UTC" in section  # T0 + 45m
        assert "escalated to <strong>second</strong>" in section
