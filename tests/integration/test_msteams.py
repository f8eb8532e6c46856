"""Microsoft Teams (Workflows webhook, Adaptive Card) against a local sink.

The exact request, Markdown escaping of alert data, the 28 KB limit, the
flapping notice, title/text overrides, and the answers Teams gives,
including a 2xx whose body reports a failure.
"""

import asyncio
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import pytest

from app.core.domain import NoticeKind
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers.base import DeliveryError, Notifier
from app.notifiers.msteams import REQUEST_LIMIT, MSTeamsConfig, md_escape
from app.ops.clock import ManualClock
from tests.conformance import CANARY_PATH, CANARY_TOKEN, Case
from tests.conftest import running_app
from tests.helpers import (
    JSON,
    T0,
    am_alert,
    am_webhook,
    body,
    notice_payload,
    sink_message,
    sink_notifier,
    table_rows,
)
from tests.sinks import QuerySink, Reply, WebhookSink, serve

SIG = "S1GN4TUR3-teams-canary-0123456789"
PATH = "/workflows/0f8b6e0a1c2d4e5f/triggers/manual/paths/invoke"
QUERY = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
LEGACY_429 = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 "
    "with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef"
)


class TeamsSink(QuerySink):
    default = Reply(202, "")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TeamsSink, str]]:
    sink = TeamsSink()
    with serve(sink) as base:
        yield sink, base


@pytest.fixture
def sink(served: tuple[TeamsSink, str]) -> TeamsSink:
    served[0].reset()
    return served[0]


@pytest.fixture
def url(served: tuple[TeamsSink, str]) -> str:
    return f"{served[1]}{PATH}?{QUERY}"


def payload(kind: NoticeKind = NoticeKind.FIRING, **over: Any) -> dict[str, Any]:
    return notice_payload(
        kind.value,
        **{
            "annotations": {"summary": "disk is full", "description": "/var is at 99%"},
            "generator_url": "http://prometheus:9090/graph?g0.expr=up",
            "flap": {"score": 1.0, "flapping": False, "transitions": 0},
            **over,
        },
    )


def config(url: str, **extra: Any) -> MSTeamsConfig:
    return MSTeamsConfig.model_validate({"webhook_url": url, **extra})


def message(p: dict[str, Any], cfg: MSTeamsConfig | None = None) -> Message:
    return sink_message(p, cfg, receiver="team")


def teams(cfg: MSTeamsConfig) -> AbstractAsyncContextManager[Notifier]:
    return sink_notifier("msteams", cfg)


async def sent_card(sink: TeamsSink, cfg: MSTeamsConfig, m: Message) -> dict[str, Any]:
    """Send ``m`` and return the Adaptive Card the sink received."""
    async with teams(cfg) as notifier:
        assert await notifier.send(m) is None
    (request,) = sink.requests()
    data = request.json()
    assert len(request.body) <= REQUEST_LIMIT
    (attachment,) = data["attachments"]
    return attachment["content"]  # type: ignore[no-any-return]


def texts(card: dict[str, Any]) -> list[str]:
    """Every string Teams renders as Markdown: TextBlocks (nested too) and facts."""
    out: list[str] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if item["type"] == "TextBlock":
                out.append(item["text"])
            elif item["type"] == "FactSet":
                out.extend(t for f in item["facts"] for t in (f["title"], f["value"]))
            elif item["type"] == "Container":
                walk(item["items"])

    walk(card["body"])
    return out


# --- the request -------------------------------------------------------------------------


