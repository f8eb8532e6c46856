"""Flapping end to end: the real Alertmanager toggling an alert into alertrelay."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.harness import (
    alertmanager,
    alertrelay,
    am_post_alerts,
    http_json,
    needs_alertmanager,
    wait_until,
)
from tests.sinks import FakePagerDuty, WebhookSink, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"
LABELS = {"alertname": "E2EFlap", "severity": "critical", "instance": "db-1"}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@needs_alertmanager
def test_toggling_alert_gives_one_flapping_notice_and_one_stable_notice(tmp_path: Path) -> None:
    pd, chat, slack = (
        FakePagerDuty(),
        WebhookSink(),
        WebhookSink(),
    )  # WebhookSink answers 200 "ok", as Slack does
    token = tmp_path / "token"
    token.write_text("t0k3n")
    with serve(pd) as pd_url, serve(chat) as chat_url, serve(slack) as slack_url:
        # Toggling every 1.5 s with a 5 s half-life: transitions add up to
        # 1.00, 1.81, 2.47, 3.01, 3.44 (decay 2^(-1.5/5) between them), so
        # the 5th, and not the 4th, reaches 3.2 and starts the flap. Scores
        # are taken at the transitions' own times, so this does not depend on
        # when Alertmanager delivers them.
        relay_config = f"""
auth: {{webhook_token: t0k3n}}
flapping: {{half_life: 5s, enter_score: 3.2, exit_score: 1.5, max_score: 8, sweep_interval: 500ms}}
delivery: {{timeout: 5s, lease: 20s}}
route: {{receiver: page}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
    webhook_configs: [{{url: "{chat_url}/chat"}}]
    slack_configs: [{{api_url: "{slack_url}/services/T0/B0/XXXX", grouping: alert, rate_limit: {{per_second: 0}}}}]
"""
        am_config = f"""
route:
  receiver: alertrelay
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: alertrelay
    webhook_configs:
      - url: RELAY/webhook/alertmanager
        send_resolved: true
        http_config: {{authorization: {{type: Bearer, credentials_file: {token}}}}}
"""
        with alertrelay(tmp_path, relay_config) as relay:
            with alertmanager(tmp_path, am_config.replace("RELAY", relay.url)) as am:
                start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
                for i in range(8):  # F R F R F(flap) R F R, 1.5 s apart
                    at = start + timedelta(seconds=1.5 * i)
                    while datetime.now(UTC) < at:
                        time.sleep(0.02)
                    occurrence = start + timedelta(seconds=3 * (i // 2))
                    ends = at + timedelta(hours=1) if i % 2 == 0 else at
                    am_post_alerts(
                        am,
                        [
                            {
                                "labels": LABELS,
                                "annotations": {"summary": "flaps"},
                                "startsAt": _iso(occurrence),
                                "endsAt": _iso(ends),
                            }
                        ],
                    )
                wait_until(
                    lambda: (
                        len(http_json("GET", relay.url + f"/api/v1/alerts/{_fp()}")["transitions"])
                        == 8
                    ),
                    30,
                    what="all 8 transitions",
                )
                detail = http_json("GET", relay.url + f"/api/v1/alerts/{_fp()}")
                assert detail["flap"]["flapping"] is True
                during = [b["kind"] for b in chat.bodies()]
                # Calm ~8 s after the last transition (5 s * log2(4.32 / 1.5)); then one stable notice.
                wait_until(
                    lambda: chat.bodies() and chat.bodies()[-1]["kind"] == "stable",
                    40,
                    interval=0.25,
                    what="the stable notice",
                )
                time.sleep(2)  # nothing more may follow
    kinds = [b["kind"] for b in chat.bodies()]
    assert during == ["firing", "resolved", "firing", "resolved", "flapping"]
    assert kinds == ["firing", "resolved", "firing", "resolved", "flapping", "stable"]
    assert chat.bodies()[-1]["status"] == "resolved"
    suppressed = [t["suppressed"] for t in reversed(detail["transitions"])]
    assert suppressed == [None, None, None, None, "flapping", "flapping", "flapping", "flapping"]
    # PagerDuty: the first two incidents opened and closed normally, the flap held
    # one open, and the stable notice closed it. Nothing open for a resolved alert.
    actions = [(e["event_action"]) for i in pd.all_incidents() for e in i["events"]]
    assert actions == ["trigger", "resolve", "trigger", "resolve", "trigger", "resolve"]
    assert pd.open_incidents() == [] and pd.dropped == []
    summary = pd.all_incidents()[2]["events"][0]["payload"]["summary"]
    assert "FLAPPING" in summary and "5 transitions" in summary, summary
    # The chat integration got the same story: four per-transition messages,
    # one flapping message naming the count, one stable message, nothing else.
    texts = [json.dumps(r.json()) for r in slack.requests()]
    assert len(texts) == 6, texts
    assert all(r.status == 200 for r in slack.requests())
    assert not any("FLAPPING" in t or "STABLE" in t for t in texts[:4]), texts[:4]
    assert "FLAPPING" in texts[4] and "5 transitions" in texts[4], texts[4]
    assert "STABLE" in texts[5] and "RESOLVED" in texts[5], texts[5]


def _fp() -> str:
    from app.core.fingerprint import fingerprint

    return fingerprint(LABELS)
