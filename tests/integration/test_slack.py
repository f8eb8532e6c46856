"""Slack incoming webhooks against a local fake Slack.

The fake answers ``ok`` like Slack and enforces the limits Slack documents
(≤ 50 blocks, section text ≤ 3,000 characters, ~13k characters of blocks),
answering Slack's own error strings when a message breaks them.
"""

import json
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from app.core.domain import NoticeKind
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers.base import DeliveryError, Notifier
from app.notifiers.slack import SlackConfig
from tests.chat_fakes import FakeSlackAPI
from tests.conformance import CANARY_PATH, CANARY_TOKEN, Case, Operation
from tests.helpers import notice_payload, sink_message, sink_notifier
from tests.sinks import Received, Reply, Sink, WebhookSink, serve

HOOK_PATH = "/services/T0000/B0000/SLACKSECRETxxxxxxxxxx"
ZWJ = "\u200d"


def _blocks(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(data.get("blocks") or [])
    for attachment in data.get("attachments") or []:
        out += attachment.get("blocks") or []
    return out


def mrkdwn_texts(data: dict[str, Any]) -> list[str]:
    """Every mrkdwn string of a message: the fallback, sections and context elements."""
    texts = [data["text"]]
    for block in _blocks(data):
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
    return texts


class FakeSlack(Sink):
    """``ok`` for a message Slack would take; Slack's error strings for one it would not."""

    default = Reply(200, "ok", headers={"Content-Type": "text/html"})

    def decide(self, body: bytes, reply: Reply) -> Reply:
        if reply.status != 200:
            return reply
        try:
            data = json.loads(body)
        except ValueError:
            return Reply(400, "invalid_payload")
        if not isinstance(data, dict) or not data.get("text"):
            return Reply(400, "missing_text_or_fallback_or_attachments")
        blocks = _blocks(data)
        sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
        if len(blocks) > 50 or any(len(t) > 3000 for t in sections):
            return Reply(400, "invalid_blocks")
        if len(json.dumps(blocks, ensure_ascii=False)) > 13000:
            return Reply(400, "msg_blocks_too_long")
        return reply

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests()]


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[tuple[FakeSlack, str]]:
    sink = FakeSlack()
    with serve(sink) as base:
        yield sink, base


def payload(**over: Any) -> dict[str, Any]:
    return notice_payload(**over)


def config(url: str, **extra: Any) -> SlackConfig:
    return SlackConfig.model_validate({"api_url": url + HOOK_PATH, **extra})


def message(cfg: SlackConfig | None = None, **over: Any) -> Message:
    """The message as the delivery loop builds it, with the config's overrides."""
    return sink_message(payload(**over), cfg)


def slack(cfg: SlackConfig) -> AbstractAsyncContextManager[Notifier]:
    return sink_notifier("slack", cfg)


async def deliver(
    fake_slack: tuple[FakeSlack, str], m: Message | None = None, *replies: Reply, **extra: Any
) -> Received:
    sink, base = fake_slack
    sink.reset()
    sink.script(*replies)
    cfg = config(base, **extra)
    async with slack(cfg) as notifier:
        await notifier.send(m if m is not None else message(cfg))
    (received,) = sink.requests()
    return received


async def test_request_is_exactly_the_documented_message(fake_slack: tuple[FakeSlack, str]) -> None:
    received = await deliver(fake_slack)
    assert received.path == HOOK_PATH
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == "alertrelay"
    assert "authorization" not in received.headers
    assert int(received.headers["content-length"]) == len(received.body)
    title = "[FIRING] DiskFull (critical): disk almost full"
    body = "/var is 97% full\nLabels: instance=db-1, severity=critical"
    assert received.json() == {
        "text": f"{title}\n{body}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*", "verbatim": True}}
        ],
        "attachments": [
            {
                "color": "#D92D20",
                "fallback": title,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": body, "verbatim": True}},
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "*Status:* FIRING", "verbatim": True},
                            {"type": "mrkdwn", "text": "*Severity:* critical", "verbatim": True},
                            {
                                "type": "mrkdwn",
                                "text": "*Started:* 2026-11-22T10:00:00Z",
                                "verbatim": True,
                            },
                            {
                                "type": "mrkdwn",
                                "text": "<http://prometheus:9090/graph?g0.expr=up&amp;g0.tab=1|Source>",
                                "verbatim": True,
                            },
                        ],
                    },
                    {
                        "type": "actions",
                        "elements": [
                            {
                                "type": "button",
                                "action_id": "runbook",
                                "text": {"type": "plain_text", "text": "Runbook"},
                                "url": "https://runbooks.example.com/diskfull",
                            }
                        ],
                    },
                ],
            }
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


