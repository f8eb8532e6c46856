"""Outbox delivery against local sinks, on SQLite and PostgreSQL."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.delivery.worker import DeliveryWorker
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import FakePagerDuty, Reply, WebhookSink, serve

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"


def config(pd_url: str, hook_url: str, **delivery: Any) -> str:
    extra = "".join(f"  {k}: {v}\n" for k, v in delivery.items())
    return f"""
delivery:
  initial_backoff: 1s
  max_backoff: 60s
  timeout: 1s
  lease: 10s
{extra}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: "{pd_url}/v2/enqueue"}}]
    webhook_configs: [{{url: "{hook_url}/hook"}}]
"""


@asynccontextmanager
async def setup(
    db_url: str, **delivery: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakePagerDuty, WebhookSink, ManualClock]]:
    pd, hook = FakePagerDuty(), WebhookSink()
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(pd) as pd_url, serve(hook) as hook_url:
        async with running_app(db_url, config(pd_url, hook_url, **delivery), clock=clock) as (
            app,
            client,
        ):
            yield app, client, pd, hook, clock


async def fire(
    client: httpx.AsyncClient, name: str = "DiskFull", status: str = "firing", **kw: Any
) -> None:
    r = await client.post(
        "/webhook/alertmanager",
        content=body(
            am_webhook([am_alert({"alertname": name, "severity": "critical"}, status=status, **kw)])
        ),
        headers=JSON,
    )
    assert r.status_code == 200, r.text


def worker(app: Starlette) -> DeliveryWorker:
    return app.state.services.delivery  # type: ignore[no-any-return]


async def drain(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await worker(app).drain()


def rows(db_url: str, table: str = "notifications") -> list[dict[str, Any]]:
    return table_rows(db_url, table)


async def test_trigger_then_resolve_reach_pagerduty_with_runbook(db_url: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        await fire(client)
        await drain(app)
        (incident,) = pd.open_incidents()
        event = incident["events"][0]
        assert event["payload"]["severity"] == "critical"
        assert event["payload"]["summary"].startswith("[FIRING] DiskFull (critical)")
        assert event["links"] == [
            {"href": "https://runbooks.example.com/diskfull", "text": "Runbook"},
            {"href": "http://prometheus.example:9090/graph?g0.expr=up", "text": "Source"},
        ]
        assert event["client"] == "alertrelay"
        await fire(client, status="resolved")
        await drain(app)
    assert pd.open_incidents() == [] and len(pd.all_incidents()) == 1 and pd.dropped == []
    assert [b["kind"] for b in hook.bodies()] == ["firing", "resolved"]
    assert hook.requests()[0].headers["idempotency-key"] == rows(db_url)[1]["idempotency_key"]
    assert {r["status"] for r in rows(db_url)} == {"sent"}
    attempts = rows(db_url, "delivery_attempts")
    assert [a["outcome"] for a in attempts] == ["sent"] * 4


async def test_sink_01_transient_5xx_retried_with_full_jitter(db_url: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        pd.script(Reply(500, "boom"), Reply(500, "boom"), Reply(500, "boom"))
        await fire(client)
        gaps = []
        for attempt in range(1, 4):
            await drain(app)
            row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
            assert row["status"] == "pending" and row["attempts"] == attempt
            gap = (row["next_attempt_at"] - clock.now()).total_seconds()
            gaps.append(gap)
            # Full jitter: uniform in [0, min(cap, base * 2^(n-1))].
            assert 0 <= gap <= min(60, 1 * 2 ** (attempt - 1)) + 1e-6
            assert row["last_status_code"] == 500 and "HTTP 500" in row["last_error"]
            clock.advance(gap + 0.001)
        await drain(app)
    pd_rows = [r for r in rows(db_url) if r["integration"] == "pagerduty"]
    assert pd_rows[0]["status"] == "sent" and pd_rows[0]["attempts"] == 4
    assert len(pd.requests()) == 4 and len(pd.all_incidents()) == 1


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("3", 3.0),
        ("86400", 600.0),  # capped at max_retry_after
        ("abc", None),  # garbage: normal backoff
        ("http-date", 3.0),
    ],
)
async def test_sink_02_retry_after(db_url: str, retry_after: str, expected: float | None) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        if retry_after == "http-date":
            retry_after = format_datetime(clock.now() + timedelta(seconds=3), usegmt=True)
        pd.script(Reply(429, "", headers={"Retry-After": retry_after}))
        await fire(client)
        await drain(app)
        row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
        gap = (row["next_attempt_at"] - clock.now()).total_seconds()
        if expected is None:
            assert 0 <= gap <= 1.0 + 1e-6
        else:
            assert gap == pytest.approx(expected, abs=0.01)
        assert row["status"] == "pending" and row["last_status_code"] == 429
        clock.advance(gap + 0.01)
        await drain(app)
    assert [r["status"] for r in rows(db_url)] == ["sent", "sent"]


@pytest.mark.parametrize("mode", ["hang", "trickle"])
async def test_sink_03_04_total_deadline(db_url: str, mode: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        if mode == "hang":
            pd.script(Reply(202, "ok", delay=30))
        else:  # 1 byte every 0.15 s: httpx's per-read timeouts alone never fire
            pd.script(Reply(202, "x" * 200, trickle=0.15))
        await fire(client)
        started = time.monotonic()
        await drain(app)
        elapsed = time.monotonic() - started
        row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
        assert row["status"] == "pending" and "no complete answer within 1s" in row["last_error"]
        assert 0.9 <= elapsed <= 2.5, elapsed  # the 1 s deadline, not the sink's 30 s
        clock.advance(2)
        await drain(app)
    assert [r["status"] for r in rows(db_url)] == ["sent", "sent"]


async def test_sink_07_pagerduty_400_is_dead_at_once(db_url: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        pd.script(
            Reply(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["Service key is the wrong length (should be 32 characters)"],
                },
            )
        )
        await fire(client)
        await drain(app)
        metrics = (await client.get("/metrics")).text
    row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
    assert row["status"] == "dead" and row["attempts"] == 1
    assert row["last_error"].startswith(
        "pagerduty: HTTP 400: Event object is invalid: Service key is the wrong length"
    )
    assert len(row["last_error"]) <= 1024
    assert ROUTING_KEY not in row["last_error"]
    assert 'alertrelay_notifications_total{integration="pagerduty",result="dead"} 1.0' in metrics
    assert 'alertrelay_notifications_total{integration="webhook",result="sent"} 1.0' in metrics


async def test_ord_01_resolve_waits_for_its_trigger(db_url: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        pd.script(Reply(500), Reply(503), Reply(502))
        await fire(client)
        await drain(app)
        await fire(client, status="resolved")  # arrives while the trigger backs off
        for _ in range(3):
            clock.advance(10)
            await drain(app)
    actions = [a for a, _ in pd.order]
    assert actions == ["trigger", "resolve"]  # never resolve-before-trigger
    assert pd.open_incidents() == [] and pd.dropped == []
    assert [r["status"] for r in rows(db_url)] == ["sent"] * 4
    # pd.order holds only what the fake accepted; a resolve that overtook its
    # trigger could have eaten one of the scripted 5xx and been retried, and
    # that order would look the same. So check everything that reached the sink.
    sent = [(r.json()["event_action"], r.json()["dedup_key"], r.status) for r in pd.requests()]
    assert [(a, s) for a, _, s in sent] == [
        ("trigger", 500),
        ("trigger", 503),
        ("trigger", 502),
        ("trigger", 202),
        ("resolve", 202),
    ]
    assert_resolves_follow_accepted_triggers(sent)


def assert_resolves_follow_accepted_triggers(sent: list[tuple[str, str, int]]) -> None:
    """Per dedup_key, in arrival order: no resolve before the key's first trigger
    request, nor before a trigger was accepted (PagerDuty would drop it)."""
    for key in {k for _, k, _ in sent}:
        mine = [(action, status) for action, k, status in sent if k == key]
        assert mine[0][0] == "trigger", (key, mine)
        accepted = [i for i, (a, s) in enumerate(mine) if a == "trigger" and 200 <= s < 300]
        assert accepted, (key, mine)
        assert all(a == "trigger" for a, _ in mine[: accepted[0]]), (key, mine)


async def test_ord_01_many_keys_resolves_wait_while_triggers_back_off(db_url: str) -> None:
    async with setup(db_url) as (app, client, pd, hook, clock):
        pd.script(*[Reply(500)] * 6)  # each trigger fails twice
        names = [f"Ord{i}" for i in range(3)]
        for name in names:
            await fire(client, name=name)
        await drain(app)
        for name in names:
            await fire(client, name=name, status="resolved")
        for _ in range(4):
            await drain(app)
            clock.advance(10)
        await drain(app)
    sent = [(r.json()["event_action"], r.json()["dedup_key"], r.status) for r in pd.requests()]
    assert_resolves_follow_accepted_triggers(sent)
    assert len({k for _, k, _ in sent}) == 3 and sum(a == "resolve" for a, _, _ in sent) == 3
    assert pd.open_incidents() == [] and len(pd.all_incidents()) == 3 and pd.dropped == []
    assert {r["status"] for r in rows(db_url)} == {"sent"}


async def test_dlq_01_exhaustion_and_dlq_02_replay_once(db_url: str) -> None:
    async with setup(db_url, max_attempts=8) as (app, client, pd, hook, clock):
        pd.default = Reply(500, "down")  # type: ignore[misc]
        for i in range(3):
            await fire(client, name=f"Alert{i}")
        for _ in range(12):
            await drain(app)
            clock.advance(61)
        dead = (await client.get("/api/v1/notifications?status=dead")).json()["notifications"]
        assert len(dead) == 3 and {d["attempts"] for d in dead} == {8}
        assert all("gave up after 8 attempts" in d["last_error"] for d in dead)
        assert len(pd.requests()) == 24
        metrics = (await client.get("/metrics")).text
        assert "alertrelay_outbox_dead 3.0" in metrics
        # Fix the sink, replay: each delivered once with its original dedup_key.
        pd.default = Reply(202, {"status": "success"})  # type: ignore[misc]
        keys_before = {d["dedup_key"] for d in dead}
        for d in dead:
            r = await client.post(f"/api/v1/notifications/{d['id']}/replay")
            assert r.status_code == 200 and r.json()["status"] == "requeued"
        again = [await client.post(f"/api/v1/notifications/{d['id']}/replay") for d in dead]
        assert [r.status_code for r in again] == [409] * 3  # replaying twice sends once
        await drain(app)
        assert (await client.post("/api/v1/notifications/99999/replay")).status_code == 404
    assert {i["dedup_key"] for i in pd.open_incidents()} == keys_before
    assert len(pd.requests()) == 27
    assert {r["status"] for r in rows(db_url)} == {"sent"}
    assert [r["replays"] for r in rows(db_url) if r["integration"] == "pagerduty"] == [1, 1, 1]


async def test_concurrent_replays_requeue_once(db_url: str) -> None:
    """Two admin calls for the same id at once."""
    async with setup(db_url, max_attempts=1) as (app, client, pd, hook, clock):
        pd.script(Reply(500))
        await fire(client)
        await drain(app)
        dead_id = [r for r in rows(db_url) if r["status"] == "dead"][0]["id"]
        results = await asyncio.gather(
            *(client.post(f"/api/v1/notifications/{dead_id}/replay") for _ in range(4))
        )
        assert sorted(r.status_code for r in results) == [200, 409, 409, 409]


async def test_stale_dead_trigger_is_not_replayed(db_url: str) -> None:
    """A dead trigger whose alert since resolved would open an orphan incident."""
    async with setup(db_url, max_attempts=1) as (app, client, pd, hook, clock):
        pd.script(Reply(500))
        await fire(client)
        await drain(app)
        await fire(client, status="resolved")
        await drain(app)
        dead_id = [r for r in rows(db_url) if r["status"] == "dead"][0]["id"]
        r = await client.post(f"/api/v1/notifications/{dead_id}/replay")
        assert r.status_code == 409 and "superseded" in r.json()["error"]
        await drain(app)
    assert pd.open_incidents() == []


async def test_replay_needs_the_admin_token(sqlite_url: str) -> None:
    pd, hook = FakePagerDuty(), WebhookSink()
    with serve(pd) as pd_url, serve(hook) as hook_url:
        text = "auth: {webhook_token: w, admin_token: adm1n}\n" + config(pd_url, hook_url)
        async with running_app(sqlite_url, text) as (_, client):
            assert (await client.post("/api/v1/notifications/1/replay")).status_code == 401
            assert (
                await client.post(
                    "/api/v1/notifications/1/replay", headers={"Authorization": "Bearer w"}
                )
            ).status_code == 401
            assert (
                await client.post(
                    "/api/v1/notifications/1/replay", headers={"Authorization": "Bearer adm1n"}
                )
            ).status_code == 404


async def test_obx_02_zombie_worker_cannot_overwrite(db_url: str) -> None:
    """A re-claims after A's lease ran out; A's late outcome changes nothing."""
    async with setup(db_url) as (app, client, pd, hook, clock):
        services = app.state.services
        pd.script(Reply(202, {"status": "success"}, delay=1.0))  # A's send is slow
        await fire(client)
        a = worker(app)
        b = DeliveryWorker(
            services.db,
            services.runtime,
            clock,
            services.metrics,
            services.http,
            worker_id="B",
            wake=asyncio.Event(),
        )
        await a.step()  # A claims both rows and starts sending
        await asyncio.sleep(0.2)
        clock.advance(11)  # past the 10 s lease: A looks dead
        async with asyncio.timeout(10):
            await b.drain()  # B re-claims the PagerDuty row and delivers it
        pd_row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
        assert pd_row["status"] == "sent" and pd_row["lease_token"] is None
        async with asyncio.timeout(10):
            await a.drain()  # A's slow send finishes; its outcome is fenced off
        metrics = (await client.get("/metrics")).text
    pd_row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
    assert pd_row["status"] == "sent" and pd_row["attempts"] == 2
    keys = [r.json()["dedup_key"] for r in pd.requests()]
    assert len(keys) == 2 and len(set(keys)) == 1  # two sends, one incident
    assert len(pd.all_incidents()) == 1
    attempts = [
        a for a in rows(db_url, "delivery_attempts") if a["notification_id"] == pd_row["id"]
    ]
    assert sorted(a["outcome"] for a in attempts) == ["lease_lost", "sent"]
    # A had claimed both rows (PagerDuty and webhook); B took both over.
    assert "alertrelay_lease_lost_total 2.0" in metrics
    assert len(hook.requests()) == 2 and {r["status"] for r in rows(db_url)} == {"sent"}


async def test_poison_notifier_error_keeps_the_loop_alive(db_url: str) -> None:
    """A notifier that raises: the row records a failed attempt; the others still go out."""
    async with setup(db_url) as (app, client, pd, hook, clock):
        pd.script(Reply(202, b"\xff" * 10, headers={"Content-Type": "application/json"}))
        for i in range(5):
            await fire(client, name=f"P{i}")
        await drain(app)
    assert len(hook.bodies()) == 5
    assert all(r["status"] == "sent" for r in rows(db_url) if r["integration"] == "webhook")


async def test_redirects_are_not_followed(db_url: str) -> None:
    """A 3xx is a failure, and its target is never contacted."""
    canary = WebhookSink()
    with serve(canary) as canary_url:
        async with setup(db_url) as (app, client, pd, hook, clock):
            pd.script(Reply(302, "", headers={"Location": f"{canary_url}/stolen"}))
            await fire(client)
            await drain(app)
    assert canary.requests() == []
    row = [r for r in rows(db_url) if r["integration"] == "pagerduty"][0]
    assert row["status"] == "dead" and "redirects are not followed" in row["last_error"]


async def test_removed_integration_goes_dead_visibly(sqlite_url: str, tmp_path: Any) -> None:
    pd, hook = FakePagerDuty(), WebhookSink()
    with serve(pd) as pd_url, serve(hook) as hook_url:
        text = "auth: {admin_token: a}\n" + config(pd_url, hook_url)
        path = tmp_path / "c.yml"
        path.write_text(text)
        async with running_app(sqlite_url, text, config_path=str(path)) as (app, client):
            await fire(client)
            path.write_text(
                text.replace(f'    webhook_configs: [{{url: "{hook_url}/hook"}}]\n', "")
            )
            r = await client.post("/-/reload", headers={"Authorization": "Bearer a"})
            assert r.status_code == 200, r.text
            await drain(app)
    by = {r["integration"]: r for r in table_rows(sqlite_url, "notifications")}
    assert by["pagerduty"]["status"] == "sent"
    assert (
        by["webhook"]["status"] == "dead"
        and by["webhook"]["last_error"] == "page/webhook/0 is no longer in the config"
    )


async def post_one_by_one(client: httpx.AsyncClient, hook: WebhookSink, n: int = 20) -> list[float]:
    """Post ``n`` alerts, each 0.1 s after the previous one reached the sink;
    their accepted-to-received latencies, sorted.

    The pause lets the loop record the previous send and go back to waiting:
    an alert posted while that send is still being answered is claimed by the
    turn that records it, and would look woken when it was not."""
    latencies = []
    for i in range(n):
        posted = time.monotonic()
        await fire(client, name=f"Fast{i}")
        try:
            async with asyncio.timeout(5):
                while len(hook.requests()) <= i:
                    await asyncio.sleep(0.002)
        except TimeoutError:
            raise AssertionError(f"alert {i} not delivered within 5 s") from None
        latencies.append(hook.requests()[i].at - posted)
        await asyncio.sleep(0.1)
    return sorted(latencies)


async def test_a_send_task_goes_on_with_the_next_row_of_its_destination(db_url: str) -> None:
    """A send task whose row is done sends the next waiting row that has room.

    A task per row left the connection idle between rows, and the HTTP
    client's pool polls every idle connection on every request. Concurrency
    2 (one send at a time per destination), 6 alerts to PagerDuty and a
    webhook: the first claim holds two rows of each destination, so each
    first task goes on to its destination's second row, and there are fewer
    send tasks than rows, whatever the timing.
    """
    async with setup(db_url, concurrency=2) as (app, client, pd, hook, clock):
        for i in range(6):
            await fire(client, name=f"DiskFull{i}")
        loop = asyncio.get_running_loop()
        created: list[asyncio.Task[Any]] = []
        previous = loop.get_task_factory()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kw)
            created.append(task)
            return task

        loop.set_task_factory(factory)
        try:
            await drain(app)
        finally:
            loop.set_task_factory(previous)
    sends = [t for t in created if t.get_name().startswith("deliver-")]
    assert len(pd.all_incidents()) == 6 and len(hook.bodies()) == 6
    assert {r["status"] for r in rows(db_url)} == {"sent"}
    assert 2 <= len(sends) < 12, [t.get_name() for t in sends]


@pytest.mark.parametrize(
    ("lease", "limit", "held"),
    [
        ("10s", "", 5),  # ten deadlines: four shares (the most) wait behind the one sending
        ("5s", "", 4),
        ("4s", "", 3),
        ("3s", "", 2),  # three deadlines: one share, as every lease gets
        ("10s", ", rate_limit: {per_second: 100, burst: 5}", 2),
    ],
)
async def test_rows_claimed_ahead_are_bounded_by_the_lease(
    db_url: str, lease: str, limit: str, held: int
) -> None:
    """A destination holds its sends in flight plus as many shares of them
    waiting, claimed, as its lease allows: a row behind ``k`` shares ends
    within ``k + 1`` send deadlines, and one more is left for other
    destinations' sends, so the lease (here in 1 s deadlines) must be at least
    ``k + 2`` of them. A rate-limited destination keeps one share. One send at
    a time (concurrency 1), eight rows due, a sink that answers after the
    deadline: the first claim takes exactly what the destination may hold."""
    hook = WebhookSink()
    hook.default = Reply(200, delay=3.0)  # type: ignore[misc]
    with serve(hook) as hook_url:
        text = f"""
