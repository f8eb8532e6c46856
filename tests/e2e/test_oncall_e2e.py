"""The on-call loop end to end: the real Alertmanager, a served alertrelay, fake sinks.

(a) Alertmanager sends a critical alert; alertrelay pages the fake
PagerDuty; nobody acknowledges, so the escalation step tells a second
receiver (PagerDuty of its own, and Slack with the acknowledge link); the
link's POST acknowledges, which stops the next step and reaches both
PagerDuty incidents as ``acknowledge``; the resolve closes both.

(b) The Alertmanager that sends Watchdog is stopped: HeartbeatMissing fires
through the normal path; a new Alertmanager sends Watchdog again: it resolves.

Each test prints its timeline (seconds since the alert was posted, where
what arrived).
"""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.core.heartbeats import labels as missing_labels
from tests.e2e.harness import (
    alertmanager,
    alertmanager_config,
    alertrelay,
    am_post_alerts,
    http_json,
    needs_alertmanager,
    wait_until,
)
from tests.sinks import FakePagerDuty, Received, Reply, WebhookSink, serve

TOKEN = "e2e-oncall-token"
SECRET = "e2e-link-secret-0123456789abcdef"
KEY_PAGE = "PAGEKEY0123456789abcdef012345678"
KEY_SECOND = "SECONDKEY0123456789abcdef0123456"


class Slack(WebhookSink):
    default = Reply(200, "ok", headers={"Content-Type": "text/html"})


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Timeline:
    """What arrived where, in seconds since the start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, str]] = []

    def note(self, where: str, what: str, at: float | None = None) -> None:
        self.events.append(((at if at is not None else time.monotonic()) - self.t0, where, what))

    def sink(self, where: str, requests: list[Received], describe: Any) -> None:
        for r in requests:
            self.note(where, describe(r), r.at)

    def render(self, title: str) -> str:
        lines = [f"timeline: {title}"]
        lines += [f"  {t:6.2f}s  {where:<22} {what}" for t, where, what in sorted(self.events)]
        return "\n".join(lines)


def pd_event(r: Received) -> str:
    e = r.json()
    key = e.get("dedup_key", "")
    short = "…/escalated/second" if key.endswith("/escalated/second") else "…" + key[-22:]
    return f"{e['event_action']} {e['routing_key'][:6]}… dedup_key={short}"


@contextmanager
def token_file(tmp: Path) -> Iterator[Path]:
    path = tmp / "token"
    path.write_text(TOKEN + "\n")
    yield path


def ack_path(slack: Slack) -> str:
    message = slack.bodies()[-1]
    [url] = [
        e["url"]
        for block in message["attachments"][0]["blocks"]
        if block["type"] == "actions"
        for e in block["elements"]
        if e["action_id"] == "acknowledge"
    ]
    return urlsplit(url).path


@needs_alertmanager
def test_page_escalate_ack_by_link_and_resolve(tmp_path: Path) -> None:
    pd, slack, hooks = FakePagerDuty(), Slack(), WebhookSink()
    line = Timeline()
    with serve(pd) as pd_url, serve(slack) as slack_url, serve(hooks) as hooks_url:
        pd_cfg = f'url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}'
        config = f"""
external_url: https://alertrelay.example.com/
auth: {{webhook_token: {TOKEN}, link_secret: {SECRET}}}
flapping: {{sweep_interval: 1s}}
delivery: {{timeout: 2s, lease: 10s, initial_backoff: 1s}}
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      escalate:
        - {{after: 2s, receiver: second}}
        - {{after: 12s, receiver: manager}}
receivers:
  - name: chat
    webhook_configs: [{{url: "{hooks_url}/chat"}}]
  - name: page
    pagerduty_configs: [{{routing_key: {KEY_PAGE}, {pd_cfg}}}]
  - name: second
    pagerduty_configs: [{{routing_key: {KEY_SECOND}, {pd_cfg}}}]
    slack_configs: [{{api_url: "{slack_url}/services/T/B/X"}}]
  - name: manager
    webhook_configs: [{{url: "{hooks_url}/manager"}}]