async def test_channel_username_and_icon_only_when_configured(
    fake_slack: tuple[FakeSlack, str],
) -> None:
    plain = (await deliver(fake_slack)).json()
    assert not {"channel", "username", "icon_emoji"} & set(plain)
    legacy = (
        await deliver(fake_slack, None, channel="#ops", username="alertrelay", icon_emoji=":fire:")
    ).json()
    assert (legacy["channel"], legacy["username"], legacy["icon_emoji"]) == (
        "#ops",
        "alertrelay",
        ":fire:",
    )


async def test_prepare_is_what_send_sends(fake_slack: tuple[FakeSlack, str]) -> None:
    sink, base = fake_slack
    cfg = config(base)
    m = message(cfg, duplicates=3)
    async with slack(cfg) as notifier:
        prepared = notifier.prepare(m)
    received = await deliver(fake_slack, m)
    assert prepared.method == "POST" and prepared.url == base + HOOK_PATH
    assert prepared.body == received.body
    assert prepared.headers == {"Content-Type": "application/json"}
    assert "*Duplicates:* 3" in _context(received.json())


async def test_destination_secrets_and_rate_limit(fake_slack: tuple[FakeSlack, str]) -> None:
    _, base = fake_slack
    async with slack(config(base)) as notifier, slack(config(base + "/other")) as other:
        assert "SLACKSECRET" not in notifier.destination()
        assert notifier.destination() != other.destination()
        assert notifier.secrets() == [base + HOOK_PATH, HOOK_PATH.rpartition("/")[2]]
        assert notifier.rate_limit() == RateLimit(per_second=1.0, burst=1)


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "said"),
    [
        (
            Reply(400, "invalid_payload"),
            False,
            None,
            "invalid_payload (Slack could not read the message)",
        ),
        (
            Reply(400, "invalid_blocks"),
            False,
            None,
            "invalid_blocks (Slack rejected the message's blocks)",
        ),
        (Reply(400, "user_not_found"), False, None, "user_not_found"),
        (Reply(403, "action_prohibited"), False, None, "action_prohibited (a workspace admin"),
        (Reply(403, "invalid_token"), False, None, "invalid_token (the webhook was revoked"),
        (
            Reply(404, "channel_not_found"),
            False,
            None,
            "channel_not_found (the webhook's channel does not exist",
        ),
        (
            Reply(410, "channel_is_archived"),
            False,
            None,
            "channel_is_archived (the webhook's channel is archived)",
        ),
        (Reply(429, "rate_limited", headers={"Retry-After": "3"}), True, 3.0, "rate_limited"),
        (
            Reply(429, {"retry_after": 1, "ok": False, "error": "rate_limited"}),
            True,
            1.0,
            "rate_limited",
        ),
        (Reply(500, "rollup_error"), True, None, "rollup_error"),
        (Reply(503, "", headers={"Retry-After": "5"}), True, 5.0, "HTTP 503"),
        # Slack's success is exactly "ok": any other 2xx did not post.
        (Reply(200, "invalid_payload"), False, None, 'HTTP 200 without "ok": invalid_payload'),
        (Reply(200, ""), False, None, 'HTTP 200 without "ok": (empty answer)'),
        (Reply(200, "okay"), False, None, 'without "ok": okay'),
        (Reply(204, ""), False, None, "HTTP 204"),
        (Reply(200, "rate_limited"), True, None, 'HTTP 200 without "ok": rate_limited'),
        (
            Reply(200, {"ok": False, "error": "rate_limited", "retry_after": 2}),
            True,
            2.0,
            "rate_limited",
        ),
    ],
    ids=lambda v: f"{v.status}-{str(v.body)[:20]}" if isinstance(v, Reply) else None,
)
async def test_error_mapping(
    fake_slack: tuple[FakeSlack, str],
    reply: Reply,
    retryable: bool,
    retry_after: float | None,
    said: str,
) -> None:
    with pytest.raises(DeliveryError) as info:
        await deliver(fake_slack, None, reply)
    err = info.value
    assert (err.retryable, err.status_code, err.retry_after) == (
        retryable,
        reply.status,
        retry_after,
    )
    assert said in err.message
    assert "SLACKSECRET" not in err.message


async def test_answer_ok_with_newline_is_success(fake_slack: tuple[FakeSlack, str]) -> None:
    received = await deliver(fake_slack, None, Reply(200, "ok\n"))
    assert received.status == 200


