"""Google Chat incoming webhook against a local sink.

The exact request (URL with the threading option, headers, body), one thread
per alert, escaping of alert data, the 32,000-byte limit, the flapping
notice, title/text overrides, and Google's error answers.
"""

import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from app.core.domain import NoticeKind
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers.base import DeliveryError, Notifier
from app.notifiers.googlechat import MESSAGE_LIMIT, GoogleChatConfig, chat_escape
from tests.conformance import CANARY_KEY, CANARY_PATH, CANARY_TOKEN, Case
from tests.helpers import notice_payload, sink_message, sink_notifier
from tests.sinks import QuerySink, Reply, WebhookSink, serve

KEY = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"
TOKEN = "chat-token-canary-0123456789abcdef"
PATH = "/v1/spaces/AAAAbCdEfGh/messages"
QUERY = f"key={KEY}&token={TOKEN}"
THREADED = f"{QUERY}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
CREATED = Reply(200, {"name": "spaces/AAAAbCdEfGh/messages/x.y", "thread": {"name": "t"}})
# What formatted text may contain: our own tags only.
OUR_TAGS = {"<b>", "</b>", "<br>", "<i>", "</i>", "</font>"}


class ChatSink(QuerySink):
    default = CREATED


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ChatSink, str]]:
    sink = ChatSink()
    with serve(sink) as base:
        yield sink, base


@pytest.fixture
def sink(served: tuple[ChatSink, str]) -> ChatSink:
    served[0].reset()
    return served[0]


@pytest.fixture
def url(served: tuple[ChatSink, str]) -> str:
    return f"{served[1]}{PATH}?{QUERY}"


def payload(kind: NoticeKind = NoticeKind.FIRING, **over: Any) -> dict[str, Any]:
    return notice_payload(
        kind.value,
        **{
            "annotations": {"summary": "disk is full", "description": "/var is at 99%\nact now"},
            "generator_url": "http://prometheus:9090/graph?g0.expr=up",
            "flap": {"score": 1.0, "flapping": False, "transitions": 0},
            **over,
        },
    )


def config(url: str, **extra: Any) -> GoogleChatConfig:
    return GoogleChatConfig.model_validate({"url": url, **extra})


def message(p: dict[str, Any], cfg: GoogleChatConfig | None = None) -> Message:
    return sink_message(p, cfg, receiver="chat")


def chat(cfg: GoogleChatConfig) -> AbstractAsyncContextManager[Notifier]:
    return sink_notifier("googlechat", cfg)


async def sent(sink: ChatSink, cfg: GoogleChatConfig, *messages: Message) -> list[dict[str, Any]]:
    async with chat(cfg) as notifier:
        for m in messages:
            assert await notifier.send(m) is None
    requests = sink.requests()
    assert len(requests) == len(messages)
    assert all(len(r.body) <= MESSAGE_LIMIT for r in requests)
    return [r.json() for r in requests]


def widgets(msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for s in msg["cardsV2"][0]["card"]["sections"] for w in s["widgets"]]


def formatted(msg: dict[str, Any]) -> list[str]:
    """Every string Chat interprets as markup: the text, and card paragraphs and decorated text."""
    out = [msg["text"]]
    for w in widgets(msg):
        if "textParagraph" in w:
            out.append(w["textParagraph"]["text"])
        if "decoratedText" in w:
            out += [w["decoratedText"]["text"], w["decoratedText"].get("topLabel", "")]
    return out


# --- the request -------------------------------------------------------------------------