"""
        with (
            token_file(tmp_path) as token,
            alertrelay(tmp_path, config) as relay,
            alertmanager(
                tmp_path, alertmanager_config(relay.url + "/webhook/alertmanager", token)
            ) as am,
        ):
            began = datetime.now(UTC)
            alert = {
                "labels": {"alertname": "E2EDiskFull", "severity": "critical", "instance": "db1"},
                "annotations": {"summary": "disk almost full"},
                "startsAt": _iso(began),
                "endsAt": _iso(began + timedelta(hours=1)),
            }
            line = Timeline()
            line.note("test", "alert posted to Alertmanager")
            am_post_alerts(am, [alert])

            wait_until(lambda: len(pd.open_incidents()) == 1, 30, what="the page")
            wait_until(lambda: slack.bodies(), 30, what="the escalation to second (Slack)")
            wait_until(lambda: len(pd.open_incidents()) == 2, 30, what="second's own incident")
            keys = {i["routing_key"]: i["dedup_key"] for i in pd.open_incidents()}
            assert keys[KEY_SECOND] == keys[KEY_PAGE] + "/escalated/second"
            text = slack.bodies()[-1]["attachments"][0]["blocks"]
            assert "Escalated: firing for" in str(text) and "notified: page" in str(text)

            # The acknowledge link from second's Slack message: GET shows, POST acks.
            path = ack_path(slack)
            with httpx.Client(base_url=relay.url, timeout=10) as browser:
                page = browser.get(path)
                assert page.status_code == 200 and "E2EDiskFull" in page.text
                line.note("test", "ack link opened (GET)")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                assert csrf is not None
                done = browser.post(
                    path, data={"comment": "on it", "for": "", "csrf_token": csrf.group(1)}
                )
                assert done.status_code == 200, done.text
                line.note("test", "ack link POSTed: acknowledged by second")
            acked_at = time.monotonic()

            wait_until(
                lambda: sum(1 for a, _ in pd.order if a == "acknowledge") == 2,
                30,
                what="both PagerDuty incidents acknowledged",
            )
            # The manager's step (12 s) would have fired by now without the ack.
            wait_until(
                lambda: time.monotonic() - line.t0 > 15 and time.monotonic() - acked_at > 3,
                30,
                what="the manager's step time to pass",
            )
            assert [r.path for r in hooks.requests()] == []
            line.note("test", "manager's step (12 s) passed: nothing sent to manager")
            fp = http_json("GET", relay.url + "/api/v1/alerts")["alerts"][0]["fingerprint"]
            detail = http_json("GET", relay.url + f"/api/v1/alerts/{fp}")
            assert detail["ack"]["by"] == "second" and detail["ack"]["via"] == "link"

            am_post_alerts(am, [dict(alert, endsAt=_iso(datetime.now(UTC)))])
            line.note("test", "resolve posted to Alertmanager")
            wait_until(lambda: pd.open_incidents() == [], 30, what="both incidents resolved")
            metrics = httpx.get(relay.url + "/metrics").text
        assert pd.dropped == [] and pd.rejected == []
        assert len(pd.all_incidents()) == 2
        assert 'alertrelay_escalations_total{receiver="second"} 1.0' in metrics
        assert 'alertrelay_escalations_total{receiver="manager"}' not in metrics
        assert hooks.requests() == []  # the manager was never told
        line.sink("pagerduty", pd.requests(), pd_event)
        line.sink("slack (second)", slack.requests(), lambda r: _slack_title(r))
    print("\n" + line.render("page, escalate, ack by link, resolve"))


def _slack_title(r: Received) -> str:
    text = r.body.decode()
    found = re.search(r"\[(ESCALATED|RESOLVED|ACKNOWLEDGED)[^\]]*\]", text)
    return found.group(0) if found else text[:60]


@needs_alertmanager
def test_watchdog_stops_heartbeat_missing_fires_and_resolves(tmp_path: Path) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        config = f"""
auth: {{webhook_token: {TOKEN}}}
flapping: {{sweep_interval: 1s}}
delivery: {{timeout: 2s, lease: 10s, initial_backoff: 1s}}
heartbeats:
  - name: e2e-am
    matchers: ['alertname="Watchdog"']
    interval: 4s
route:
  receiver: page
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: blackhole
receivers:
  - name: blackhole
  - name: page
    pagerduty_configs: [{{routing_key: {KEY_PAGE}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""
        watchdog = {
            "labels": {"alertname": "Watchdog", "severity": "none"},
            "annotations": {"summary": "the pipeline works"},
            "startsAt": _iso(datetime.now(UTC)),
            "endsAt": _iso(datetime.now(UTC) + timedelta(hours=1)),
        }

        def hb() -> dict[str, Any]:
            (found,) = http_json("GET", relay.url + "/api/v1/heartbeats")["heartbeats"]
            return dict(found)

        with token_file(tmp_path) as token, alertrelay(tmp_path, config) as relay:
            am_yml = alertmanager_config(
                relay.url + "/webhook/alertmanager",
                token,
                group_wait="0s",
                group_interval="1s",
                repeat_interval="1s",
            )
            line = Timeline()
            with alertmanager(tmp_path, am_yml, name="am1") as am:
                am_post_alerts(am, [watchdog])
                line.note("test", "Watchdog posted to Alertmanager 1")
                wait_until(lambda: hb()["last_seen"], 20, what="the first proof of life")
                line.note("alertrelay", "heartbeat seen")
                first = hb()["last_seen"]
                wait_until(lambda: hb()["last_seen"] != first, 20, what="a repeat")
                line.note("alertrelay", "heartbeat seen again (a repeat)")
                assert not hb()["missing"] and pd.requests() == []
            line.note("test", "Alertmanager 1 stopped")
            wait_until(lambda: pd.open_incidents(), 30, what="HeartbeatMissing to page")
            state = hb()
            assert state["missing"] and state["age_s"] >= 4
            (incident,) = pd.open_incidents()
            summary = incident["events"][0]["payload"]["summary"]
            assert summary.startswith("[FIRING] HeartbeatMissing (critical): No heartbeat 'e2e-am'")
            fp = [
                a["fingerprint"]
                for a in http_json("GET", relay.url + "/api/v1/alerts?state=firing")["alerts"]
                if a["labels"] == missing_labels("e2e-am")
            ]
            assert len(fp) == 1

            with alertmanager(tmp_path, am_yml, name="am2") as am:
                # A restarted Alertmanager has no alerts until Prometheus sends them again.
                am_post_alerts(am, [watchdog])
                line.note("test", "Alertmanager 2 started, Watchdog posted")
                wait_until(lambda: pd.open_incidents() == [], 30, what="HeartbeatMissing resolved")
                line.note("alertrelay", "heartbeat back")
                assert not hb()["missing"]
            metrics = httpx.get(relay.url + "/metrics").text
        assert 'alertrelay_heartbeat_age_seconds{name="e2e-am"}' in metrics
        assert [e["event_action"] for i in pd.all_incidents() for e in i["events"]] == [
            "trigger",
            "resolve",
        ]
        line.sink("pagerduty", pd.requests(), pd_event)
    print("\n" + line.render("Watchdog stops, HeartbeatMissing fires and resolves"))
