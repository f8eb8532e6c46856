"""Discord webhooks against a local fake that checks Discord's own limits.

``FakeDiscord`` answers like Discord: 200 with a message
object for ``?wait=true``, and 400 ``Invalid Form Body`` (code 50035) when a
text limit or the 6,000-character embed total is broken, counting text
trimmed as Discord does. Every request's raw path and query are recorded.
"""

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from app.config.globals import GlobalConfig
from app.core.domain import NoticeKind
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers import build_notifier
from app.notifiers.base import BuildContext, DeliveryError
from app.notifiers.discord import (
    COLOUR_FIRING,
    COLOUR_FLAPPING,
    COLOUR_RESOLVED,
    DiscordConfig,
    DiscordNotifier,
    embed_length,
    escape_markdown,
)
from app.notifiers.http import make_client
from app.ops.clock import SystemClock
from tests.chat_fakes import FakeDiscordMessages
from tests.conformance import CANARY_PATH, Case, Operation
from tests.helpers import notice_payload, sink_message
from tests.sinks import Reply, Sink, WebhookSink, serve

TOKEN = "CANARYTOKEN-discord-0123456789abcdefghijklmnop"
WEBHOOK_PATH = f"/api/webhooks/987654321/{TOKEN}"

LIMITS = {"title": 256, "description": 4096, "field.name": 256, "field.value": 1024, "footer": 2048}


def _invalid(path: str, message: str) -> Reply:
    errors: dict[str, Any] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return Reply(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})


class FakeDiscord(Sink):
    """Discord's webhook endpoint: limits checked, raw path and query recorded."""

    default = Reply(200, {"id": "1", "type": 0, "channel_id": "2", "webhook_id": "987654321"})

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str]] = []  # (raw path, raw query) per request

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.targets.clear()

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            self.targets.append(
                (request.scope["raw_path"].decode(), request.scope["query_string"].decode())
            )
        return await super()._handle(request)

    def decide(self, body: bytes, reply: Reply) -> Reply:
        if not 200 <= reply.status < 300:
            return reply
        data = json.loads(body)
        if len(data.get("content", "").strip()) > 2000:
            return _invalid("content", "Must be 2000 or fewer in length.")
        for i, embed in enumerate(data.get("embeds", [])):
            checks = [
                ("title", embed.get("title", ""), LIMITS["title"]),
                ("description", embed.get("description", ""), LIMITS["description"]),
            ]
            checks.append(
                ("footer.text", embed.get("footer", {}).get("text", ""), LIMITS["footer"])
            )
            if len(embed.get("fields", [])) > 25:
                return _invalid(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
            for j, f in enumerate(embed.get("fields", [])):
                checks.append((f"fields.{j}.name", f["name"], LIMITS["field.name"]))
                checks.append((f"fields.{j}.value", f["value"], LIMITS["field.value"]))
            for where, text, limit in checks:
                if len(text.strip()) > limit:
                    return _invalid(f"embeds.{i}.{where}", f"Must be {limit} or fewer in length.")
            if embed_total(embed) > 6000:
                return _invalid(f"embeds.{i}", "Embed size exceeds maximum size of 6000")
        return reply


def embed_total(embed: dict[str, Any]) -> int:
    """Discord's own count, written out independently of the notifier's."""
    total = len(embed.get("title", "").strip()) + len(embed.get("description", "").strip())
    total += len(embed.get("footer", {}).get("text", "").strip()) + len(
        embed.get("author", {}).get("name", "").strip()
    )
    total += sum(len(f["name"].strip()) + len(f["value"].strip()) for f in embed.get("fields", []))
    return total


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeDiscord, str]]:
    sink = FakeDiscord()
    with serve(sink) as base:
        yield sink, base


def payload(kind: NoticeKind = NoticeKind.FIRING, **overrides: Any) -> dict[str, Any]:
    resolved = kind is NoticeKind.RESOLVED
    return notice_payload(
        kind.value,
        **{
            "ends_at": "2026-11-22T10:30:00Z" if resolved else None,
            "generator_url": "http://prometheus:9090/graph",
            **overrides,
        },
    )


def message(data: dict[str, Any], cfg: DiscordConfig | None = None) -> Message:
    return sink_message(data, cfg, receiver="chat", notification_id=7)


@asynccontextmanager
async def notifier(base: str, **extra: Any) -> AsyncIterator[tuple[DiscordNotifier, DiscordConfig]]:
    cfg = DiscordConfig.model_validate({"webhook_url": f"{base}{WEBHOOK_PATH}", **extra})
    http = make_client()
    try:
        ctx = BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock())
        built = build_notifier("discord", cfg, ctx)
        assert isinstance(built, DiscordNotifier)
        yield built, cfg
    finally:
        await http.aclose()