async def test_exact_request(sink: ChatSink, url: str) -> None:
    cfg = config(url)
    m = message(payload(duplicates=3))
    async with chat(cfg) as notifier:
        assert await notifier.send(m) is None
        prepared = notifier.prepare(m)
    (request,) = sink.requests()
    assert request.path == PATH and sink.queries == [THREADED]
    assert prepared.url == f"{url}&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    assert request.headers["content-type"] == "application/json; charset=UTF-8"
    assert request.body == prepared.body and prepared.method == "POST"
    assert request.json() == {
        "text": "*[FIRING] DiskFull (critical): disk is full*\n"
        "<https://runbooks.example.com/diskfull|Runbook>",
        "cardsV2": [
            {
                "cardId": "alert",
                "card": {
                    "header": {
                        "title": "[FIRING] DiskFull (critical): disk is full",
                        "subtitle": "FIRING · critical",
                    },
                    "sections": [
                        {
                            "widgets": [
                                {
                                    "decoratedText": {
                                        "topLabel": "Summary",
                                        "text": "disk is full",
                                        "wrapText": True,
                                    }
                                },
                                {"textParagraph": {"text": "/var is at 99%<br>act now"}},
                                {
                                    "decoratedText": {
                                        "topLabel": "Duplicates",
                                        "text": "received 3 more times (not re-sent)",
                                        "wrapText": True,
                                    }
                                },
                            ]
                        },
                        {
                            "header": "Labels",
                            "widgets": [
                                {
                                    "textParagraph": {
                                        "text": "<b>alertname</b>: DiskFull<br>"
                                        "<b>instance</b>: db-1<br><b>severity</b>: critical"
                                    }
                                }
                            ],
                        },
                        {
                            "widgets": [
                                {
                                    "buttonList": {
                                        "buttons": [
                                            {
                                                "text": "Runbook",
                                                "onClick": {
                                                    "openLink": {
                                                        "url": "https://runbooks.example.com/diskfull"
                                                    }
                                                },
                                            },
                                            {
                                                "text": "Source",
                                                "onClick": {
                                                    "openLink": {
                                                        "url": "http://prometheus:9090/graph?g0.expr=up"
                                                    }
                                                },
                                            },
                                        ]
                                    }
                                }
                            ]
                        },
                    ],
                },
            }
        ],
        "thread": {"threadKey": "alertrelay-0123456789abcdef"},
    }


async def test_without_threading_the_url_and_body_have_no_thread(sink: ChatSink, url: str) -> None:
    (msg,) = await sent(sink, config(url, threading=False), message(payload()))
    assert sink.queries == [QUERY] and "thread" not in msg


async def test_an_operator_reply_option_is_kept_not_doubled(sink: ChatSink, url: str) -> None:
    own = f"{url}&messageReplyOption=REPLY_MESSAGE_OR_FAIL"
    await sent(sink, config(own), message(payload()))
    assert sink.queries == [f"{QUERY}&messageReplyOption=REPLY_MESSAGE_OR_FAIL"]


async def test_one_thread_per_alert(sink: ChatSink, url: str) -> None:
    other = payload(
        fingerprint="fedcba9876543210", labels={"alertname": "DiskFull", "instance": "db-2"}
    )
    msgs = await sent(
        sink,
        config(url),
        message(payload(NoticeKind.FIRING)),
        message(payload(NoticeKind.RESOLVED)),
        message(
            payload(NoticeKind.FLAPPING, flap={"score": 4.0, "flapping": True, "transitions": 4})
        ),
        message(other),
    )
    keys = [m["thread"]["threadKey"] for m in msgs]
    assert keys[0] == keys[1] == keys[2] == "alertrelay-0123456789abcdef"
    assert keys[3] == "alertrelay-fedcba9876543210"
    assert sink.queries == [THREADED] * 4


async def test_flapping_notice_looks_distinct(sink: ChatSink, url: str) -> None:
    flap = {"score": 4.25, "flapping": True, "transitions": 5}
    flapping, firing = await sent(
        sink, config(url), message(payload(NoticeKind.FLAPPING, flap=flap)), message(payload())
    )
    assert widgets(flapping)[0] == {
        "textParagraph": {
            "text": '<font color="#E37400"><b>⚠ FLAPPING</b></font>: 5 transitions (score 4.25). '
            "Notifications for this alert are paused until it settles; it is firing now."
        }
    }
    assert flapping["cardsV2"][0]["card"]["header"]["subtitle"] == "FLAPPING · critical"
    assert flapping["text"].startswith("*[FLAPPING] DiskFull (critical): 5 transitions")
    assert not any("FLAPPING" in t for t in formatted(firing))
    assert firing["cardsV2"][0]["card"]["header"]["subtitle"] == "FIRING · critical"


