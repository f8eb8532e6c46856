"""A storm through ``alertrelay serve``: 300 alerts in 3 Alertmanager groups
fire at once, then all resolve.

Slack (through its Web API with a bot token and ``update_message: true``)
and email (aiosmtpd) group: Slack posts 3 messages for the firing and edits
them for the resolve (chat.update, no new message), email sends 3 mails and
3 resolve mails threaded under them.
PagerDuty does not: 300 triggers and 300 resolves. Run once straight through
and once with the serve process killed (SIGKILL) in the middle of delivering
the firing, restarted on the same database: nothing is lost.
"""

import contextlib
import email
import email.policy
import re
import signal
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.chat_fakes import FakeSlackAPI
from tests.e2e.harness import alertrelay, http_json, wait_until
from tests.helpers import am_alert, am_webhook, table_rows
from tests.integration.test_email import smtp_server
from tests.sinks import FakePagerDuty, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"
GROUPS = ("DiskFull", "HighLatency", "ErrorBudgetBurn")
PER_GROUP = 100
CONSOLE = "https://alertrelay.example.com"
SLACK_TOKEN = "xoxb-STORM-TEST-TOKEN-0123"


def relay_config(pd_url: str, slack_url: str, smtp_port: int) -> str:
    # PagerDuty is paced at 1.8 events/s by default (its documented limit);
    # the fake takes more, so the storm's 600 events do not take 6 minutes.
    return f"""
external_url: {CONSOLE}
delivery: {{timeout: 2s, lease: 4s, initial_backoff: 1s}}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route: {{receiver: ops}}
receivers:
  - name: ops
    pagerduty_configs:
      - routing_key: {KEY}
        url: "{pd_url}/v2/enqueue"
        rate_limit: {{per_second: 100, burst: 50}}
    slack_configs:
      - api_url: "{slack_url}/api/chat.postMessage"
        token: {SLACK_TOKEN}
        channel: "#storm"
        update_message: true
    email_configs:
      - to: ops@example.com
        from: alertrelay@example.com
        smarthost: 127.0.0.1:{smtp_port}
        require_tls: false
        send_resolved: true
"""


def group_webhook(name: str, status: str) -> dict[str, Any]:
    alerts = [
        am_alert(
            {"alertname": name, "instance": f"node-{i:03d}", "severity": "critical"},
            status=status,
            annotations={"summary": f"{name} on node-{i:03d}"},
        )
        for i in range(PER_GROUP)
    ]
    return am_webhook(
        alerts,
        group_key=f'{{}}:{{alertname="{name}"}}',
        groupLabels={"alertname": name},
        commonLabels={"alertname": name, "severity": "critical"},
    )


def post_all(url: str, status: str) -> None:
    for name in GROUPS:
        http_json("POST", url + "/webhook/alertmanager", group_webhook(name, status), timeout=30)


def mails(recorder: Any) -> list[EmailMessage]:
    with recorder.lock:
        accepted = list(recorder.accepted)
    return [
        email.message_from_bytes(m.content, policy=email.policy.default)  # type: ignore[misc]
        for m in accepted
    ]


def _settled(db_url: str, changes: int) -> bool:
    """Every row of ``changes`` storms (firing, then resolve) is sent."""
    rows = table_rows(db_url, "notifications")
    per_change = 3 + 3 + 3 * PER_GROUP  # Slack, email, PagerDuty
    return len(rows) == changes * per_change and all(r["status"] == "sent" for r in rows)


def _named_and_counted(text: str, name: str) -> set[str]:
    """The instances a group message names, plus placeholders for its "and N more"."""
    names = set(re.findall(rf"- (?:\([a-z ]+\) )?{name} instance=(node-\d+)", text))
    # Slack's mrkdwn link, or the plain "label: url" of a mail's text part.
    more = re.search(r"…and (\d+) more: (?:<([^|>]+)\||see all in the console: (\S+))", text)
    if more:
        assert (more.group(2) or more.group(3)).startswith(CONSOLE + "/alerts?"), text
        names |= {f"more-{i}" for i in range(int(more.group(1)))}
    return names


