"""Mattermost incoming webhooks against a local fake Mattermost.

The fake answers ``ok`` like Mattermost, refuses what Mattermost cannot parse
with its JSON error, and refuses a post over 16,383 characters (the real
server would split it into several posts).
"""

import json
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers.base import DeliveryError, Notifier
from app.notifiers.mattermost import MattermostConfig
from tests.chat_fakes import FakeMattermostAPI
from tests.conformance import CANARY_PATH, CANARY_TOKEN, Case, Operation
from tests.helpers import notice_payload, sink_message, sink_notifier
from tests.sinks import Received, Reply, Sink, WebhookSink, serve

HOOK_PATH = "/hooks/mmsecretkey0123456789abcd"
ZWJ = "\u200d"
# What Mattermost rewrites before rendering (server/public/model/slack_attachment.go, app/slack.go).
SLACK_LINK = re.compile(r"<([^\n<\|>]+)\|([^\n>]+)>")
ANNOUNCEMENTS = ("<!channel>", "<!here>", "<!all>")


def _error(status: int, ident: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "id": ident,
            "message": message,
            "detailed_error": "",
            "request_id": "r1",
            "status_code": status,
        },
    )


class FakeMattermost(Sink):
    default = Reply(200, "ok", headers={"Content-Type": "text/plain"})

    def decide(self, body: bytes, reply: Reply) -> Reply:
        if reply.status != 200:
            return reply
        try:
            data = json.loads(body)
        except ValueError:
            return _error(
                400, "web.incoming_webhook.parse.app_error", "Unable to parse incoming data"
            )
        if not isinstance(data, dict) or not (data.get("text") or data.get("attachments")):
            return _error(400, "web.incoming_webhook.text.app_error", "No text specified")
        if len(data.get("text", "")) > 16383:
            return _error(400, "test.fake.too_long", "would be split into several posts")
        return reply


@pytest.fixture(scope="module")
def fake_mm() -> Iterator[tuple[FakeMattermost, str]]:
    sink = FakeMattermost()
    with serve(sink) as base:
        yield sink, base


def payload(**over: Any) -> dict[str, Any]:
    return notice_payload(
        **{
            "labels": {"alertname": "DiskFull", "severity": "warning", "instance": "db-1"},
            "severity": "warning",
            "generator_url": "http://prometheus:9090/graph?g0.expr=up",
            "runbook_url": "https://runbooks.example.com/disk_full",
            **over,
        }
    )


def config(url: str, **extra: Any) -> MattermostConfig:
    return MattermostConfig.model_validate({"webhook_url": url + HOOK_PATH, **extra})


def message(cfg: MattermostConfig | None = None, **over: Any) -> Message:
    """The message as the delivery loop builds it, with the config's overrides."""
    return sink_message(payload(**over), cfg)


def mattermost(cfg: MattermostConfig) -> AbstractAsyncContextManager[Notifier]:
    return sink_notifier("mattermost", cfg)


async def deliver(
    fake_mm: tuple[FakeMattermost, str], m: Message | None = None, *replies: Reply, **extra: Any
) -> Received:
    sink, base = fake_mm
    sink.reset()
    sink.script(*replies)
    cfg = config(base, **extra)
    async with mattermost(cfg) as notifier:
        await notifier.send(m if m is not None else message(cfg))
    (received,) = sink.requests()
    return received


async def test_request_is_exactly_the_documented_post(fake_mm: tuple[FakeMattermost, str]) -> None:
    received = await deliver(fake_mm)
    assert received.path == HOOK_PATH
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == "alertrelay"
    assert "authorization" not in received.headers
    assert received.json() == {
        "text": (
            "**[FIRING] DiskFull (warning): disk almost full**\n"
            "/var is 97% full\n"
            "Labels: instance=db-1, severity=warning\n"
            "[Runbook](https://runbooks.example.com/disk_full) · [Source](http://prometheus:9090/graph?g0.expr=up)"
        ),
        "attachments": [
            {
                "fallback": "[FIRING] DiskFull (warning): disk almost full",
                "color": "#F79009",
                "fields": [
                    {"short": True, "title": "Status", "value": "FIRING"},
                    {"short": True, "title": "Severity", "value": "warning"},
                    {"short": True, "title": "Started", "value": "2026-11-22T10:00:00Z"},
                ],
            }
        ],
    }


async def test_channel_username_and_icon_only_when_configured(
    fake_mm: tuple[FakeMattermost, str],
) -> None:
    plain = (await deliver(fake_mm)).json()
    assert not {"channel", "username", "icon_url", "icon_emoji"} & set(plain)
    extra = {
        "channel": "town-square",
        "username": "alertrelay",
        "icon_url": "https://example.com/icon.png",
    }
    data = (await deliver(fake_mm, None, **extra)).json()
    assert {k: data[k] for k in extra} == extra