async def sent(
    fake: tuple[FakeDiscord, str], data: dict[str, Any], *replies: Reply, **extra: Any
) -> dict[str, Any]:
    """Send one message and return the body the fake received."""
    sink, base = fake
    sink.reset()
    sink.script(*replies)
    async with notifier(base, **extra) as (n, cfg):
        assert await n.send(message(data, cfg)) is None
    (request,) = sink.requests()
    assert request.status == 200, request.body
    body: dict[str, Any] = request.json()
    return body


async def test_exact_request(fake: tuple[FakeDiscord, str]) -> None:
    sink, _ = fake
    body = await sent(
        fake, payload(), username="alertrelay", avatar_url="https://example.com/a.png"
    )
    assert body == {
        "content": "FIRING: DiskFull",
        "embeds": [
            {
                "title": "[FIRING] DiskFull (critical): disk almost full",
                "color": 0x992D22,
                "url": "https://runbooks.example.com/diskfull",
                "description": "/var is 97% full\nLabels: instance=db-1, severity=critical\nRunbook: https://runbooks.example.com/diskfull",
                "fields": [
                    {"name": "Notice", "value": "FIRING", "inline": True},
                    {"name": "Severity", "value": "critical", "inline": True},
                    {
                        "name": "Runbook",
                        "value": "[Open the runbook](https://runbooks.example.com/diskfull)",
                        "inline": False,
                    },
                    {
                        "name": "Source",
                        "value": "[Open the source](http://prometheus:9090/graph)",
                        "inline": False,
                    },
                ],
                "footer": {"text": "alertrelay · 0123456789abcdef"},
                "timestamp": "2026-11-22T10:00:00+00:00",
            }
        ],
        "allowed_mentions": {"parse": []},
        "username": "alertrelay",
        "avatar_url": "https://example.com/a.png",
    }
    (request,) = sink.requests()
    assert sink.targets == [(WEBHOOK_PATH, "wait=true")]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "alertrelay"


async def test_prepare_is_what_is_sent(fake: tuple[FakeDiscord, str]) -> None:
    sink, base = fake
    sink.reset()
    async with notifier(base) as (n, _):
        m = message(payload())
        prepared = n.prepare(m)
        await n.send(m)
    (request,) = sink.requests()
    assert prepared.method == "POST"
    assert prepared.url == f"{base}{WEBHOOK_PATH}?wait=true"
    assert prepared.body == request.body
    assert "username" not in request.json() and "avatar_url" not in request.json()


async def test_other_query_parameters_are_kept_and_wait_forced(
    fake: tuple[FakeDiscord, str],
) -> None:
    sink, base = fake
    sink.reset()
    cfg = DiscordConfig.model_validate(
        {"webhook_url": f"{base}{WEBHOOK_PATH}?thread_id=42&wait=false"}
    )
    http = make_client()
    try:
        n = build_notifier(
            "discord",
            cfg,
            BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock()),
        )
        await n.send(message(payload()))
    finally:
        await http.aclose()
    assert sink.targets == [(WEBHOOK_PATH, "thread_id=42&wait=true")]


@pytest.mark.parametrize(
    ("kind", "status", "colour", "title_start"),
    [
        (NoticeKind.FIRING, "firing", COLOUR_FIRING, "[FIRING]"),
        (NoticeKind.REMINDER, "firing", COLOUR_FIRING, "[STILL FIRING]"),
        (NoticeKind.RESOLVED, "resolved", COLOUR_RESOLVED, "[RESOLVED]"),
        (NoticeKind.FLAPPING, "firing", COLOUR_FLAPPING, "[FLAPPING]"),
        (NoticeKind.STABLE, "firing", COLOUR_FIRING, "[STABLE, FIRING]"),
        (NoticeKind.STABLE, "resolved", COLOUR_RESOLVED, "[STABLE, RESOLVED]"),
    ],
)
async def test_each_notice_kind_looks_distinct(
    fake: tuple[FakeDiscord, str], kind: NoticeKind, status: str, colour: int, title_start: str
) -> None:
    flap = {"score": 4.5, "flapping": kind is NoticeKind.FLAPPING, "transitions": 6}
    body = await sent(fake, payload(kind, status=status, flap=flap))
    (embed,) = body["embeds"]
    assert embed["color"] == colour
    assert embed["title"].startswith(title_start)
    assert body["content"] == f"{title_start[1:-1]}: DiskFull"
    flap_fields = [f["value"] for f in embed["fields"] if f["name"] == "Flap"]
    if kind in (NoticeKind.FLAPPING, NoticeKind.STABLE):
        assert flap_fields == ["score 4.50, 6 transitions"]
    else:
        assert flap_fields == []
    if status == "resolved":
        assert embed["timestamp"] == (
            "2026-11-22T10:30:00+00:00"
            if kind is NoticeKind.RESOLVED
            else "2026-11-22T10:00:00+00:00"
        )