async def test_stable_notice(sink: ChatSink, url: str) -> None:
    flap = {"score": 1.5, "flapping": False, "transitions": 9}
    (msg,) = await sent(
        sink, config(url), message(payload(NoticeKind.STABLE, status="resolved", flap=flap))
    )
    assert widgets(msg)[0] == {
        "textParagraph": {
            "text": '<font color="#188038"><b>STOPPED FLAPPING</b></font>: it is resolved now (score 1.50).'
        }
    }
    assert msg["cardsV2"][0]["card"]["header"]["subtitle"] == "STABLE, RESOLVED · critical"


# --- alert data is data ------------------------------------------------------------------


def test_chat_escape() -> None:
    assert chat_escape("<users/all> & <https://e.example|x>") == (
        "&lt;users/all&gt; &amp; &lt;https://e.example|x&gt;"
    )
    assert chat_escape("&lt;") == "&amp;lt;"  # an entity in data stays literal text


async def test_label_values_cannot_mention_or_link(sink: ChatSink, url: str) -> None:
    labels = {
        "alertname": "DiskFull",
        "all": "<users/all>",
        "link": "<https://evil.example/steal|click here>",
        "html": '<a href="https://evil.example">x</a><font color="red">y</font>',
        "amp": "a &amp; b",
        "tpl": "{{ 7*7 }}",
    }
    p = payload(labels=labels)
    p["annotations"] = {"summary": "ping <users/all>", "description": "<b>bold?</b>\n<users/123>"}
    (msg,) = await sent(sink, config(url), message(p))
    assert msg["text"] == (
        "*[FIRING] DiskFull (critical): ping &lt;users/all&gt;*\n"
        "<https://runbooks.example.com/diskfull|Runbook>"
    )
    labels_text = widgets(msg)[2]["textParagraph"]["text"]
    assert labels_text.split("<br>") == [
        "<b>alertname</b>: DiskFull",
        "<b>all</b>: &lt;users/all&gt;",
        "<b>amp</b>: a &amp;amp; b",
        '<b>html</b>: &lt;a href="https://evil.example"&gt;x&lt;/a&gt;&lt;font color="red"&gt;y&lt;/font&gt;',
        "<b>link</b>: &lt;https://evil.example/steal|click here&gt;",
        "<b>tpl</b>: {{ 7*7 }}",  # literal, never rendered
    ]
    assert widgets(msg)[0]["decoratedText"]["text"] == "ping &lt;users/all&gt;"
    assert (
        widgets(msg)[1]["textParagraph"]["text"] == "&lt;b&gt;bold?&lt;/b&gt;<br>&lt;users/123&gt;"
    )
    for text in formatted(msg):
        tags = set(re.findall(r"<[^>]*>", text)) - OUR_TAGS
        # The one link in the text is our runbook link; no mention survives anywhere.
        assert tags <= {"<https://runbooks.example.com/diskfull|Runbook>"}, text
        assert "<users/" not in text and "49" not in text
    # The header is plain text in Chat: shown as it is, nothing to interpret.
    assert (
        msg["cardsV2"][0]["card"]["header"]["title"]
        == "[FIRING] DiskFull (critical): ping <users/all>"
    )


async def test_link_urls_cannot_break_out_of_link_syntax(sink: ChatSink, url: str) -> None:
    (msg,) = await sent(sink, config(url), message(payload(runbook_url="https://e.example/a|b>c")))
    assert msg["text"].endswith("\n<https://e.example/a%7Cb%3Ec|Runbook>")
    buttons = widgets(msg)[-1]["buttonList"]["buttons"]
    assert buttons[0]["onClick"]["openLink"]["url"] == "https://e.example/a|b>c"  # JSON, not markup