def test_icon_url_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="icon_url"):
        MattermostConfig.model_validate(
            {"webhook_url": "https://mm.example/hooks/x", "icon_url": "icon.png"}
        )


async def test_destination_secrets_and_rate_limit(fake_mm: tuple[FakeMattermost, str]) -> None:
    _, base = fake_mm
    async with mattermost(config(base)) as notifier:
        assert "mmsecretkey" not in notifier.destination()
        assert notifier.secrets() == [base + HOOK_PATH, HOOK_PATH.rpartition("/")[2]]
        assert notifier.rate_limit() == RateLimit(per_second=10.0, burst=10)
        prepared = notifier.prepare(message())
    received = await deliver(fake_mm)
    assert prepared.body == received.body and prepared.url == base + HOOK_PATH


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "said"),
    [
        (
            _error(400, "web.incoming_webhook.parse.app_error", "Unable to parse incoming data"),
            False,
            None,
            "HTTP 400: Unable to parse incoming data (web.incoming_webhook.parse.app_error)",
        ),
        (
            _error(
                403,
                "web.incoming_webhook.permissions.app_error",
                "Inappropriate channel permissions",
            ),
            False,
            None,
            "HTTP 403: Inappropriate channel permissions",
        ),
        (
            _error(404, "web.incoming_webhook.channel.app_error", "Couldn't find the channel"),
            False,
            None,
            "HTTP 404: Couldn't find the channel (web.incoming_webhook.channel.app_error)",
        ),
        (Reply(404, "404 page not found"), False, None, "HTTP 404: 404 page not found"),
        (Reply(429, "too many requests", headers={"Retry-After": "4"}), True, 4.0, "HTTP 429"),
        (Reply(500, "boom"), True, None, "HTTP 500: boom"),
        (Reply(503, "", headers={"Retry-After": "9"}), True, 9.0, "HTTP 503"),
        (Reply(200, "not ok"), False, None, 'HTTP 200 without "ok": not ok'),
        (Reply(200, ""), False, None, "(empty answer)"),
    ],
    ids=lambda v: f"{v.status}-{str(v.body)[:20]}" if isinstance(v, Reply) else None,
)
async def test_error_mapping(
    fake_mm: tuple[FakeMattermost, str],
    reply: Reply,
    retryable: bool,
    retry_after: float | None,
    said: str,
) -> None:
    with pytest.raises(DeliveryError) as info:
        await deliver(fake_mm, None, reply)
    err = info.value
    assert (err.retryable, err.status_code, err.retry_after) == (
        retryable,
        reply.status,
        retry_after,
    )
    assert said in err.message
    assert "mmsecretkey" not in err.message


async def test_huge_description_is_cut_to_one_post_with_a_marker(
    fake_mm: tuple[FakeMattermost, str],
) -> None:
    m = message(None, annotations={"summary": "s" * 3000, "description": "d_" * 50_000})
    received = await deliver(fake_mm, m)  # the fake refuses a post Mattermost would split
    text = received.json()["text"]
    # The limit, less the backslash of "\\_" that the cut separated from its "_".
    assert len(text) == 16382
    header, body, links = text.split("\n")
    assert len(header) == 1024 + 4 and header.endswith("…**")
    assert body.startswith("d\\_d\\_") and body.endswith("\\_d…")
    assert (
        links
        == "[Runbook](https://runbooks.example.com/disk_full) · [Source](http://prometheus:9090/graph?g0.expr=up)"
    )


async def test_too_long_links_are_left_out(fake_mm: tuple[FakeMattermost, str]) -> None:
    m = message(None, runbook_url="https://runbooks.example.com/" + "r" * 3000)
    text = (await deliver(fake_mm, m)).json()["text"]
    assert text.splitlines()[-1] == "[Source](http://prometheus:9090/graph?g0.expr=up)"


async def test_link_urls_cannot_end_the_link_early(fake_mm: tuple[FakeMattermost, str]) -> None:
    m = message(None, runbook_url="https://x.example/a_(b)<c>", generator_url=None)
    text = (await deliver(fake_mm, m)).json()["text"]
    assert text.splitlines()[-1] == "[Runbook](https://x.example/a_%28b%29%3Cc%3E)"