@pytest.mark.parametrize("kill", [False, True], ids=["straight", "kill-9"])
def test_storm_of_300_alerts_in_3_groups(tmp_path: Path, kill: bool) -> None:
    db_url = f"sqlite:///{tmp_path}/storm.db"
    pd, slack = FakePagerDuty(), FakeSlackAPI(token=SLACK_TOKEN)
    with (
        contextlib.ExitStack() as stack,
        serve(pd) as pd_url,
        serve(slack) as slack_url,
        smtp_server() as (smtp, port),
    ):
        config = relay_config(pd_url, slack_url, port)
        at_kill = ""
        with alertrelay(tmp_path, config, db_url, name="first") as relay:
            started = time.monotonic()  # the first webhook (the process is up)
            post_all(relay.url, "firing")
            if kill:
                # Mid-delivery: PagerDuty has part of its 300 triggers.
                wait_until(lambda: len(pd.requests()) >= 60, 60, what="deliveries to start")
                relay.kill(signal.SIGKILL)
                assert relay.process.returncode == -signal.SIGKILL
                at_kill = (
                    f"; at the kill: {len(pd.requests())} PagerDuty events, "
                    f"{len(slack.posts)} Slack posts, {len(mails(smtp))} mails"
                )
                assert len(pd.requests()) < 3 * PER_GROUP, "the kill came too late to matter"
                relay = stack.enter_context(alertrelay(tmp_path, config, db_url, name="second"))
            wait_until(lambda: _settled(db_url, 1), 180, interval=0.5, what="the firing sent")
            resolved_at = time.monotonic()
            post_all(relay.url, "resolved")
            wait_until(lambda: _settled(db_url, 2), 180, interval=0.5, what="every row sent")
            wait_until(lambda: len(mails(smtp)) >= 6, 30, what="the mails")
        finished = max(r.at for r in slack.requests() + pd.requests())
        last_edit = max(r.at for r in slack.requests() if r.path.endswith("/chat.update"))
        last_post = max(r.at for r in slack.requests() if r.path.endswith("/chat.postMessage"))

    # Chat: one message per group, posted when it fires and edited when it
    # resolves (a post cut by the kill may be repeated, never lost).
    posts, edits = list(slack.posts), list(slack.updates)
    bodies = posts + edits
    assert all(r.status == 200 for r in slack.requests())
    titles = [b["blocks"][0]["text"]["text"] for b in bodies]
    assert {b["blocks"][0]["text"]["text"] for b in posts} == {
        f"*[FIRING:100] alertname={n}: 100 firing*" for n in GROUPS
    }
    assert {b["blocks"][0]["text"]["text"] for b in edits} == {
        f"*[RESOLVED] alertname={n}: 100 resolved*" for n in GROUPS
    }
    assert (len(posts), len(edits)) == (3, 3) or kill, titles
    # What the channel shows at the end: the 3 messages, each resolved.
    shown = sorted(m["blocks"][0]["text"]["text"] for m in slack.messages.values())
    assert shown[-3:] == sorted(f"*[RESOLVED] alertname={n}: 100 resolved*" for n in GROUPS)
    # Every alert is named or counted in its group's messages, with the console link.
    for body in bodies:
        text = body["attachments"][0]["blocks"][0]["text"]["text"]
        name = re.search(r"alertname=(\w+)", body["text"]).group(1)  # type: ignore[union-attr]
        assert len(_named_and_counted(text, name)) == PER_GROUP, text

    # Email: 3 mails, then 3 resolve mails answering them; each names or counts
    # all 100 alerts of its group, with the console link.
    sent = mails(smtp)
    assert len(sent) == 6 or kill
    for m in sent:
        text = m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        name = re.search(r"alertname=(\w+)", str(m["Subject"])).group(1)  # type: ignore[union-attr]
        assert len(_named_and_counted(text, name)) == PER_GROUP, text
    first: dict[str, str] = {}
    for m in sent:
        subject = str(m["Subject"])
        name = re.search(r"alertname=(\w+)", subject).group(1)  # type: ignore[union-attr]
        if subject.startswith("[FIRING"):
            assert m["In-Reply-To"] is None
            # A mail the kill made send twice is the same message (one Message-ID).
            assert first.setdefault(name, str(m["Message-ID"])) == str(m["Message-ID"])
    assert sorted(first) == sorted(GROUPS)
    for m in sent:
        subject = str(m["Subject"])
        if subject.startswith("[RESOLVED"):
            name = re.search(r"alertname=(\w+)", subject).group(1)  # type: ignore[union-attr]
            assert m["In-Reply-To"] == first[name] == m["References"]

    # PagerDuty: per alert, as before; every incident the storm opened is closed.
    events = [r.json() for r in pd.requests()]
    triggers = {e["dedup_key"] for e in events if e["event_action"] == "trigger"}
    resolves = {e["dedup_key"] for e in events if e["event_action"] == "resolve"}
    assert len(triggers) == len(resolves) == 3 * PER_GROUP and triggers == resolves
    assert pd.open_incidents() == [] and pd.dropped == []
    # Repeats only of sends the kill cut short (their claim was recorded,
    # their outcome not: the restart counts them as interrupted).
    attempts = table_rows(db_url, "delivery_attempts")
    interrupted = sum(1 for a in attempts if a["outcome"] == "interrupted")
    assert (interrupted > 0) == kill
    assert 600 <= len(events) <= 600 + interrupted
    assert len(bodies) + len(sent) <= 12 + interrupted
    # A handful per group at most: repeats only of posts the kill cut short.
    assert len(posts) <= 3 + interrupted and len(edits) <= 3 + interrupted
    assert {r["status"] for r in table_rows(db_url, "notifications")} == {"sent"}

    print(
        f"\nstorm ({'kill -9' if kill else 'straight'}): Slack {len(posts)} posts + "
        f"{len(edits)} edits, {len(sent)} mails, {len(events)} PagerDuty events "
        f"({interrupted} sends interrupted by the kill); first webhook to last Slack "
        f"edit {last_edit - started:.1f} s, to last message {finished - started:.1f} s; "
        f"first webhook to last firing Slack post {last_post - started:.1f} s; resolve "
        f"webhooks to last Slack edit {last_edit - resolved_at:.1f} s{at_kill}"
    )