def test_flapping_colour_is_neither_firing_nor_resolved() -> None:
    assert len({COLOUR_FIRING, COLOUR_RESOLVED, COLOUR_FLAPPING}) == 3


async def test_duplicates_are_shown(fake: tuple[FakeDiscord, str]) -> None:
    body = await sent(fake, payload(duplicates=3))
    assert {"name": "Repeats", "value": "3 duplicate(s) seen", "inline": True} in body["embeds"][0][
        "fields"
    ]


async def test_no_runbook_no_link(fake: tuple[FakeDiscord, str]) -> None:
    body = await sent(fake, payload(runbook_url=None, generator_url=""))
    (embed,) = body["embeds"]
    assert "url" not in embed
    assert [f["name"] for f in embed["fields"]] == ["Notice", "Severity"]


# --- errors -----------------------------------------------------------------

INVALID_FORM = {
    "code": 50035,
    "errors": {
        "embeds": {
            "0": {
                "description": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": "Must be 4096 or fewer in length.",
                        }
                    ]
                }
            }
        }
    },
    "message": "Invalid Form Body",
}


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "says"),
    [
        (
            Reply(404, {"message": "Unknown Webhook", "code": 10015}),
            False,
            None,
            ["HTTP 404", "Unknown Webhook (code 10015)", "deleted"],
        ),
        (Reply(404, "not json"), False, None, ["HTTP 404", "Unknown Webhook", "deleted"]),
        (
            Reply(400, INVALID_FORM),
            False,
            None,
            [
                "HTTP 400",
                "Invalid Form Body (code 50035)",
                "embeds.0.description: Must be 4096 or fewer in length.",
            ],
        ),
        (
            Reply(401, {"message": "Invalid Webhook Token", "code": 50027}),
            False,
            None,
            ["HTTP 401", "Invalid Webhook Token (code 50027)"],
        ),
        (
            Reply(403, {"message": "Missing Permissions", "code": 50013}),
            False,
            None,
            ["HTTP 403", "Missing Permissions"],
        ),
        (
            Reply(
                429,
                {"message": "You are being rate limited.", "retry_after": 64.57, "global": False},
                headers={"Retry-After": "65"},
            ),
            True,
            65.0,
            ["HTTP 429", "You are being rate limited."],
        ),
        (
            Reply(
                429,
                {"message": "You are being rate limited.", "retry_after": 64.57, "global": False},
                headers={"Retry-After": "3"},
            ),
            True,
            64.57,
            ["HTTP 429"],
        ),
        (
            Reply(
                429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": True}
            ),
            True,
            1.5,
            ["HTTP 429"],
        ),
        (
            Reply(429, {"message": "You are being rate limited.", "retry_after": "soon"}),
            True,
            None,
            ["HTTP 429"],
        ),
        (
            Reply(500, {"message": "500: Internal Server Error", "code": 0}),
            True,
            None,
            ["HTTP 500"],
        ),
        (Reply(502, "bad gateway"), True, None, ["HTTP 502", "bad gateway"]),
        (Reply(503, "unavailable", headers={"Retry-After": "9"}), True, 9.0, ["HTTP 503"]),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else None,
)
async def test_error_mapping(
    fake: tuple[FakeDiscord, str],
    reply: Reply,
    retryable: bool,
    retry_after: float | None,
    says: list[str],
) -> None:
    sink, base = fake
    sink.reset()
    sink.script(reply)
    async with notifier(base) as (n, _):
        with pytest.raises(DeliveryError) as info:
            await n.send(message(payload()))
    err = info.value
    assert (err.retryable, err.status_code, err.retry_after) == (
        retryable,
        reply.status,
        retry_after,
    )
    for text in says:
        assert text in err.message
    assert TOKEN not in err.message and "987654321" not in err.message
    assert len(sink.requests()) == 1  # the notifier never retries by itself


async def test_204_without_wait_semantics_still_counts_as_sent(
    fake: tuple[FakeDiscord, str],
) -> None:
    sink, base = fake
    sink.reset()
    sink.script(Reply(204, ""))
    async with notifier(base) as (n, _):
        assert await n.send(message(payload())) is None