async def test_injection_through_labels_is_inert(fake_mm: tuple[FakeMattermost, str]) -> None:
    labels = {
        "alertname": "DiskFull",
        "a": "<!channel>",
        "b": "<https://evil.example|click>",
        "c": "@here",
        "d": "&amp;",
        "e": "*bold*",
        "f": "line1\n#### RESOLVED all good",
        "g": "[click](https://evil.example) @all @alice",
        "h": "{{ 7*7 }}",
    }
    m = message(
        None,
        labels=labels,
        annotations={"summary": "<!here> now", "description": "<!all> and @channel"},
        severity="<!channel>",
    )
    data = (await deliver(fake_mm, m)).json()
    raw = json.dumps(data, ensure_ascii=False)
    for token in ANNOUNCEMENTS:
        assert token not in raw
    assert "<https://evil" not in raw
    assert re.search(r"(?<!\w)@(here|channel|all|alice)", raw) is None
    rendered = [data["text"]] + [f["value"] for f in data["attachments"][0]["fields"]]
    assert all(SLACK_LINK.search(t) is None for t in rendered)
    assert data["text"].splitlines()[:3] == [
        "**[FIRING] DiskFull (&lt;!channel&gt;): &lt;!here&gt; now**",
        "&lt;!all&gt; and @\u200dchannel",
        "Labels: a=&lt;!channel&gt;, b=&lt;https://evil.example\\|click&gt;, c=@\u200dhere, d=&amp;amp;, "
        "e=\\*bold\\*, f=line1 \\#\\#\\#\\# RESOLVED all good, "
        "g=\\[click\\](https://evil.example) @\u200dall @\u200dalice, h={{ 7\\*7 }}",
    ]
    assert {"short": True, "title": "Severity", "value": "&lt;!channel&gt;"} in data["attachments"][
        0
    ]["fields"]
    # The fallback is plain text: nothing escaped for Markdown, but no token and no mention either.
    assert (
        data["attachments"][0]["fallback"]
        == f"[FIRING] DiskFull (<{ZWJ}!channel>): <{ZWJ}!here> now"
    )


async def test_title_and_text_overrides(fake_mm: tuple[FakeMattermost, str]) -> None:
    _, base = fake_mm
    cfg = config(
        base,
        title="{{ labels.team }} paged: {{ summary }}",
        text="**Team {{ labels.team }}** is on call\n{{ description }} <!channel> @all",
    )
    m = message(
        cfg,
        labels={"alertname": "DiskFull", "team": "ops", "severity": "critical"},
        annotations={"summary": "disk <full>", "description": "see <https://evil.example|here>"},
        severity="critical",
    )
    data = (await deliver(fake_mm, m)).json()
    # The operator's Markdown stays; the Slack-style tokens and mentions do not.
    assert data["text"] == (
        "**ops paged: disk &lt;full&gt;**\n"
        "**Team ops** is on call\n"
        "see &lt;https://evil.example|here&gt; &lt;!channel&gt; @\u200dall\n"
        "[Runbook](https://runbooks.example.com/disk_full) · [Source](http://prometheus:9090/graph?g0.expr=up)"
    )
    assert SLACK_LINK.search(data["text"]) is None
    assert data["attachments"][0]["color"] == "#D92D20"


async def test_flapping_notice_looks_distinct(fake_mm: tuple[FakeMattermost, str]) -> None:
    flap = {"score": 4.2, "flapping": True, "transitions": 5}
    firing = (await deliver(fake_mm, message(None))).json()
    flapping = (await deliver(fake_mm, message(None, kind="flapping", flap=flap))).json()
    assert firing["attachments"][0]["color"] == "#F79009"
    assert flapping["attachments"][0]["color"] == "#7A5AF8"
    assert flapping["text"].startswith(
        "**[FLAPPING] DiskFull (warning): 5 transitions, notifications paused until it settles**\n"
        "DiskFull is flapping (score 4.20); it is firing now."
    )
    assert flapping["attachments"][0]["fields"][-1] == {
        "short": False,
        "title": "Flapping",
        "value": ":repeat: Flapping: 5 transitions, score 4.20; notifications paused until it settles",
    }
    assert all(f["title"] != "Flapping" for f in firing["attachments"][0]["fields"])


async def test_resolved_with_duplicates(fake_mm: tuple[FakeMattermost, str]) -> None:
    m = message(
        None, kind="resolved", status="resolved", ends_at="2026-11-22T10:05:00Z", duplicates=2
    )
    data = (await deliver(fake_mm, m)).json()
    assert data["attachments"][0]["color"] == "#12B76A"
    assert data["attachments"][0]["fields"][-2:] == [
        {"short": True, "title": "Ended", "value": "2026-11-22T10:05:00Z"},
        {"short": True, "title": "Duplicates", "value": "2"},
    ]


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {"webhook_url": f"{url}/hooks/{CANARY_PATH}"},
    Reply(200, "ok"),
    extra_dead=[Reply(200, "not ok")],
    operations=[
        Operation(
            op,
            lambda: FakeMattermostAPI(token=CANARY_TOKEN),
            lambda url, op=op: {
                "api_url": f"{url}/api/v4/posts",
                "token": CANARY_TOKEN,
                "channel_id": "chan0000000000000000000000",
                "update_message": op == "edit",
            },
            ref=None if op == "post" else {"post_id": "00000000000000000000000001"},
            extra_dead=[
                Reply(
                    401,
                    {"id": "api.context.session_expired.app_error", "message": "Invalid session"},
                ),
                Reply(403, {"id": "api.context.permissions.app_error", "message": "No access"}),
            ],
        )
        for op in ("post", "edit", "reply")
    ],
)