async def test_exact_request(sink: TeamsSink, url: str) -> None:
    cfg = config(url)
    m = message(payload(duplicates=2))
    async with teams(cfg) as notifier:
        assert await notifier.send(m) is None
        prepared = notifier.prepare(m)
    (request,) = sink.requests()
    assert request.path == PATH and sink.queries == [QUERY]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "alertrelay"
    assert request.body == prepared.body and prepared.method == "POST" and prepared.url == url
    assert request.json() == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "msteams": {"width": "full"},
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "\\[FIRING\\] DiskFull \\(critical\\): disk is full",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                            "style": "heading",
                            "color": "Attention",
                        },
                        {"type": "TextBlock", "text": "disk is full", "wrap": True},
                        {"type": "TextBlock", "text": "/var is at 99%", "wrap": True},
                        {
                            "type": "TextBlock",
                            "text": "Received 2 more times as a duplicate (not re-sent).",
                            "wrap": True,
                            "isSubtle": True,
                            "size": "Small",
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "alertname", "value": "DiskFull"},
                                {"title": "instance", "value": "db-1"},
                                {"title": "severity", "value": "critical"},
                            ],
                        },
                    ],
                    "actions": [
                        {
                            "type": "Action.OpenUrl",
                            "title": "Runbook",
                            "url": "https://runbooks.example.com/diskfull",
                        },
                        {
                            "type": "Action.OpenUrl",
                            "title": "Source",
                            "url": "http://prometheus:9090/graph?g0.expr=up",
                        },
                    ],
                },
            }
        ],
    }


async def test_no_links_no_actions_and_multiline_description(sink: TeamsSink, url: str) -> None:
    p = payload(runbook_url=None, generator_url="", duplicates=0)
    p["annotations"] = {"summary": "s", "description": "line one\nline two\r\n\nline three"}
    card = await sent_card(sink, config(url), message(p))
    assert card["actions"] == []
    # A TextBlock needs a blank line for a line break.
    assert {
        "type": "TextBlock",
        "text": "line one\n\nline two\n\nline three",
        "wrap": True,
    } in card["body"]
    assert not any("Received" in t for t in texts(card))


@pytest.mark.parametrize(
    ("kind", "status", "colour"),
    [
        (NoticeKind.FIRING, "firing", "Attention"),
        (NoticeKind.REMINDER, "firing", "Attention"),
        (NoticeKind.RESOLVED, "resolved", "Good"),
        (NoticeKind.FLAPPING, "firing", "Warning"),
        (NoticeKind.FLAPPING, "resolved", "Warning"),
        (NoticeKind.STABLE, "firing", "Attention"),
        (NoticeKind.STABLE, "resolved", "Good"),
    ],
)
async def test_heading_colour(
    sink: TeamsSink, url: str, kind: NoticeKind, status: str, colour: str
) -> None:
    card = await sent_card(sink, config(url), message(payload(kind, status=status)))
    heading = card["body"][0]
    assert heading["style"] == "heading" and heading["color"] == colour


async def test_flapping_notice_looks_distinct(sink: TeamsSink, url: str) -> None:
    flap = {"score": 4.25, "flapping": True, "transitions": 5}
    card = await sent_card(sink, config(url), message(payload(NoticeKind.FLAPPING, flap=flap)))
    heading, notice = card["body"][0], card["body"][1]
    assert heading["text"].startswith("\\[FLAPPING\\] DiskFull \\(critical\\): 5 transitions")
    assert notice == {
        "type": "Container",
        "style": "warning",
        "items": [
            {
                "type": "TextBlock",
                "text": "⚠ Flapping: 5 transitions (score 4.25). Notifications for this alert "
                "are paused until it settles; it is firing now.",
                "wrap": True,
                "weight": "Bolder",
                "color": "Warning",
            }
        ],
    }
    sink.reset()
    plain = await sent_card(sink, config(url), message(payload()))
    assert not any(item["type"] == "Container" for item in plain["body"])
    assert plain["body"][0]["color"] != heading["color"]


async def test_stable_notice_says_it_settled(sink: TeamsSink, url: str) -> None:
    flap = {"score": 1.5, "flapping": False, "transitions": 9}
    card = await sent_card(
        sink, config(url), message(payload(NoticeKind.STABLE, status="resolved", flap=flap))
    )
    assert card["body"][1] == {
        "type": "Container",
        "style": "emphasis",
        "items": [
            {
                "type": "TextBlock",
                "text": "Stopped flapping (score 1.50); it is resolved now.",
                "wrap": True,
                "weight": "Bolder",
                "color": "Good",
            }
        ],
    }