# --- size limits ------------------------------------------------------------


async def test_under_the_limits_nothing_is_cut(fake: tuple[FakeDiscord, str]) -> None:
    text = "d" * 3000
    body = await sent(fake, payload(annotations={"summary": "s" * 200, "description": text}))
    (embed,) = body["embeds"]
    assert embed["description"].startswith(text) and "…" not in embed["description"]
    assert "…" not in embed["title"]
    assert embed_total(embed) < 6000


async def test_each_text_limit_is_enforced_with_a_marker(fake: tuple[FakeDiscord, str]) -> None:
    data = payload(
        alertname="A" * 3000,
        labels={"alertname": "A" * 3000, "severity": "s" * 2000},
        severity="s" * 2000,
        annotations={"summary": "t" * 1000, "description": "x" * 5000},
    )
    body = await sent(fake, data)  # the fake answered 200: Discord would accept it
    (embed,) = body["embeds"]
    assert len(body["content"]) == 2000 and body["content"].endswith("…")
    assert len(embed["title"]) == 256 and embed["title"].endswith("…")
    severity = next(f["value"] for f in embed["fields"] if f["name"] == "Severity")
    assert len(severity) == 1024 and severity.endswith("…")
    assert embed["description"].endswith("…")
    assert embed_total(embed) <= 6000


async def test_embed_total_of_6000_is_enforced_by_cutting_the_description(
    fake: tuple[FakeDiscord, str],
) -> None:
    # Title 256 + description 4096 + three fields near 1024 would be about 7,500.
    data = payload(
        labels={"alertname": "DiskFull", "severity": "s" * 1100},
        severity="s" * 1100,
        annotations={"summary": "t" * 400, "description": "x" * 100_000},
        runbook_url="https://runbooks.example.com/" + "r" * 960,
        generator_url="http://prometheus:9090/" + "g" * 960,
    )
    body = await sent(fake, data)  # the fake (Discord's count) accepted it
    (embed,) = body["embeds"]
    assert embed_total(embed) == embed_length(embed) == 6000  # cut to the limit, not below
    assert embed["description"].startswith("xxx") and embed["description"].endswith("…")
    assert len(embed["description"]) < 4096
    assert [f["name"] for f in embed["fields"]] == ["Notice", "Severity", "Runbook", "Source"]


async def test_a_link_too_long_for_a_field_is_left_out_not_cut(
    fake: tuple[FakeDiscord, str],
) -> None:
    runbook = "https://runbooks.example.com/" + "r" * 1500
    body = await sent(fake, payload(runbook_url=runbook))
    (embed,) = body["embeds"]
    assert embed["url"] == runbook  # the title still links to it
    assert [f["name"] for f in embed["fields"]] == ["Notice", "Severity", "Source"]


async def test_surrounding_whitespace_is_not_counted(fake: tuple[FakeDiscord, str]) -> None:
    padded = "\n\n   " + "y" * 100 + "   \n\n"
    data = payload(
        annotations={"summary": "  padded  ", "description": padded},
        labels={"alertname": "DiskFull"},
        severity="",
    )
    body = await sent(fake, data)
    (embed,) = body["embeds"]
    assert embed["description"].startswith("y" * 100)
    assert embed["description"] == embed["description"].strip()
    assert embed["title"] == embed["title"].strip()


# --- injection --------------------------------------------------------------

HOSTILE = {
    "alertname": "Inject @everyone",
    "severity": "<@&456>",
    "team": "@here",
    "owner": "<@123>",
    "role": "<@&456>",
    "link": "[click me](https://evil.example/login)",
    "template": "{{ 7*7 }}",
    "code": "```rm -rf```",
}


@pytest.mark.parametrize(
    "kind",
    [
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
        NoticeKind.FLAPPING,
        NoticeKind.STABLE,
        NoticeKind.REMINDER,
    ],
)
async def test_allowed_mentions_is_empty_in_every_request(
    fake: tuple[FakeDiscord, str], kind: NoticeKind
) -> None:
    data = payload(
        kind,
        alertname=HOSTILE["alertname"],
        labels=HOSTILE,
        severity=HOSTILE["severity"],
        annotations={"summary": "@everyone <@123> look"},
    )
    body = await sent(fake, data)
    assert body["allowed_mentions"] == {"parse": []}