async def test_huge_alert_is_cut_to_slack_limits_with_a_marker(
    fake_slack: tuple[FakeSlack, str],
) -> None:
    # Escaping makes "<" four characters long; the cut lands inside an entity.
    description = "x" + "<" * 40_000
    m = message(
        None,
        annotations={"summary": "s" * 5000, "description": description},
        labels={"alertname": "DiskFull", **{f"l{i}": "v" * 200 for i in range(200)}},
        runbook_url="https://runbooks.example.com/" + "r" * 4000,
        generator_url="http://prometheus:9090/graph?g0.expr=" + "x" * 4000,
    )
    received = await deliver(fake_slack, m)  # the fake answers ok only within Slack's limits
    data = received.json()
    section = data["attachments"][0]["blocks"][0]["text"]["text"]
    # 2,999 characters and the marker would end in "&l…": the half entity goes too.
    assert section == "x" + "&lt;" * 749 + "…"
    title = data["blocks"][0]["text"]["text"]
    assert len(title) == 1024 + 2 and title.endswith("…*")
    assert len(data["text"]) <= 1500 and data["text"].endswith("…")
    assert len(received.body.decode()) < 9000  # well under the ~12k Slack starts refusing at
    # Links too long for a button are left out rather than break the message.
    assert [b["type"] for b in _blocks(data)] == ["section", "section", "context"]
    assert not any("Source" in t for t in mrkdwn_texts(data))


@pytest.fixture(scope="module")
def hostile_labels() -> dict[str, str]:
    return {
        "alertname": "DiskFull",
        "a": "<!channel>",
        "b": "<https://evil.example|click>",
        "c": "@here",
        "d": "&amp;",
        "e": "*bold*",
        "f": "line1\nRESOLVED all good",
        "g": "<@U024BE7LH> and <#C024BE7LH>",
        "h": "{{ 7*7 }}",
    }


async def test_injection_through_labels_is_inert(
    fake_slack: tuple[FakeSlack, str], hostile_labels: dict[str, str]
) -> None:
    m = message(
        None,
        labels=hostile_labels,
        annotations={"summary": "<!here> now", "description": "<!everyone> & @channel"},
        severity="<!channel>",
    )
    received = await deliver(fake_slack, m)
    raw = received.body.decode()
    for token in ("<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U024", "<#C024"):
        assert token not in raw
    assert re.search(r"(?<!\w)@(here|channel)", raw) is None
    data = received.json()
    body = data["attachments"][0]["blocks"][0]["text"]["text"]
    assert body == (
        "&lt;!everyone&gt; &amp; @\u200dchannel\n"
        "Labels: a=&lt;!channel&gt;, b=&lt;https://evil.example|click&gt;, c=@\u200dhere, "
        "d=&amp;amp;, e=*bold*, f=line1 RESOLVED all good, "
        "g=&lt;@\u200dU024BE7LH&gt; and &lt;#C024BE7LH&gt;, h={{ 7*7 }}"
    )
    assert (
        data["blocks"][0]["text"]["text"]
        == "*[FIRING] DiskFull (&lt;!channel&gt;): &lt;!here&gt; now*"
    )
    # The only Slack markup in the whole message is the link we built ourselves.
    tokens = [t for text in mrkdwn_texts(data) for t in re.findall(r"<[^>]*>", text)]
    assert tokens == ["<http://prometheus:9090/graph?g0.expr=up&amp;g0.tab=1|Source>"]


async def test_links_we_build_cannot_be_broken_by_the_url(
    fake_slack: tuple[FakeSlack, str],
) -> None:
    m = message(None, generator_url="http://prometheus:9090/graph?x=a|b>c<d&e")
    data = (await deliver(fake_slack, m)).json()
    assert "<http://prometheus:9090/graph?x=a%7Cb%3Ec%3Cd&amp;e|Source>" in mrkdwn_texts(data)


async def test_title_and_text_overrides(fake_slack: tuple[FakeSlack, str]) -> None:
    sink, base = fake_slack
    cfg = config(
        base,
        title="{{ labels.team }} paged: {{ summary }}",
        text="*{{ labels.team }}* on call\n{{ description }} <!channel>\nSee {{ runbook_url }}",
    )
    m = message(
        cfg,
        labels={"alertname": "DiskFull", "team": "ops<@U1>", "severity": "warning"},
        annotations={"summary": "disk <b>full</b>", "description": "@here 97%"},
        severity="warning",
    )
    data = (await deliver(fake_slack, m)).json()
    assert (
        data["blocks"][0]["text"]["text"]
        == "*ops&lt;@\u200dU1&gt; paged: disk &lt;b&gt;full&lt;/b&gt;*"
    )
    # The operator's mrkdwn formatting works; links and mentions, even the operator's own, do not.
    assert data["attachments"][0]["blocks"][0]["text"]["text"] == (
        "*ops&lt;@\u200dU1&gt;* on call\n@\u200dhere 97% &lt;!channel&gt;\n"
        "See https://runbooks.example.com/diskfull"
    )
    assert data["attachments"][0]["color"] == "#F79009"