# --- alert data is data ------------------------------------------------------------------


def test_md_escape_table() -> None:
    assert md_escape("[click](https://evil.example)") == "\\[click\\]\\(https://evil.example\\)"
    assert md_escape("**bold** _it_ `code` ~s~") == "\\*\\*bold\\*\\* \\_it\\_ \\`code\\` \\~s\\~"
    assert md_escape("# head") == "\\# head"
    assert md_escape("- item\n+ more\n  12. num") == "\\- item\n\\+ more\n  12\\. num"
    assert md_escape("a\\*b") == "a\\\\\\*b"  # a backslash cannot cancel our escape
    assert md_escape("<https://evil.example> x|y") == "\\<https://evil.example\\> x\\|y"
    assert md_escape("db-1 v1.2 50% a.b") == "db-1 v1.2 50% a.b"  # ordinary text unchanged


INJECTION_LABELS = {
    "alertname": "DiskFull",
    "link": "[click me](https://evil.example/steal)",
    "bold": "**URGENT** _now_",
    "code": "`rm -rf /`",
    "heading": "# Pwned",
    "list": "- one",
    "tpl": "{{ 7*7 }}",
    "esc": "\\](https://evil.example)",
}


async def test_label_values_cannot_inject_markdown(sink: TeamsSink, url: str) -> None:
    p = payload(labels=INJECTION_LABELS)
    p["annotations"] = {"summary": "see [here](https://evil.example)", "description": "**x**"}
    card = await sent_card(sink, config(url), message(p))
    facts = next(item for item in card["body"] if item["type"] == "FactSet")["facts"]
    assert {f["title"]: f["value"] for f in facts} == {
        "alertname": "DiskFull",
        "bold": "\\*\\*URGENT\\*\\* \\_now\\_",
        "code": "\\`rm -rf /\\`",
        "esc": "\\\\\\]\\(https://evil.example\\)",
        "heading": "\\# Pwned",
        "link": "\\[click me\\]\\(https://evil.example/steal\\)",
        "list": "\\- one",
        "tpl": "{{ 7\\*7 }}",  # literal, never rendered
    }
    for text in texts(card):
        # No unescaped link syntax, emphasis or code anywhere Teams renders Markdown.
        assert not re.search(r"(?<!\\)\]\(", text), text
        assert not re.search(r"(?<!\\)[*_`]", text), text
        assert "49" not in text
    assert "see \\[here\\]\\(https://evil.example\\)" in texts(card)
    assert "\\*\\*x\\*\\*" in texts(card)
    # Only our two buttons link anywhere.
    assert [a["url"] for a in card["actions"]] == [
        "https://runbooks.example.com/diskfull",
        "http://prometheus:9090/graph?g0.expr=up",
    ]


async def test_title_and_text_override(sink: TeamsSink, url: str) -> None:
    cfg = config(
        url,
        title="{{ labels.instance }} is {{ status }} ({{ tag }})",
        text="Custom: {{ summary }} on {{ labels.instance }}",
    )
    p = payload(labels={"alertname": "DiskFull", "instance": "[x](https://evil.example)"})
    card = await sent_card(sink, cfg, message(p, cfg))
    assert card["body"][0]["text"] == "\\[x\\]\\(https://evil.example\\) is firing \\(FIRING\\)"
    # The operator's text replaces the summary and description blocks; labels stay.
    assert card["body"][1] == {
        "type": "TextBlock",
        "text": "Custom: disk is full on \\[x\\]\\(https://evil.example\\)",
        "wrap": True,
    }
    assert not any(t in ("disk is full", "/var is at 99%") for t in texts(card))
    assert card["body"][2]["type"] == "FactSet"
    assert len(card["actions"]) == 2


# --- size ----------------------------------------------------------------------------------