delivery: {{timeout: 1s, lease: {lease}, initial_backoff: 1s}}
route: {{receiver: r}}
receivers:
  - name: r
    delivery: {{concurrency: 1}}
    webhook_configs: [{{url: "{hook_url}/h"{limit}}}]
"""
        async with running_app(db_url, text) as (app, client):
            alerts = [am_alert({"alertname": f"Queued{i}"}) for i in range(8)]
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )
            assert r.json()["notifications"] == 8, r.text
            w = worker(app)
            assert await w.step() == held
            assert (w.in_flight, w.held) == (1, held)
            statuses = [row["status"] for row in rows(db_url)]
            assert statuses.count("in_flight") == held and statuses.count("pending") == 8 - held
            # The next claim takes nothing more while the destination is full.
            assert await w.step() == 0
            async with asyncio.timeout(10):
                await w.shutdown()
    statuses = [row["status"] for row in rows(db_url)]
    assert "in_flight" not in statuses, statuses  # the send timed out; the rest handed back


async def claim_then_wait(
    app: Starlette, client: httpx.AsyncClient, clock: ManualClock, names: list[str], waited: float
) -> DeliveryWorker:
    """Post one alert per name, claim their rows in one step, move the clock
    ``waited`` seconds before any send starts, and let the sends end."""
    alerts = [am_alert({"alertname": name}) for name in names]
    r = await client.post("/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON)
    assert r.json()["notifications"] == len(names), r.text
    w = worker(app)
    assert await w.step() == len(names)
    clock.advance(waited)
    async with asyncio.timeout(10):
        while w.in_flight:
            await asyncio.sleep(0.01)
    return w


@pytest.mark.parametrize(("waited", "handed_back"), [(6.5, False), (7.5, True)])
async def test_a_row_whose_lease_would_run_out_mid_send_is_handed_back(
    db_url: str, waited: float, handed_back: bool
) -> None:
    """A claimed row may wait behind other sends. It is sent only while its
    lease outlasts its send's deadline and a second to record the outcome
    (10 s lease, 2 s deadline: up to 7 s after its claim); past the lease
    another worker may take it and send it too. Later, it is handed back
    unsent, due at once, the attempt not counted, and sent on its next claim."""
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = f"""
delivery: {{timeout: 2s, lease: 10s}}
route: {{receiver: r}}
receivers: [{{name: r, webhook_configs: [{{url: "{hook_url}/h"}}]}}]
"""
        clock = ManualClock(T0 + timedelta(minutes=1))
        async with running_app(db_url, text, clock=clock) as (app, client):
            names = ["Waited0", "Waited1", "Waited2"]
            await claim_then_wait(app, client, clock, names, waited)
            assert len(hook.requests()) == (0 if handed_back else 3)
            await drain(app)
    assert len(hook.requests()) == 3
    assert sorted(b["alertname"] for b in hook.bodies()) == ["Waited0", "Waited1", "Waited2"]
    stored = rows(db_url)
    assert [(n["status"], n["attempts"]) for n in stored] == [("sent", 1)] * 3
    logged = rows(db_url, "delivery_attempts")
    for n in stored:
        attempts = [a for a in logged if a["notification_id"] == n["id"]]
        outcomes = [a["outcome"] for a in attempts]
        assert outcomes == (["released", "sent"] if handed_back else ["sent"]), attempts
        if handed_back:
            assert "too little of its lease was left" in attempts[0]["error"]


async def test_a_rate_limit_wait_that_would_outlast_the_lease_defers_the_row(
    db_url: str,
) -> None:
    """Waiting for a rate-limit token is bounded by what the lease leaves
    too, not only by a third of it: a row 6 s into its 10 s lease has 1 s to
    spare beside a 2 s send and the second to record it, so a 2 s wait for
    the next token defers it (a third of the lease alone would allow 3.3 s)."""
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = f"""
delivery: {{timeout: 2s, lease: 10s}}
route: {{receiver: r}}
receivers:
  - name: r
    webhook_configs: [{{url: "{hook_url}/h", rate_limit: {{per_second: 0.5, burst: 1}}}}]
