"""Delivery across process crashes, shutdowns and replicas, and from the real Alertmanager."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.harness import (
    alertmanager,
    alertmanager_config,
    alertrelay,
    am_post_alerts,
    http_json,
    needs_alertmanager,
    wait_until,
)
from tests.helpers import am_alert, am_webhook, table_rows
from tests.sinks import FakePagerDuty, Reply, WebhookSink, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"


def relay_config(
    pd_url: str,
    *,
    lease: str = "2s",
    timeout: str = "1s",
    concurrency: int = 16,
    shutdown_grace: str = "30s",
) -> str:
    return f"""
delivery: {{timeout: {timeout}, lease: {lease}, initial_backoff: 1s, concurrency: {concurrency},
  shutdown_grace: {shutdown_grace}}}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route: {{receiver: page}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue"}}]
"""


def post(url: str, payload: object) -> None:
    http_json("POST", url + "/webhook/alertmanager", payload)


@pytest.mark.parametrize(
    ("failpoint", "sends_before_crash"),
    [("after_send_before_mark", 1), ("after_claim_commit", 0)],
    ids=["killed-after-send", "killed-after-claim"],
)
def test_kill_mid_delivery_loses_nothing(
    tmp_path: Path, db_url: str, failpoint: str, sends_before_crash: int
) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        config = relay_config(pd_url)
        with alertrelay(
            tmp_path, config, db_url, env={"ALERTRELAY_FAILPOINT": failpoint}, name="doomed"
        ) as relay:
            post(relay.url, am_webhook([am_alert({"alertname": "Crash", "severity": "critical"})]))
            wait_until(
                lambda: relay.process.poll() is not None,
                15,
                what="the failpoint to kill the process",
            )
            assert relay.process.returncode == -signal.SIGKILL
        assert len(pd.requests()) == sends_before_crash
        (row,) = table_rows(db_url, "notifications")
        assert row["status"] == "in_flight" and row["attempts"] == 1
        started = time.monotonic()
        with alertrelay(tmp_path, config, db_url, name="restarted"):
            wait_until(
                lambda: table_rows(db_url, "notifications")[0]["status"] == "sent",
                20,
                what="redelivery, well inside the 120 s lease",
            )
        # Re-claimed once the 2 s lease ran out (plus the poll), not later.
        assert time.monotonic() - started < 2 + 0.5 + 8
    requests = pd.requests()
    assert len(requests) == sends_before_crash + 1
    assert len({r.json()["dedup_key"] for r in requests}) == 1  # the same key every time
    assert len(pd.all_incidents()) == 1 and len(pd.open_incidents()) == 1
    attempts = table_rows(db_url, "delivery_attempts")
    assert [a["outcome"] for a in attempts] == ["interrupted", "sent"]


def test_sigterm_finishes_the_send_in_flight(tmp_path: Path, db_url: str) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        pd.script(Reply(202, {"status": "success"}, delay=2.0))
        with alertrelay(tmp_path, relay_config(pd_url, lease="20s", timeout="5s"), db_url) as relay:
            post(relay.url, am_webhook([am_alert({"alertname": "Term", "severity": "critical"})]))
            wait_until(lambda: len(pd.requests()) == 1, 10, what="the send to start")
            relay.process.send_signal(signal.SIGTERM)
            relay.process.wait(timeout=20)
            log = relay.log()
    (row,) = table_rows(db_url, "notifications")
    assert row["status"] == "sent" and row["lease_token"] is None, log
    assert len(pd.requests()) == 1


def test_sigterm_releases_the_leases_of_sends_that_outlast_the_grace(
    tmp_path: Path, db_url: str
) -> None:
    """A sink that holds its sends past the shutdown grace: SIGTERM hands the
    rows back (pending, no lease), so a restart delivers them now, not after
    the lease.

    The grace is the longest send deadline plus 1 s, capped at
    ``delivery.shutdown_grace``; a send under a shorter deadline times out
    first and ends as a retry. So the deadline here is 40 s and the cap 4 s,
    and the process takes the cap to stop. The sink trickles its answer, a
    byte a second: one that just hung would be cut off by the 10 s per-read
    timeout first, and also end as a retry."""
    hung, healthy = FakePagerDuty(), FakePagerDuty()
    hung.default = Reply(202, "x" * 200, trickle=1.0)  # type: ignore[misc]
    with serve(hung) as hung_url, serve(healthy) as healthy_url:
        # concurrency 4: two sends at once to one integration, two more claimed and waiting.
        config = relay_config(
            hung_url, lease="120s", timeout="40s", concurrency=4, shutdown_grace="4s"
        )
        with alertrelay(tmp_path, config, db_url, name="stopping") as relay:
            alerts = [
                am_alert({"alertname": "Hang", "instance": f"h{i}", "severity": "critical"})
                for i in range(3)
            ]
            post(relay.url, am_webhook(alerts))
            wait_until(lambda: len(hung.requests()) == 2, 10, what="two sends to start")
            wait_until(
                lambda: (
                    [r["status"] for r in table_rows(db_url, "notifications")] == ["in_flight"] * 3
                ),
                5,
                what="all three claimed",
            )
            signalled = time.monotonic()
            relay.process.send_signal(signal.SIGTERM)
            relay.process.wait(timeout=45)
            stopped_in = time.monotonic() - signalled
            log = relay.log()
        # uvicorn shuts down, then re-raises the SIGTERM it caught.
        assert relay.process.returncode in (0, -signal.SIGTERM), log
        assert "Application shutdown complete" in log, log
        # The 4 s cap, not the 41 s the deadline alone would give, the sink's
        # 200 s or the lease.
        assert 4 <= stopped_in < 15, stopped_in
        rows = table_rows(db_url, "notifications")
        assert [r["status"] for r in rows] == ["pending"] * 3, log
        for r in rows:
            assert (r["lease_owner"], r["lease_token"], r["lease_expires_at"]) == (
                None,
                None,
                None,
            ), r
            assert r["attempts"] == 0  # handed back unsent: the attempt is not held against it
        assert [a["outcome"] for a in table_rows(db_url, "delivery_attempts")] == ["released"] * 3
        started_keys = {r.json()["dedup_key"] for r in hung.requests()}

        with alertrelay(
            tmp_path,
            relay_config(healthy_url, lease="120s", timeout="40s"),
            db_url,
            name="restarted",
        ):
            wait_until(
                lambda: {r["status"] for r in table_rows(db_url, "notifications")} == {"sent"},
                10,
                what="redelivery, well inside the 120 s lease",
            )
            time.sleep(1.0)  # a second delivery of any row would show up now
    keys = Counter(r.json()["dedup_key"] for r in healthy.requests())
    assert len(keys) == 3 and set(keys.values()) == {1}, keys  # each row exactly once
    assert started_keys < set(keys)  # the same dedup keys as the interrupted sends
    assert len(healthy.open_incidents()) == 3
    assert len(hung.requests()) == 2


@pytest.mark.postgres
def test_db_p3_two_workers_deliver_each_row_once(tmp_path: Path, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL")
    hook = WebhookSink()
    with serve(hook) as hook_url:
        config = f"""
delivery: {{timeout: 5s, lease: 30s, concurrency: 16}}
route: {{receiver: r}}
receivers: [{{name: r, webhook_configs: [{{url: "{hook_url}/h"}}]}}]
"""
        path = tmp_path / "workers.yml"
        path.write_text(config)
        _fill_outbox(db_url, config, 2000)  # 2,000 rows queued before any worker runs
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        workers = []
        for i in range(2):
            with (tmp_path / f"w{i}.log").open("wb") as log:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "app", "worker", "--config", str(path)],
                        env={**env, "ALERTRELAY_WORKER_ID": f"w{i}"},
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        try:
            wait_until(
                lambda: len(hook.requests()) >= 2000, 90, interval=0.2, what="2,000 deliveries"
            )
            time.sleep(1.0)  # anything extra would show up now
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=30)
    keys = Counter(r.headers["idempotency-key"] for r in hook.requests())
    assert len(keys) == 2000 and max(keys.values()) == 1  # each row exactly once
    rows = table_rows(db_url, "notifications")
    assert len(rows) == 2000 and {r["status"] for r in rows} == {"sent"}
    by_worker = Counter(a["worker"] for a in table_rows(db_url, "delivery_attempts"))
    assert set(by_worker) == {"w0", "w1"} and sum(by_worker.values()) == 2000


def _fill_outbox(db_url: str, config: str, n: int) -> None:
    import asyncio

    from tests.conftest import running_app
    from tests.helpers import JSON, body

    async def fill() -> None:
        async with running_app(db_url, config) as (_, client):
            alerts = [am_alert({"alertname": "Replica", "instance": f"i{i}"}) for i in range(n)]
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )
            assert r.json()["notifications"] == n

    asyncio.run(fill())


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@needs_alertmanager
def test_alertmanager_to_pagerduty_end_to_end(tmp_path: Path) -> None:
    pd = FakePagerDuty()
    token = tmp_path / "token"
    token.write_text("t0k3n")
    with serve(pd) as pd_url:
        config = "auth: {webhook_token: t0k3n}\n" + relay_config(pd_url, lease="20s", timeout="5s")
        with (
            alertrelay(tmp_path, config) as relay,
            alertmanager(
                tmp_path, alertmanager_config(relay.url + "/webhook/alertmanager", token)
            ) as am,
        ):
            now = datetime.now(UTC)
            alerts = [
                {
                    "labels": {"alertname": f"E2E{name}", "severity": sev, "instance": f"h{i}"},
                    "annotations": {"summary": f"{name} is bad"}
                    | ({"runbook_url": "https://wiki.example.com/own"} if i == 0 else {}),
                    "startsAt": _iso(now),
                    "endsAt": _iso(now + timedelta(hours=1)),
                }
                for i, (name, sev) in enumerate(
                    [("Disk", "critical"), ("Cpu", "warning"), ("Mem", "page")]
                )
            ]
            am_post_alerts(am, alerts)
            wait_until(lambda: len(pd.open_incidents()) == 3, 30, what="3 incidents open")
            am_post_alerts(am, [dict(a, endsAt=_iso(datetime.now(UTC))) for a in alerts])
            wait_until(
                lambda: not pd.open_incidents() and len(pd.all_incidents()) == 3,
                30,
                what="all resolved",
            )
            time.sleep(3)  # Alertmanager repeats: no new incidents may appear
    incidents = pd.all_incidents()
    assert len(incidents) == 3 and not pd.open_incidents() and pd.dropped == []
    runbooks = sorted(i["events"][0]["links"][0]["href"] for i in incidents)
    assert runbooks == [
        "https://runbooks.example.com/e2ecpu",
        "https://runbooks.example.com/e2emem",
        "https://wiki.example.com/own",
    ]
    severities = sorted(i["events"][0]["payload"]["severity"] for i in incidents)
    assert severities == ["critical", "critical", "warning"]