async def test_huge_description_is_cut_to_fit(sink: TeamsSink, url: str) -> None:
    p = payload()
    # Multi-byte and escaped characters: the limit is in bytes of the whole request.
    p["annotations"] = {"summary": "disk is full", "description": "é*" * 100_000}
    card = await sent_card(sink, config(url), message(p))
    size = len(sink.requests()[0].body)
    assert REQUEST_LIMIT - 10 <= size <= REQUEST_LIMIT  # cut no more than needed
    description = card["body"][2]["text"]
    assert description.startswith("é\\*é\\*") and description.endswith("…")
    assert len(description) > 20_000 // 3
    # Everything else survives whole.
    assert card["body"][0]["text"] == "\\[FIRING\\] DiskFull \\(critical\\): disk is full"
    assert card["body"][1]["text"] == "disk is full"
    assert len(card["body"][3]["facts"]) == 3 and len(card["actions"]) == 2


async def test_many_labels_are_cut_then_dropped_with_a_note(sink: TeamsSink, url: str) -> None:
    labels = {f"label_{i:04d}": "v" * 200 for i in range(1000)}
    labels["alertname"] = "DiskFull"
    card = await sent_card(sink, config(url), message(payload(labels=labels)))
    facts = next(item for item in card["body"] if item["type"] == "FactSet")["facts"]
    assert facts[0] == {"title": "alertname", "value": "DiskFull"}  # sorted: alertname first
    assert all(len(f["value"]) == 16 and f["value"].endswith("…") for f in facts[1:])
    note = card["body"][-1]["text"]
    hidden = int(note.split()[0])
    assert len(facts) + hidden == 1001
    assert note == f"{hidden} more labels not shown (Teams message size limit)."
    assert card["body"][0]["text"] == "\\[FIRING\\] DiskFull \\(critical\\): disk is full"


async def test_huge_summary_cuts_the_title_too(sink: TeamsSink, url: str) -> None:
    p = payload()
    p["annotations"] = {"summary": "s" * 60_000}  # the default title quotes the summary
    card = await sent_card(sink, config(url), message(p))
    heading = card["body"][0]["text"]
    assert heading.startswith("\\[FIRING\\] DiskFull") and heading.endswith("…")
    assert len(card["actions"]) == 2


# --- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [Reply(202, ""), Reply(200, "1"), Reply(200, ""), Reply(201, '{"id":"1"}')],
    ids=["workflows-202", "legacy-200-1", "200-empty", "201-json"],
)
async def test_success_answers(sink: TeamsSink, url: str, reply: Reply) -> None:
    sink.script(reply)
    async with teams(config(url)) as notifier:
        assert await notifier.send(message(payload())) is None
    assert len(sink.requests()) == 1


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    [
        (Reply(200, LEGACY_429), True, None),
        (Reply(200, LEGACY_429, headers={"Retry-After": "4"}), True, 4.0),
        (Reply(200, LEGACY_429.replace("429", "503")), True, None),
        (Reply(200, LEGACY_429.replace("429", "400")), False, None),
        (Reply(200, "Webhook message delivery failed with error: Forbidden"), False, None),
        (Reply(202, '{"error": {"code": "Forbidden"}}'), False, None),
    ],
    ids=["200-429", "200-429-retry-after", "200-503", "200-400", "200-no-code", "202-error-json"],
)
async def test_sink_10_failure_inside_2xx(
    sink: TeamsSink, url: str, reply: Reply, retryable: bool, retry_after: float | None
) -> None:
    sink.script(reply)
    async with teams(config(url)) as notifier:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message(payload()))
    err = info.value
    assert err.retryable is retryable and err.retry_after == retry_after
    assert err.status_code == reply.status
    assert err.message.startswith(f"msteams: HTTP {reply.status} but the body reports a failure: ")


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    [
        (Reply(413, "Request Entity too large"), False, None),
        (Reply(400, "Bad payload"), False, None),
        (Reply(404, ""), False, None),
        (Reply(429, "Too many", headers={"Retry-After": "3"}), True, 3.0),
        (Reply(500, "oops"), True, None),
        (Reply(502, "bad gateway"), True, None),
        (Reply(503, "", headers={"Retry-After": "9"}), True, 9.0),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else str(v),
)
async def test_status_answers(
    sink: TeamsSink, url: str, reply: Reply, retryable: bool, retry_after: float | None
) -> None:
    sink.script(reply)
    async with teams(config(url)) as notifier:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message(payload()))
    assert info.value.retryable is retryable and info.value.retry_after == retry_after
    assert info.value.status_code == reply.status
    assert f"msteams: HTTP {reply.status}" in info.value.message