async def test_title_and_text_override(sink: ChatSink, url: str) -> None:
    cfg = config(
        url,
        title="{{ labels.instance }} is {{ status }}",
        text="Custom: {{ summary }}\n{{ labels.instance }}",
    )
    p = payload(labels={"alertname": "DiskFull", "instance": "<users/all>"})
    (msg,) = await sent(sink, cfg, message(p, cfg))
    assert (
        msg["text"]
        == "*&lt;users/all&gt; is firing*\n<https://runbooks.example.com/diskfull|Runbook>"
    )
    assert msg["cardsV2"][0]["card"]["header"]["title"] == "<users/all> is firing"
    # The operator's text replaces summary and description; labels and buttons stay.
    first = msg["cardsV2"][0]["card"]["sections"][0]["widgets"]
    assert first == [{"textParagraph": {"text": "Custom: disk is full<br>&lt;users/all&gt;"}}]
    assert msg["cardsV2"][0]["card"]["sections"][1]["header"] == "Labels"
    assert len(widgets(msg)[-1]["buttonList"]["buttons"]) == 2


# --- size ----------------------------------------------------------------------------------


async def test_huge_description_is_cut_to_fit(sink: ChatSink, url: str) -> None:
    p = payload()
    p["annotations"] = {"summary": "disk is full", "description": "ü<" * 100_000}
    (msg,) = await sent(sink, config(url), message(p))
    size = len(sink.requests()[0].body)
    assert MESSAGE_LIMIT - 10 <= size <= MESSAGE_LIMIT  # cut no more than needed
    description = widgets(msg)[1]["textParagraph"]["text"]
    assert description.startswith("ü&lt;ü&lt;") and description.endswith("…")
    assert (
        msg["text"]
        == "*[FIRING] DiskFull (critical): disk is full*\n<https://runbooks.example.com/diskfull|Runbook>"
    )
    assert widgets(msg)[0]["decoratedText"]["text"] == "disk is full"
    assert widgets(msg)[2]["textParagraph"]["text"].count("<b>") == 3
    assert msg["thread"] == {"threadKey": "alertrelay-0123456789abcdef"}


async def test_many_labels_are_cut_then_dropped_with_a_note(sink: ChatSink, url: str) -> None:
    labels = {f"label_{i:04d}": "v" * 300 for i in range(1000)}
    labels["alertname"] = "DiskFull"
    (msg,) = await sent(sink, config(url), message(payload(labels=labels)))
    lines = widgets(msg)[2]["textParagraph"]["text"].split("<br>")
    assert lines[0] == "<b>alertname</b>: DiskFull"
    assert all(line.endswith(": " + "v" * 15 + "…") for line in lines[1:-1])
    hidden = int(
        re.fullmatch(
            r"<i>(\d+) more labels not shown \(Google Chat message size limit\)</i>", lines[-1]
        ).group(1)
    )  # type: ignore[union-attr]
    assert len(lines) - 1 + hidden == 1001
    assert len(widgets(msg)[-1]["buttonList"]["buttons"]) == 2


async def test_huge_summary_cuts_the_title_too(sink: ChatSink, url: str) -> None:
    p = payload()
    p["annotations"] = {"summary": "s" * 60_000}
    (msg,) = await sent(sink, config(url), message(p))
    title = msg["cardsV2"][0]["card"]["header"]["title"]
    assert title.startswith("[FIRING] DiskFull (critical): sss") and title.endswith("…")
    assert msg["text"].startswith("*[FIRING] DiskFull") and msg["text"].split("\n")[0].endswith(
        "…*"
    )