async def test_a_failing_override_falls_back_to_the_default(
    fake_slack: tuple[FakeSlack, str],
) -> None:
    _, base = fake_slack
    cfg = config(base, title="{{ labels.missing.deeper }}")
    data = (await deliver(fake_slack, message(cfg))).json()
    assert data["blocks"][0]["text"]["text"] == "*[FIRING] DiskFull (critical): disk almost full*"


def _context(data: dict[str, Any]) -> list[str]:
    (context,) = [b for b in _blocks(data) if b["type"] == "context"]
    return [e["text"] for e in context["elements"]]


async def test_flapping_notice_looks_distinct(fake_slack: tuple[FakeSlack, str]) -> None:
    flap = {"score": 4.2, "flapping": True, "transitions": 5}
    firing = (await deliver(fake_slack, message(None))).json()
    flapping = (await deliver(fake_slack, message(None, kind="flapping", flap=flap))).json()
    stable = (
        await deliver(
            fake_slack, message(None, kind="stable", status="resolved", flap={**flap, "score": 1.4})
        )
    ).json()
    assert firing["attachments"][0]["color"] == "#D92D20"
    assert flapping["attachments"][0]["color"] == "#7A5AF8"
    assert stable["attachments"][0]["color"] == "#12B76A"
    assert flapping["blocks"][0]["text"]["text"] == (
        "*[FLAPPING] DiskFull (critical): 5 transitions, notifications paused until it settles*"
    )
    assert (
        ":repeat: Flapping: 5 transitions, score 4.20; notifications paused until it settles"
        in _context(flapping)
    )
    assert "*Status:* FLAPPING" in _context(flapping)
    assert not any("Flapping" in t for t in _context(firing))
    assert ":white_check_mark: Stopped flapping (score 1.40)" in _context(stable)
    assert "*Status:* STABLE, RESOLVED" in _context(stable)


@pytest.mark.parametrize(
    ("over", "colour"),
    [
        ({"severity": "critical"}, "#D92D20"),
        ({"severity": "page"}, "#D92D20"),
        ({"severity": "error"}, "#D92D20"),
        ({"severity": "Warning"}, "#F79009"),
        ({"severity": "info"}, "#2E90FA"),
        ({"severity": "none"}, "#98A2B3"),
        ({"severity": ""}, "#98A2B3"),
        ({"kind": "resolved", "status": "resolved", "ends_at": "2026-11-22T10:05:00Z"}, "#12B76A"),
        ({"kind": "reminder"}, "#D92D20"),
    ],
)
async def test_colour_follows_severity_and_state(
    fake_slack: tuple[FakeSlack, str], over: dict[str, Any], colour: str
) -> None:
    data = (await deliver(fake_slack, message(None, **over))).json()
    assert data["attachments"][0]["color"] == colour


async def test_resolved_notice_says_when_it_ended(fake_slack: tuple[FakeSlack, str]) -> None:
    m = message(
        None, kind=NoticeKind.RESOLVED.value, status="resolved", ends_at="2026-11-22T10:05:00Z"
    )
    data = (await deliver(fake_slack, m)).json()
    assert data["blocks"][0]["text"]["text"] == "*[RESOLVED] DiskFull (critical): disk almost full*"
    assert "*Ended:* 2026-11-22T10:05:00Z" in _context(data)


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {"api_url": f"{url}/services/{CANARY_PATH}"},
    Reply(200, "ok"),
    extra_dead=[
        Reply(404, "channel_not_found"),
        Reply(410, "channel_is_archived"),
        Reply(200, "invalid_payload"),
    ],
    extra_retry=[
        Reply(500, "rollup_error"),
        Reply(429, {"ok": False, "error": "rate_limited", "retry_after": 1}),
    ],
    operations=[
        Operation(
            op,
            lambda: FakeSlackAPI(token=CANARY_TOKEN),
            lambda url, op=op: {
                "api_url": f"{url}/api/chat.postMessage",
                "token": CANARY_TOKEN,
                "channel": "#alerts",
                "update_message": op == "edit",
            },
            ref=None if op == "post" else {"channel": "C0ALERTS", "ts": "1700000000.000001"},
            extra_dead=[
                Reply(200, {"ok": False, "error": "invalid_auth"}),
                Reply(200, {"ok": False, "error": "channel_not_found"}),
                Reply(200, {"ok": False, "error": "not_in_channel"}),
                Reply(200, "<html>not slack</html>"),
            ],
            extra_retry=[
                Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "3"}),
                Reply(200, {"ok": False, "error": "internal_error"}),
            ],
        )
        for op in ("post", "edit", "reply")
    ],
)