async def test_failure_body_echoing_the_url_is_redacted(sink: TeamsSink, url: str) -> None:
    sink.script(Reply(200, f"{LEGACY_429} for {url}"))
    async with teams(config(url)) as notifier:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message(payload()))
    assert SIG not in info.value.message and "<redacted>" in info.value.message
    assert info.value.retryable


async def test_destination_secrets_and_rate_limit() -> None:
    async with teams(config(f"https://a.logic.azure.com{PATH}?{QUERY}")) as a:
        pass
    async with teams(
        config(f"https://a.logic.azure.com{PATH}?{QUERY.replace(SIG, 'other-sig-00')}")
    ) as b:
        pass
    assert a.rate_limit() == RateLimit(per_second=4.0, burst=4)
    assert SIG in a.secrets() and f"https://a.logic.azure.com{PATH}?{QUERY}" in a.secrets()
    assert SIG not in a.destination() and a.destination() != b.destination()


# --- A failure in a 2xx body through the delivery loop ----------------------------------------------------


def _app_config(url: str) -> str:
    return f"""
delivery:
  initial_backoff: 1s
  max_backoff: 60s
  timeout: 2s
route:
  receiver: team
receivers:
  - name: team
    msteams_configs: [{{webhook_url: "{url}"}}]
"""


async def test_sink_10_never_marked_delivered_on_a_failure_body(
    sink: TeamsSink, url: str, sqlite_url: str
) -> None:
    """200-with-failure twice, then 202: sent once, on the third attempt; never before."""
    sink.script(Reply(200, LEGACY_429), Reply(200, LEGACY_429))
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with running_app(sqlite_url, _app_config(url), clock=clock) as (app, client):
        alert = am_alert({"alertname": "DiskFull", "severity": "critical"})
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.status_code == 200
        for attempt in (1, 2):
            async with asyncio.timeout(30):
                await app.state.services.delivery.drain()
            (row,) = table_rows(sqlite_url, "notifications")
            assert row["status"] == "pending" and row["attempts"] == attempt
            assert row["last_status_code"] == 200
            assert "body reports a failure" in row["last_error"] and SIG not in row["last_error"]
            clock.advance((row["next_attempt_at"] - clock.now()).total_seconds() + 0.01)
        async with asyncio.timeout(30):
            await app.state.services.delivery.drain()
    (row,) = table_rows(sqlite_url, "notifications")
    assert row["status"] == "sent" and row["attempts"] == 3
    attempts = table_rows(sqlite_url, "delivery_attempts")
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "sent"]
    assert len(sink.requests()) == 3


async def test_sink_10_failure_body_with_a_4xx_code_is_dead_at_once(
    sink: TeamsSink, url: str, sqlite_url: str
) -> None:
    sink.script(Reply(200, LEGACY_429.replace("429", "403")))
    async with running_app(sqlite_url, _app_config(url)) as (app, client):
        alert = am_alert({"alertname": "DiskFull", "severity": "critical"})
        await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
        async with asyncio.timeout(30):
            await app.state.services.delivery.drain()
    (row,) = table_rows(sqlite_url, "notifications")
    assert row["status"] == "dead" and row["attempts"] == 1
    assert [a["outcome"] for a in table_rows(sqlite_url, "delivery_attempts")] == ["dead"]
    assert len(sink.requests()) == 1
    assert "HTTP error 403" in row["last_error"] and SIG not in row["last_error"]


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {
        "webhook_url": f"{url}/workflows/{CANARY_PATH}/triggers/manual/paths/invoke"
        f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={CANARY_TOKEN}"
    },
    Reply(202, ""),
    extra_dead=[Reply(413, "Request Entity too large")],
    extra_retry=[
        Reply(
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429",
        )
    ],
)
