"""Rate limits per destination and isolation between destinations."""

import asyncio
import threading
import time
from collections import deque

from tests.conftest import running_app
from tests.helpers import JSON, am_alert, am_webhook, body
from tests.sinks import Reply, Sink, WebhookSink, serve


class StrictSlack(Sink):
    """Answers like Slack, and 429 once more than ``limit`` posts land within a second."""

    default = Reply(200, "ok")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._window: deque[float] = deque()
        self._window_lock = threading.Lock()

    def decide(self, body: bytes, reply: Reply) -> Reply:
        now = time.monotonic()
        with self._window_lock:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.limit:
                return Reply(429, "rate_limited", headers={"Retry-After": "1"})
            self._window.append(now)
        return reply


async def test_storm_to_one_slack_webhook_stays_under_its_limit(sqlite_url: str) -> None:
    """240 notifications at 40/s against a sink that allows 60 in any second: no 429, about 6 s.

    The sink counts arrivals, not departures: the sink, the app and the test
    share one process (and its GIL), so sends paced 25 ms apart can reach the
    sink bunched up. A third of headroom keeps that scheduling jitter from
    reading as a limiter fault; an actual fault (a burst, a bucket reset, a
    second bucket per destination) still sends well past 60 in a second."""
    sink = StrictSlack(limit=60)
    with serve(sink) as url:
        config = f"""
route: {{receiver: chat}}
receivers:
  - name: chat
    slack_configs: [{{api_url: "{url}/services/T/B/X", grouping: alert, rate_limit: {{per_second: 40, burst: 1}}}}]
"""
        async with running_app(sqlite_url, config, background=True) as (_, client):
            alerts = [am_alert({"alertname": "Storm", "instance": f"i{i}"}) for i in range(240)]
            started = time.monotonic()
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )
            assert r.json()["notifications"] == 240
            async with asyncio.timeout(30):
                while sum(1 for q in sink.requests() if q.status == 200) < 240:
                    await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
    statuses = [q.status for q in sink.requests()]
    assert statuses.count(429) == 0 and statuses.count(200) == 240
    assert 240 / 40 * 0.85 <= elapsed <= 240 / 40 * 1.6, elapsed


async def test_a_hanging_destination_does_not_delay_the_others(sqlite_url: str) -> None:
    """One sink black-holed with notifications queued; the other's still arrive at once."""
    stuck, healthy = WebhookSink(), WebhookSink()
    stuck.default = Reply(200, "ok", delay=30)  # type: ignore[misc]
    with serve(stuck) as stuck_url, serve(healthy) as healthy_url:
        config = f"""
delivery: {{timeout: 5s, lease: 20s, concurrency: 16}}
route:
  receiver: stuck
  routes: [{{matchers: ['team="ok"'], receiver: healthy}}]
receivers:
  - name: stuck
    webhook_configs: [{{url: "{stuck_url}/h"}}]
  - name: healthy
    webhook_configs: [{{url: "{healthy_url}/h"}}]
"""
        async with running_app(sqlite_url, config, background=True) as (_, client):
            stuck_alerts = [
                am_alert({"alertname": "Stuck", "instance": f"s{i}"}) for i in range(40)
            ]
            await client.post(
                "/webhook/alertmanager", content=body(am_webhook(stuck_alerts)), headers=JSON
            )
            await asyncio.sleep(0.5)  # the stuck destination now holds its share of the slots
            latencies = []
            for i in range(20):
                sent = time.monotonic()
                alert = am_alert({"alertname": "Fine", "team": "ok", "instance": f"f{i}"})
                await client.post(
                    "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
                )
                async with asyncio.timeout(5):
                    while len(healthy.requests()) <= i:
                        await asyncio.sleep(0.01)
                latencies.append(healthy.requests()[i].at - sent)
            in_flight_stuck = len(stuck.requests())
    latencies.sort()
    assert latencies[-1] < 2.0, latencies  # p100 of 20 under 2 s while the other sink hangs
    # The stuck destination never had more than its share (half of 16) in flight.
    assert in_flight_stuck <= 8
