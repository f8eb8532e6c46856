"""Every HTTP notifier through the same table (ARCHITECTURE rule 6).

2xx is sent; 5xx, 408 and 429 are retried (with the sink's Retry-After); any
other 4xx is dead; a hang is cut by the deadline; a refused connection is
retried; and no secret (routing key, URL path, token) appears in any error,
even when the sink echoes the request back.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.clock import SystemClock
from app.config import GlobalConfig
from app.domain import NoticeKind
from app.notifiers import CONFIG_MODELS, FACTORIES, build_notifier
from app.notifiers.base import BuildContext, DeliveryError, Notifier
from app.notifiers.http import make_client
from app.render import Message, build_message
from tests.sinks import ECHO, FakePagerDuty, Reply, Sink, WebhookSink, serve

CANARY_KEY = "CANARYKEY0123456789abcdef0123456"
CANARY_PATH = "CANARYPATH-T000-B000-XXXXXXXX"
CANARY_TOKEN = "CANARYTOKEN-s3cr3t"
CANARIES = (CANARY_KEY, CANARY_PATH, CANARY_TOKEN)


@dataclass
class Case:
    sink: Callable[[], Sink]
    config: Callable[[str], dict[str, Any]]
    success: Reply
    # Failure replies the integration's API can give beyond the generic table.
    extra_dead: list[Reply] = field(default_factory=list)
    extra_retry: list[Reply] = field(default_factory=list)


CASES: dict[str, Case] = {
    "pagerduty": Case(
        FakePagerDuty,
        lambda url: {"routing_key": CANARY_KEY, "url": f"{url}/v2/enqueue"},
        Reply(202, {"status": "success", "message": "Event processed"}),
    ),
    "webhook": Case(
        WebhookSink,
        lambda url: {"url": f"{url}/hook/{CANARY_PATH}", "token": CANARY_TOKEN},
        Reply(200, "ok"),
    ),
    "discord": Case(
        WebhookSink,
        lambda url: {"webhook_url": f"{url}/api/webhooks/123456/{CANARY_PATH}"},
        Reply(200, {"id": "1"}),
        extra_dead=[Reply(400, {"code": 50035, "errors": {}, "message": "Invalid Form Body"})],
        extra_retry=[Reply(429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": False})],
    ),
    "opsgenie": Case(
        WebhookSink,
        lambda url: {"api_key": CANARY_KEY, "api_url": url},
        Reply(202, {"result": "Request will be processed", "took": 0.1, "requestId": "r-1"}),
        extra_dead=[Reply(422, {"message": "Request body is not processable.", "took": 0.0, "requestId": "r-2"})],
    ),
    "msteams": Case(
        WebhookSink,
        lambda url: {
            "webhook_url": f"{url}/workflows/{CANARY_PATH}/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={CANARY_TOKEN}"
        },
        Reply(202, ""),
        extra_dead=[Reply(413, "Request Entity too large")],
        extra_retry=[Reply(200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429")],
    ),
    "googlechat": Case(
        WebhookSink,
        lambda url: {"url": f"{url}/v1/spaces/{CANARY_PATH}/messages?key={CANARY_KEY}&token={CANARY_TOKEN}"},
        Reply(200, {"name": "spaces/x/messages/y"}),
        extra_dead=[Reply(403, {"error": {"code": 403, "message": "PERMISSION_DENIED", "status": "PERMISSION_DENIED"}})],
        extra_retry=[Reply(429, {"error": {"code": 429, "message": "Too many requests", "status": "RESOURCE_EXHAUSTED"}})],
    ),
    "slack": Case(
        WebhookSink,
        lambda url: {"api_url": f"{url}/services/{CANARY_PATH}"},
        Reply(200, "ok"),
        extra_dead=[Reply(404, "channel_not_found"), Reply(410, "channel_is_archived"), Reply(200, "invalid_payload")],
        extra_retry=[Reply(500, "rollup_error"), Reply(429, {"ok": False, "error": "rate_limited", "retry_after": 1})],
    ),
    "mattermost": Case(
        WebhookSink,
        lambda url: {"webhook_url": f"{url}/hooks/{CANARY_PATH}"},
        Reply(200, "ok"),
        extra_dead=[Reply(200, "not ok")],
    ),
}

# Integrations that do not speak HTTP have suites of their own.
NOT_HTTP = {"log", "email"}


def test_every_registered_http_notifier_is_in_the_table() -> None:
    assert set(FACTORIES) - NOT_HTTP == set(CASES)
    assert set(FACTORIES) <= {name for name, _ in CONFIG_MODELS.values()}


def message(kind: NoticeKind = NoticeKind.FIRING) -> Message:
    payload = {
        "kind": kind.value,
        "status": "resolved" if kind is NoticeKind.RESOLVED else "firing",
        "fingerprint": "0123456789abcdef",
        "alertname": "Conformance",
        "labels": {"alertname": "Conformance", "severity": "critical", "instance": "db-1"},
        "annotations": {"summary": "conformance check", "description": "it works"},
        "severity": "critical",
        "starts_at": "2026-11-22T10:00:00Z",
        "ends_at": None,
        "generator_url": "http://prometheus:9090/graph",
        "runbook_url": "https://runbooks.example.com/conformance",
        "dedup_key": "alertrelay/0123456789abcdef/20261122T100000.000000Z",
        "group_key": '{}:{alertname="Conformance"}',
        "group_firing": 1,
        "duplicates": 0,
        "flap": {"score": 1.0, "flapping": False, "transitions": 0},
    }
    return build_message(payload, notification_id=1, idempotency_key="k" * 64, receiver="r", attempt=1)


@pytest.fixture(scope="module")
def sinks() -> Iterator[dict[str, tuple[Sink, str]]]:
    """One sink per integration for the whole module (starting uvicorn per test is slow)."""
    with contextlib.ExitStack() as stack:
        served = {}
        for name, case in CASES.items():
            sink = case.sink()
            served[name] = (sink, stack.enter_context(serve(sink)))
        yield served


@asynccontextmanager
async def notifier_for(
    name: str, sinks: dict[str, tuple[Sink, str]], reply: Reply | None = None, *, url: str | None = None
) -> AsyncIterator[tuple[Notifier, Sink]]:
    case = CASES[name]
    sink, base = sinks[name]
    sink.reset()
    if reply is not None:
        sink.script(reply)
    http = make_client()
    try:
        model = dict(CONFIG_MODELS.items())[f"{name}_configs"][1]
        cfg = model.model_validate(case.config(url or base))
        ctx = BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock())
        yield build_notifier(name, cfg, ctx), sink
    finally:
        await http.aclose()


def assert_no_secret(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"secret leaked: {text!r}"


@pytest.mark.parametrize("name", sorted(CASES))
async def test_success(name: str, sinks: dict[str, tuple[Sink, str]]) -> None:
    async with notifier_for(name, sinks, CASES[name].success) as (notifier, sink):
        note = await notifier.send(message())
        assert note is None
        assert len(sink.requests()) == 1
        assert notifier.destination() and all(c not in notifier.destination() for c in CANARIES)
        assert set(CANARIES) & set(notifier.secrets())



@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    [
        (Reply(500, ECHO), True, None),
        (Reply(502, "bad gateway"), True, None),
        (Reply(503, ECHO, headers={"Retry-After": "7"}), True, 7.0),
        (Reply(408, "timeout"), True, None),
        (Reply(429, ECHO, headers={"Retry-After": "2"}), True, 2.0),
        (Reply(400, ECHO), False, None),
        (Reply(401, ECHO), False, None),
        (Reply(403, "forbidden"), False, None),
        (Reply(404, ECHO), False, None),
        (Reply(410, "gone"), False, None),
        (Reply(302, "", headers={"Location": "http://127.0.0.1:9/elsewhere"}), False, None),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else str(v),
)
async def test_error_classification(name: str, sinks: dict[str, tuple[Sink, str]], reply: Reply, retryable: bool, retry_after: float | None) -> None:
    async with notifier_for(name, sinks, reply) as (notifier, sink):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    err = info.value
    assert err.retryable is retryable
    assert err.status_code == reply.status
    assert err.retry_after == retry_after
    assert f"HTTP {reply.status}" in err.message
    assert_no_secret(err.message)
    assert_no_secret(str(err))


EXTRA = [(name, reply, False) for name, case in sorted(CASES.items()) for reply in case.extra_dead] + [
    (name, reply, True) for name, case in sorted(CASES.items()) for reply in case.extra_retry
]


@pytest.mark.parametrize(("name", "reply", "retryable"), EXTRA, ids=[f"{n}-{r.status}-{'retry' if t else 'dead'}" for n, r, t in EXTRA])
async def test_service_specific_answers(name: str, sinks: dict[str, tuple[Sink, str]], reply: Reply, retryable: bool) -> None:
    """Each integration's own documented failures (beyond the shared table)."""
    async with notifier_for(name, sinks, reply) as (notifier, sink):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    assert info.value.retryable is retryable
    assert_no_secret(info.value.message)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_hang_is_cut_by_the_deadline(name: str, sinks: dict[str, tuple[Sink, str]]) -> None:
    async with notifier_for(name, sinks, Reply(200, "ok", delay=30)) as (notifier, sink):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await notifier.send(message())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", sorted(CASES))
async def test_connection_refused_is_retryable_and_secret_free(name: str, sinks: dict[str, tuple[Sink, str]]) -> None:
    async with notifier_for(name, sinks, url=f"http://127.0.0.1:{_closed_port()}") as (notifier, _):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    assert info.value.retryable is True and info.value.status_code is None
    assert_no_secret(info.value.message)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_huge_answer_is_read_only_in_part(name: str, sinks: dict[str, tuple[Sink, str]]) -> None:
    """SINK-15: at most 64 KiB of an answer is read."""
    async with notifier_for(name, sinks, Reply(500, "x" * 5_000_000)) as (notifier, _):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    assert info.value.retryable and len(info.value.message) < 1200

