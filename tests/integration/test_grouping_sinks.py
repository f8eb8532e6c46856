"""Every chat sink and email with a grouped message of 300 alerts: the
request stays within the sink's limits by listing fewer alerts, and what is
not listed is counted ("and N more") with the console link; nothing fails.With acknowledge links on, each listed firing line carries its own link
(a token for that alert, its occurrence and the receiver): the fitting
counts the link's characters, so fewer lines are listed, still within the
limits, and every listed line's link acks the right alert."""

import email
import email.policy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from app.config.compiled import compile_config
from app.core.acklink import read_token
from app.core.domain import AlertRecord, NoticeKind, Status
from app.core.grouping import (
    GroupState,
    ack_link_maker,
    group_id,
    group_payload,
    group_view_payload,
)
from app.core.notices import Notice, incident_key
from app.notifiers import discord, googlechat, mattermost, msteams, slack
from tests.conftest import load
from tests.helpers import sink_message, sink_notifier

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
N = 300
CONSOLE = "https://alertrelay.example.com"

CONFIG = """
external_url: https://alertrelay.example.com
global: {smtp_smarthost: "smtp.example.com:587", smtp_from: alertrelay@example.com}
route: {receiver: r}
receivers:
  - name: r
    slack_configs: [{api_url: "https://hooks.slack.com/services/T/B/SECRETSECRET", max_alerts_per_message: 300}]
    msteams_configs: [{webhook_url: "https://x.webhook.office.com/w?sig=SECRETSIG", max_alerts_per_message: 300}]
    googlechat_configs: [{url: "https://chat.googleapis.com/v1/spaces/A/messages?key=K&token=SECRETTOKEN", max_alerts_per_message: 300}]
    discord_configs: [{webhook_url: "https://discord.com/api/webhooks/1/SECRETTOKEN", max_alerts_per_message: 300}]
    mattermost_configs: [{webhook_url: "https://mm.example.com/hooks/SECRETHOOK", max_alerts_per_message: 300}]
    email_configs: [{to: ops@example.com, smarthost: "smtp.example.com:587", from: alertrelay@example.com, max_alerts_per_message: 300}]
"""
SECRET = "link-secret-0123456789abcdef"
LINKS = f"auth: {{link_secret: {SECRET}}}\n"


def record(i: int, summary_len: int) -> AlertRecord:
    return AlertRecord(
        fingerprint=f"{i:016x}",
        labels={"alertname": "DiskFull", "instance": f"db-{i:03d}", "severity": "critical"},
        annotations={"summary": f"db-{i:03d} " + "x" * summary_len},
        status=Status.FIRING,
        starts_at=T0,
        ends_at=None,
        generator_url="",
        source="alertmanager",
        group_key='{}:{alertname="DiskFull"}',
        first_seen=T0,
        last_seen=T0,
        last_changed=T0,
        runbook_url="https://runbooks.example.com/diskfull?section=" + "y" * 40,
    )


def payload(name: str, summary_len: int, links: bool = False) -> tuple[dict[str, Any], Any]:
    runtime = compile_config(load(CONFIG + (LINKS if links else "")))
    (integration,) = [i for i in runtime.receivers["r"] if i.name == name]
    members = {r.fingerprint: r for r in (record(i, summary_len) for i in range(N))}
    notices = {
        fp: Notice(NoticeKind.FIRING, Status.FIRING, T0, incident_key(fp, T0), "firing|x")
        for fp in members
    }
    key = '{}:{alertname="DiskFull"}'
    state = GroupState(group_id(key), key, {"alertname": "DiskFull"}, T0, True)
    view = group_view_payload(
        state,
        members,
        notices,
        integration,
        opened=True,
        console_url=CONSOLE,
        now=T0,
        link_for=ack_link_maker(runtime, integration, T0),
    )
    data = group_payload(view, NoticeKind.FIRING, list(notices.values()), members, T0)
    return dict(data), integration.config


def count_listed(text: str) -> tuple[int, int]:
    """Alerts named in ``text`` and the "and N more" count."""
    listed = text.count("DiskFull instance=db-") + text.count("DiskFull instance\\=db-")
    marker = "…and "
    assert marker in text, text[-300:]
    more = int(text.split(marker, 1)[1].split(" ", 1)[0])
    return listed, more


def check_links(text: str, listed: int) -> None:
    """Every listed line has its own link, whose token names its alert and the receiver."""
    lines = [
        line
        for line in text.replace("<br>", "\n").splitlines()
        if "DiskFull" in line and "db-" in line
    ]
    assert len(lines) == listed
    for line in lines:
        # Teams escapes its markdown text whole; its renderer shows "\_" as "_".
        line = line.replace("\\_", "_")
        token = line.split("/ack/", 1)[1].split("|")[0].split(")")[0].split()[0].rstrip(">")
        claims = read_token(SECRET.encode(), token, T0)
        number = int(line.split("db-", 1)[1][:3])
        assert claims.fingerprint == f"{number:016x}"
        assert claims.receiver == "r" and claims.occurrence == T0


@pytest.mark.parametrize("links", [False, True], ids=["plain", "ack-links"])
@pytest.mark.parametrize("summary_len", [10, 400])
@pytest.mark.parametrize("name", ["slack", "msteams", "googlechat", "discord", "mattermost"])
async def test_300_alerts_fit_each_chat_sink(name: str, summary_len: int, links: bool) -> None:
    data, cfg = payload(name, summary_len, links)
    async with sink_notifier(name, cfg) as n:
        request = n.prepare(sink_message(data, cfg))
    body = json.loads(request.body)
    if name == "slack":
        text = body["attachments"][0]["blocks"][0]["text"]["text"]
        assert len(text) <= slack.SECTION_LIMIT
        assert len(json.dumps(body["attachments"][0]["blocks"], ensure_ascii=False)) < 13_000
    elif name == "discord":
        text = body["embeds"][0]["description"]
        assert len(text) <= discord.DESCRIPTION_LIMIT
        assert discord.embed_length(body["embeds"][0]) <= discord.EMBED_TOTAL_LIMIT
    elif name == "mattermost":
        text = body["text"]
        assert len(text) <= mattermost.POST_LIMIT
    elif name == "msteams":
        text = body["attachments"][0]["content"]["body"][1]["text"]
        assert len(request.body) <= msteams.REQUEST_LIMIT
    else:
        text = body["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
        assert len(request.body) <= googlechat.MESSAGE_LIMIT
    listed, more = count_listed(text)
    assert listed >= (3 if links else 5) and listed + more == N, (listed, more)
    assert "alertrelay.example.com/alerts?state=active" in text
    if links:
        check_links(text, listed)
    else:
        assert "/ack/" not in text


@pytest.mark.parametrize("links", [False, True], ids=["plain", "ack-links"])
async def test_300_alerts_in_one_mail_are_all_listed(links: bool) -> None:
    data, cfg = payload("email", 400, links)
    async with sink_notifier("email", cfg) as n:
        request = n.prepare(sink_message(data, cfg))
    mail = email.message_from_bytes(request.body, policy=email.policy.default)
    text, html = (part.get_content() for part in mail.iter_parts())  # type: ignore[attr-defined]
    listed, more = count_listed(text)  # the text part's own limit lists fewer
    assert listed > 100 and listed + more == N
    assert html.count("<strong>DiskFull</strong>") == N
    assert mail["Message-ID"].startswith("<g.")
    if links:
        check_links(text, listed)
        assert html.count(">Acknowledge</a>") == N
    else:
        assert "/ack/" not in text + html