async def test_label_values_cannot_mention_link_or_template(fake: tuple[FakeDiscord, str]) -> None:
    data = payload(
        alertname=HOSTILE["alertname"],
        labels=HOSTILE,
        severity=HOSTILE["severity"],
        annotations={
            "summary": "@everyone <@123> [x](https://evil.example)",
            "description": "# Heading\n-# small\n> quote ||spoiler||",
        },
    )
    body = await sent(fake, data)
    (embed,) = body["embeds"]
    description = embed["description"]
    assert body["content"] == r"FIRING: Inject \@everyone"
    # Every mention or masked link reaches Discord escaped, so it renders as text.
    assert r"owner=\<\@123>" in description
    assert r"role=\<\@&456>" in description
    assert r"team=\@here" in description
    assert r"link=\[click me\](https://evil.example/login)" in description
    assert r"code=\`\`\`rm -rf\`\`\`" in description
    assert description.startswith("\\# Heading\n\\-# small\n\\> quote \\|\\|spoiler\\|\\|\n")
    unescaped = re.compile(r"(?<!\\)(<@|@everyone|@here|\[click)")
    assert not unescaped.search(body["content"])
    assert not unescaped.search(description)
    for f in embed["fields"]:
        assert not unescaped.search(f["value"]) or f["name"] in ("Runbook", "Source")
    assert {"name": "Severity", "value": r"\<\@&456>", "inline": True} in embed["fields"]
    # Alert data is never template source: the literal reaches Discord, not 49.
    assert "template={{ 7\\*7 }}" in description and "49" not in json.dumps(body)
    # The title (no links or mentions render there) carries the data as it is.
    assert (
        embed["title"]
        == "[FIRING] Inject @everyone (<@&456>): @everyone <@123> [x](https://evil.example)"
    )


async def test_runbook_url_cannot_break_out_of_its_link(fake: tuple[FakeDiscord, str]) -> None:
    body = await sent(
        fake, payload(runbook_url="https://rb.example/x)[evil](https://evil.example/<b>\\")
    )
    runbook = next(f["value"] for f in body["embeds"][0]["fields"] if f["name"] == "Runbook")
    assert (
        runbook
        == "[Open the runbook](https://rb.example/x%29[evil]%28https://evil.example/%3Cb%3E%5C)"
    )


def test_escape_keeps_urls_whole() -> None:
    text = "see https://grafana.example/d/a_b?var=x_y*z and *bold* <@1>"
    assert (
        escape_markdown(text) == r"see https://grafana.example/d/a_b?var=x_y*z and \*bold\* \<\@1>"
    )


# --- overrides, limits, identity ------------------------------------------------


async def test_title_and_text_overrides(fake: tuple[FakeDiscord, str]) -> None:
    data = payload(labels={"alertname": "DiskFull", "instance": "db-1", "owner": "<@123>"})
    body = await sent(
        fake,
        data,
        title="{{ labels.alertname }} on {{ labels.instance }} ({{ tag }})",
        text="Owner {{ labels.owner }}: {{ summary }}\n{{ default_text }}",
    )
    (embed,) = body["embeds"]
    assert embed["title"] == "DiskFull on db-1 (FIRING)"
    assert embed["description"].startswith(
        r"Owner \<\@123>: disk almost full" + "\n/var is 97% full\n"
    )
    assert body["content"] == "FIRING: DiskFull"
    assert body["allowed_mentions"] == {"parse": []}


async def test_identity_secrets_and_rate_limit(fake: tuple[FakeDiscord, str]) -> None:
    _, base = fake
    async with notifier(base) as (n, _):
        assert n.rate_limit() == RateLimit(per_second=2.5, burst=5)
        assert TOKEN not in n.destination() and base not in n.destination()
        assert n.secrets() == [f"{base}{WEBHOOK_PATH}", TOKEN]
        async with notifier(base + "/other") as (other, _):
            assert other.destination() != n.destination()


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {"webhook_url": f"{url}/api/webhooks/123456/{CANARY_PATH}"},
    Reply(200, {"id": "1"}),
    extra_dead=[Reply(400, {"code": 50035, "errors": {}, "message": "Invalid Form Body"})],
    extra_retry=[
        Reply(429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": False})
    ],
    operations=[
        Operation(
            op,
            lambda: FakeDiscordMessages(token=CANARY_PATH),
            lambda url: {
                "webhook_url": f"{url}/api/webhooks/123456/{CANARY_PATH}",
                "update_message": True,
            },
            ref=None if op == "post" else {"message_id": "1100000000000000001"},
            extra_dead=[
                Reply(401, {"message": "Invalid Webhook Token", "code": 50027}),
                Reply(404, {"message": "Unknown Webhook", "code": 10015}),
            ],
            extra_retry=[
                Reply(429, {"message": "You are being rate limited.", "retry_after": 2.0}),
            ],
        )
        for op in ("post", "edit")
    ],
)
