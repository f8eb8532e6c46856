"""Where people see escalation and heartbeats: ``routes test``, the console's
routes page (tree and form) and its heartbeats page."""

import json
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest

from app.cli import main
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body

CONFIG = """
heartbeats:
  - name: prod-am
    matchers: ['alertname="Watchdog"']
    interval: 10m
  - name: staging-am
    matchers: ['alertname="Watchdog"', 'cluster="staging"']
    interval: 1h
    receiver: chat
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      escalate:
        - {after: 15m, receiver: second}
        - {after: 45m, receiver: manager}
      routes:
        - matchers: ['team="db"']
          receiver: page
        - matchers: ['team="batch"']
          escalate: []
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


def routes_test(path: Path, capsys: pytest.CaptureFixture[str], *labels: str) -> str:
    assert main(["routes", "test", "--config", str(path), *labels]) == 0
    return capsys.readouterr().out


def test_routes_test_lists_the_escalation_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_text(CONFIG)
    out = routes_test(path, capsys, "severity=critical", "team=db")
    assert "  escalate: [0] after 15m unacknowledged -> second\n" in out
    assert "  escalate: [1] after 45m unacknowledged -> manager\n" in out
    # Turned off below: none.
    assert "  escalate: none\n" in routes_test(path, capsys, "severity=critical", "team=batch")
    assert main(["routes", "test", "--json", "--config", str(path), "severity=critical"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["escalate"] == [
        {"after_s": 900.0, "receiver": "second", "integrations": ["second/log/0", "second/log/1"]},
        {"after_s": 2700.0, "receiver": "manager", "integrations": ["manager/log/0"]},
    ]
    # A heartbeat with a receiver of its own routes its HeartbeatMissing there.
    out = routes_test(path, capsys, "alertname=HeartbeatMissing", "heartbeat=staging-am")
    assert out.startswith("chat\n") and "heartbeats[1]" in out


async def test_routes_page_shows_steps_in_the_tree_and_the_form(sqlite_url: str) -> None:
    async with running_app(sqlite_url, CONFIG) as (_, client):
        r = await client.get("/routes")
        assert r.status_code == 200
        text = unescape(r.text)
        tree = re.search(r'aria-label="escalation steps of route.routes\[0\]">(.*?)</ul>', text)
        assert tree is not None
        assert re.findall(r"<li>escalate (.*?)</li>", tree.group(1)) == [
            "after 15m unacknowledged → second",
            "after 45m unacknowledged → manager",
        ]
        # Shown where set, not repeated on the children that inherit them; and
        # on the route of the heartbeat with its own receiver, whose
        # HeartbeatMissing (severity critical) escalates by those steps.
        assert text.count("after 15m unacknowledged → second") == 2
        forced = re.search(r'aria-label="escalation steps of heartbeats\[1\]">(.*?)</ul>', text)
        assert forced is not None and forced.group(1) == tree.group(1)
        r = await client.get("/routes", params={"labels": "severity=critical\nteam=db"})
        steps = re.search(r'<ol class="escalate" id="route-escalate">(.*?)</ol>', unescape(r.text))
        assert steps is not None
        assert re.findall(r"<li>(.*?)</li>", steps.group(1)) == [
            "after 15m unacknowledged → second",
            "after 45m unacknowledged → manager",
        ]
        r = await client.get("/routes", params={"labels": "severity=critical\nteam=batch"})
        assert "none: nobody else is told if nobody acknowledges" in r.text


async def test_heartbeats_page(sqlite_url: str) -> None:
    clock = ManualClock(T0)
    async with running_app(sqlite_url, CONFIG, clock=clock) as (app, client):
        await app.state.services.sweeper.sweep_once()
        clock.advance(60)
        alert = am_alert({"alertname": "Watchdog", "cluster": "prod"}, starts_at=T0)
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.status_code == 200
        clock.set(T0 + timedelta(hours=1, minutes=5))
        await app.state.services.sweeper.sweep_once()
        page = await client.get("/heartbeats")
        assert page.status_code == 200
        assert '<a href="/heartbeats"' in page.text  # in the navigation
        rows = dict(re.findall(r'<tr id="heartbeat-([\w-]+)">(.*?)</tr>', page.text, re.S))
        assert set(rows) == {"prod-am", "staging-am"}
        # Both missing by now: prod-am since 10 minutes after its last proof.
        assert "MISSING" in rows["prod-am"] and "2026-11-21 19:27:43 UTC" in rows["prod-am"]
        assert "1h 4m" in rows["prod-am"]  # its age
        assert "never (watched since" in rows["staging-am"] and "MISSING" in rows["staging-am"]
        assert "by its labels" in rows["prod-am"] and ">chat<" in rows["staging-am"]


EVERY_SINK = """
route:
  receiver: page
  escalate: [{after: 15m, receiver: second}]
receivers:
  - name: page
    log_configs: [{}]
  - name: second
    pagerduty_configs: [{routing_key: R0UT1NGKEY0123456789abcdef012345}]
    slack_configs: [{api_url: "https://hooks.slack.com/services/T0/B0/XSECRETXSECRET"}]
    msteams_configs: [{webhook_url: "https://example.webhook.office.com/workflows/SECRETSECRET"}]
    googlechat_configs: [{url: "https://chat.googleapis.com/v1/spaces/S/messages?key=KEYKEYKEY&token=TOKENTOKEN"}]
    discord_configs: [{webhook_url: "https://discord.com/api/webhooks/1/SECRETSECRET"}]
    mattermost_configs: [{webhook_url: "https://mm.example.com/hooks/SECRETSECRET"}]
    opsgenie_configs: [{api_key: OPSGENIEKEY0123456789}]
    webhook_configs: [{url: "https://hooks.example.com/in"}]
    email_configs: [{to: a@example.com, from: b@example.com, smarthost: "localhost:25"}]
    log_configs: [{}]
"""


def test_every_integration_renders_an_escalation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``routes test --render --kind escalation``: what the first step's receiver
    is sent, by each integration: the escalation line in every one, and
    PagerDuty's trigger under the receiver's own key."""
    path = tmp_path / "every.yml"
    path.write_text(EVERY_SINK)
    args = ["routes", "test", "--config", str(path), "--render", "--kind", "escalation"]
    assert main([*args, "alertname=DiskFull", "severity=critical"]) == 0
    out = capsys.readouterr().out
    parts = re.split(r"^--- (second/\w+/0):.*$", out, flags=re.M)
    rendered = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert sorted(rendered) == sorted(
        f"second/{n}/0"
        for n in (
            "pagerduty",
            "slack",
            "msteams",
            "googlechat",
            "discord",
            "mattermost",
            "opsgenie",
            "webhook",
            "email",
            "log",
        )
    )
    for key, text in rendered.items():
        assert "Escalated: firing for 15m, notified: page" in text, key
    assert '"event_action": "trigger"' in rendered["second/pagerduty/0"]
    assert "/escalated/second" in rendered["second/pagerduty/0"]
    assert "[ESCALATED] DiskFull (critical)" in rendered["second/slack/0"]