"""
        clock = ManualClock(T0 + timedelta(minutes=1))
        async with running_app(db_url, text, clock=clock) as (app, client):
            w = await claim_then_wait(app, client, clock, ["Limited0", "Limited1"], 6)
            await w.step()  # record the outcomes
    assert len(hook.requests()) == 1
    statuses = sorted((n["status"], n["attempts"]) for n in rows(db_url))
    assert statuses == [("pending", 0), ("sent", 1)], statuses
    deferred = [a for a in rows(db_url, "delivery_attempts") if a["outcome"] == "deferred"]
    assert len(deferred) == 1 and "rate limited: next slot in" in deferred[0]["error"]


async def test_accepted_to_sent_is_immediate_with_the_loop_running(db_url: str) -> None:
    """The app's own loop is woken by the ingest commit, not found by its poll.

    Polling alone cannot pass: each alert is posted 0.1 s after the previous
    one landed, when the loop is back in its 0.5 s wait, so a poll finds it
    ~0.4 s later, every time (a 1 s bound would not see that)."""
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{hook_url}/h'}}]}}]\n"
        async with running_app(db_url, text, background=True) as (_, client):
            latencies = await post_one_by_one(client, hook)
    median, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95) - 1]
    assert median < 0.1 and p95 < 0.3, [round(x, 3) for x in latencies]
    assert len(hook.bodies()) == 20
    assert all(b["version"] == "alertrelay/1" for b in hook.bodies())


async def test_new_rows_wake_a_loop_that_would_poll_once_a_minute(db_url: str) -> None:
    """The same with the poll out of the picture: the loop's only way to learn
    of a row within the test is the wake-up that ingest gives it."""
    hook = WebhookSink()
    with serve(hook) as hook_url:
        text = f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{hook_url}/h'}}]}}]\n"
        async with running_app(db_url, text) as (app, client):
            s = app.state.services
            loop = DeliveryWorker(
                s.db,
                s.runtime,
                s.clock,
                s.metrics,
                s.http,
                worker_id="slow-poll",
                wake=s.wake_delivery,
                poll_interval=60.0,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(loop.run(stop))
            try:
                await asyncio.sleep(0.1)  # its first turn finds nothing and starts the 60 s wait
                latencies = await post_one_by_one(client, hook, 10)
            finally:
                stop.set()
                async with asyncio.timeout(10):
                    await task
    assert latencies[-1] < 1.0, [round(x, 3) for x in latencies]
    assert {r["status"] for r in rows(db_url)} == {"sent"} and len(rows(db_url)) == 10


async def test_secrets_never_reach_logs_database_api_or_metrics(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Secrets never leak: canary routing key, URL path and token through failures and retries."""
    from tests.sinks import ECHO

    pd, hook = FakePagerDuty(), WebhookSink()
    key, path, token = "CANARYKEY0123456789abcdef0123456", "CANARYPATH-1234567", "CANARYTOKEN-99999"
    with serve(pd) as pd_url, serve(hook) as hook_url:
        text = f"""
delivery: {{timeout: 1s, lease: 10s, max_attempts: 2, initial_backoff: 1s}}
route: {{receiver: r}}
receivers:
  - name: r
    pagerduty_configs: [{{routing_key: {key}, url: "{pd_url}/v2/enqueue"}}]
    webhook_configs: [{{url: "{hook_url}/h/{path}", token: {token}}}]
"""
        clock = ManualClock(T0 + timedelta(minutes=1))
        async with running_app(db_url, text, clock=clock) as (app, client):
            for sink in (pd, hook):
                sink.script(Reply(500, ECHO), Reply(400, ECHO))
            caplog.set_level("DEBUG")
            await fire(client)
            await drain(app)
            clock.advance(5)
            await drain(app)
            outputs = [
                (await client.get("/api/v1/notifications?status=dead")).text,
                (await client.get("/metrics")).text,
                (await client.get("/health?detailed=true")).text,
            ]
            for n in (await client.get("/api/v1/notifications")).json()["notifications"]:
                outputs.append((await client.get(f"/api/v1/notifications/{n['id']}")).text)
    stored = [str(r) for r in rows(db_url)] + [str(r) for r in rows(db_url, "delivery_attempts")]
    logged = [r.getMessage() + str(r.__dict__) for r in caplog.records]
    assert {r["status"] for r in rows(db_url)} == {"dead"}
    assert any("HTTP 400" in s for s in stored)  # the errors are there, and readable
    for text_ in [*outputs, *stored, *logged]:
        for canary in (key, path, token):
            assert canary not in text_


async def test_log_integration_prints_one_json_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    async with running_app(
        sqlite_url, "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n"
    ) as (app, client):
        await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([am_alert({"alertname": "Line", "x": "a\nb"})])),
            headers=JSON,
        )
        await drain(app)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (
        record["alertname"] == "Line"
        and record["kind"] == "firing"
        and record["labels"]["x"] == "a\nb"
    )