# --- answers -------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "detail"),
    [
        (
            Reply(
                429,
                google_error(429, "RESOURCE_EXHAUSTED", "Too many requests"),
                headers={"Retry-After": "5"},
            ),
            True,
            5.0,
            "RESOURCE_EXHAUSTED: Too many requests",
        ),
        (
            Reply(429, google_error(429, "RESOURCE_EXHAUSTED", "Too many requests")),
            True,
            None,
            "RESOURCE_EXHAUSTED: Too many requests",
        ),
        (
            Reply(500, google_error(500, "INTERNAL", "Internal error encountered.")),
            True,
            None,
            "INTERNAL: Internal error encountered.",
        ),
        (
            Reply(503, google_error(503, "UNAVAILABLE", "The service is currently unavailable.")),
            True,
            None,
            "UNAVAILABLE: The service is currently unavailable.",
        ),
        (
            Reply(
                400,
                google_error(
                    400, "INVALID_ARGUMENT", 'Invalid JSON payload received. Unknown name "cards"'
                ),
            ),
            False,
            None,
            'INVALID_ARGUMENT: Invalid JSON payload received. Unknown name "cards"',
        ),
        (
            Reply(
                403, google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
            ),
            False,
            None,
            "PERMISSION_DENIED: The caller does not have permission",
        ),
        (
            Reply(404, google_error(404, "NOT_FOUND", "Requested entity was not found.")),
            False,
            None,
            "NOT_FOUND: Requested entity was not found.",
        ),
        (Reply(404, "<html>Not Found</html>"), False, None, "<html>Not Found</html>"),
    ],
    ids=["429-retry-after", "429", "500", "503", "400", "403", "404", "404-html"],
)
async def test_error_answers(
    sink: ChatSink, url: str, reply: Reply, retryable: bool, retry_after: float | None, detail: str
) -> None:
    sink.script(reply)
    async with chat(config(url)) as notifier:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message(payload()))
    err = info.value
    assert err.retryable is retryable and err.retry_after == retry_after
    assert err.status_code == reply.status
    assert err.message == f"googlechat: HTTP {reply.status}: {detail}"


async def test_error_message_echoing_the_key_is_redacted(sink: ChatSink, url: str) -> None:
    sink.script(
        Reply(
            400, google_error(400, "INVALID_ARGUMENT", f"bad request to {url} with token {TOKEN}")
        )
    )
    async with chat(config(url)) as notifier:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message(payload()))
    assert KEY not in info.value.message and TOKEN not in info.value.message
    assert info.value.message.startswith("googlechat: HTTP 400: INVALID_ARGUMENT: bad request to ")
    assert "<redacted>" in info.value.message


async def test_destination_is_the_space_and_secrets_hold_key_and_token() -> None:
    base = "https://chat.googleapis.com"
    async with chat(config(f"{base}{PATH}?{QUERY}")) as a:
        pass
    async with chat(config(f"{base}{PATH}?key=otherkey0000&token=othertoken000")) as same_space:
        pass
    async with chat(config(f"{base}/v1/spaces/ZZZZ/messages?{QUERY}")) as other_space:
        pass
    assert a.destination() == same_space.destination() != other_space.destination()
    assert KEY not in a.destination() and TOKEN not in a.destination()
    assert {KEY, TOKEN, f"{base}{PATH}?{QUERY}", f"{base}{PATH}?{THREADED}"} <= set(a.secrets())
    assert a.rate_limit() == RateLimit(per_second=55 / 60, burst=5)
    # A burst of 5 plus the refill over 60 s stays within 60 writes per 60 s.
    assert 5 + 60 * a.rate_limit().per_second <= 60


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {
        "url": f"{url}/v1/spaces/{CANARY_PATH}/messages?key={CANARY_KEY}&token={CANARY_TOKEN}"
    },
    Reply(200, {"name": "spaces/x/messages/y"}),
    extra_dead=[
        Reply(
            403,
            {"error": {"code": 403, "message": "PERMISSION_DENIED", "status": "PERMISSION_DENIED"}},
        )
    ],
    extra_retry=[
        Reply(
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Too many requests",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
        )
    ],
)
