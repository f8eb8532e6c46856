"""Opsgenie Alert API v2 against a local fake that keeps alerts by alias.

``FakeOpsgenie`` checks the ``GenieKey`` header and Opsgenie's field limits
(422 when broken, as Opsgenie does), opens an alert per alias on create (a
create for an open alias only counts up, as Opsgenie dedups) and closes it
on ``POST /v2/alerts/{alias}/close?identifierType=alias``. Raw paths and
query strings are recorded, so percent-encoding is checked as sent.
"""

import contextvars
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from starlette.requests import Request
from starlette.responses import Response

from app.config.globals import GlobalConfig
from app.core.domain import NoticeKind
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers import build_notifier
from app.notifiers.base import BuildContext, DeliveryError
from app.notifiers.http import make_client
from app.notifiers.opsgenie import OpsgenieConfig, OpsgenieNotifier, priority_for
from app.ops.clock import SystemClock
from tests.conformance import CANARY_KEY, Case
from tests.helpers import notice_payload, sink_message
from tests.sinks import Reply, Sink, WebhookSink, serve

KEY = "CANARYKEY-opsgenie-0123456789abcdef"
ALIAS = "alertrelay/0123456789abcdef/20261122T100000.000000Z"
ALIAS_IN_PATH = "alertrelay%2F0123456789abcdef%2F20261122T100000.000000Z"
ACCEPTED = {
    "result": "Request will be processed",
    "took": 0.107,
    "requestId": "9ae63dd7-ed00-4c81-86f0-c4ffd33142c9",
}
# The request being decided (each request is served in a task of its own).
_ROUTE: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("route")
CREATE_KEYS = {"message", "alias", "description", "details", "priority", "tags", "source", "entity"}


def _unprocessable(field: str, text: str) -> Reply:
    return Reply(
        422,
        {
            "message": "Request body is not processable. Please check the errors.",
            "errors": {field: text},
            "took": 0.0,
            "requestId": "r-422",
        },
    )


class FakeOpsgenie(Sink):
    default = Reply(202, ACCEPTED)

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str]] = []  # (raw path, raw query)
        self.alerts: dict[str, dict[str, Any]] = {}  # alias → {"open", "count", "closes"}
        self.log: list[tuple[str, str]] = []  # ("create" | "close", alias) as accepted

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.targets.clear()
            self.alerts.clear()
            self.log.clear()

    async def _handle(self, request: Request) -> Response:
        raw_path = request.scope["raw_path"].decode()
        query = request.scope["query_string"].decode()
        with self._lock:
            self.targets.append((raw_path, query))
        auth = request.headers.get("authorization", "")
        if auth != f"GenieKey {KEY}":
            self.script_front(
                Reply(401, {"message": "Could not authenticate", "took": 0.0, "requestId": "r-401"})
            )
        _ROUTE.set((raw_path, query))
        return await super()._handle(request)

    def script_front(self, reply: Reply) -> None:
        with self._lock:
            self._script.insert(0, reply)

    def decide(self, body: bytes, reply: Reply) -> Reply:
        if not 200 <= reply.status < 300:
            return reply
        raw_path, query = _ROUTE.get()
        data = json.loads(body)
        if raw_path == "/v2/alerts":
            return self._create(data, reply)
        segments = raw_path.split("/")
        if len(segments) == 5 and segments[:3] == ["", "v2", "alerts"] and segments[4] == "close":
            if parse_qs(query) != {"identifierType": ["alias"]}:
                return Reply(
                    400,
                    {
                        "message": "identifierType must be alias here",
                        "took": 0.0,
                        "requestId": "r-400",
                    },
                )
            alias = unquote(segments[3])
            with self._lock:
                alert = self.alerts.get(alias)
                if alert is not None and alert["open"]:
                    alert["open"] = False
                    alert["closes"].append(data)
                self.log.append(("close", alias))
            return reply
        return Reply(404, {"message": "No handler", "took": 0.0, "requestId": "r-404"})

    def _create(self, data: dict[str, Any], reply: Reply) -> Reply:
        message = data.get("message", "")
        if not message.strip():
            return _unprocessable("message", "Message can not be empty.")
        for field, limit in (
            ("message", 130),
            ("alias", 512),
            ("description", 15000),
            ("entity", 512),
            ("source", 100),
        ):
            if len(data.get(field, "")) > limit:
                return _unprocessable(field, f"{field} can not be longer than {limit} characters.")
        tags = data.get("tags", [])
        if len(tags) > 20 or any(len(t) > 50 for t in tags):
            return _unprocessable("tags", "at most 20 tags of at most 50 characters")
        details = data.get("details", {})
        if any(not isinstance(v, str) for v in details.values()):
            return _unprocessable("details", "values must be strings")
        if sum(len(k) + len(v) for k, v in details.items()) > 8000:
            return _unprocessable("details", "can not be longer than 8000 characters in total")
        if data.get("priority") not in ("P1", "P2", "P3", "P4", "P5"):
            return _unprocessable("priority", "invalid")
        with self._lock:
            alert = self.alerts.get(data.get("alias", ""))
            if alert is None or not alert["open"]:
                self.alerts[data.get("alias", "")] = {
                    "open": True,
                    "count": 1,
                    "create": data,
                    "closes": [],
                }
            else:
                alert["count"] += 1
            self.log.append(("create", data.get("alias", "")))
        return reply


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpsgenie, str]]:
    sink = FakeOpsgenie()
    with serve(sink) as base:
        yield sink, base


def payload(kind: NoticeKind = NoticeKind.FIRING, **overrides: Any) -> dict[str, Any]:
    resolved = kind is NoticeKind.RESOLVED
    return notice_payload(
        kind.value,
        **{
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db-1:9100"},
            "ends_at": "2026-11-22T10:30:00Z" if resolved else None,
            "generator_url": "http://prometheus:9090/graph",
            "dedup_key": ALIAS,
            "group_firing": 0 if resolved else 1,
            **overrides,
        },
    )


def message(data: dict[str, Any], cfg: OpsgenieConfig | None = None) -> Message:
    return sink_message(data, cfg, receiver="oncall", notification_id=7)


@asynccontextmanager
async def notifier(
    api_url: str | None, **extra: Any
) -> AsyncIterator[tuple[OpsgenieNotifier, OpsgenieConfig]]:
    raw: dict[str, Any] = {"api_key": KEY, **extra}
    if api_url is not None:
        raw["api_url"] = api_url
    cfg = OpsgenieConfig.model_validate(raw)
    http = make_client()
    try:
        ctx = BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock())
        built = build_notifier("opsgenie", cfg, ctx)
        assert isinstance(built, OpsgenieNotifier)
        yield built, cfg
    finally:
        await http.aclose()


async def send(
    fake: tuple[FakeOpsgenie, str], *datas: dict[str, Any], **extra: Any
) -> list[dict[str, Any]]:
    """Send messages in order; return the bodies the fake received (all must be accepted)."""
    sink, base = fake
    sink.reset()
    async with notifier(f"{base}/", **extra) as (n, cfg):
        for data in datas:
            assert await n.send(message(data, cfg)) is None
    requests = sink.requests()
    assert [r.status for r in requests] == [202] * len(datas), [r.body for r in requests]
    return [r.json() for r in requests]


async def test_exact_create_request(fake: tuple[FakeOpsgenie, str]) -> None:
    sink, _ = fake
    (body,) = await send(fake, payload(), tags=["team-storage", "prod"])
    assert body == {
        "message": "[FIRING] DiskFull (critical): disk almost full",
        "alias": ALIAS,
        "description": "/var is 97% full\nLabels: instance=db-1:9100, severity=critical\nRunbook: https://runbooks.example.com/diskfull",
        "details": {
            "runbook-url": "https://runbooks.example.com/diskfull",
            "generator-url": "http://prometheus:9090/graph",
            "alert-fingerprint": "0123456789abcdef",
            "notice-kind": "FIRING",
            "alertname": "DiskFull",
            "instance": "db-1:9100",
            "severity": "critical",
        },
        "priority": "P1",
        "tags": ["team-storage", "prod", "critical"],
        "source": "alertrelay",
        "entity": "db-1:9100",
    }
    (request,) = sink.requests()
    assert sink.targets == [("/v2/alerts", "")]
    assert request.headers["authorization"] == f"GenieKey {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "alertrelay"


async def test_exact_close_request(fake: tuple[FakeOpsgenie, str]) -> None:
    sink, _ = fake
    (body,) = await send(fake, payload(NoticeKind.RESOLVED))
    assert body == {
        "source": "alertrelay",
        "note": "[RESOLVED] DiskFull (critical): disk almost full\n/var is 97% full\nLabels: instance=db-1:9100, severity=critical\nRunbook: https://runbooks.example.com/diskfull",
    }
    # The alias is one path segment: its "/" travel as %2F.
    assert sink.targets == [(f"/v2/alerts/{ALIAS_IN_PATH}/close", "identifierType=alias")]
    (request,) = sink.requests()
    assert request.headers["authorization"] == f"GenieKey {KEY}"


async def test_firing_then_resolved_opens_and_closes_one_alert(
    fake: tuple[FakeOpsgenie, str],
) -> None:
    sink, _ = fake
    await send(fake, payload(), payload(NoticeKind.RESOLVED))
    assert sink.log == [("create", ALIAS), ("close", ALIAS)]
    assert list(sink.alerts) == [ALIAS]
    assert sink.alerts[ALIAS]["open"] is False and sink.alerts[ALIAS]["count"] == 1


async def test_reminder_flapping_and_stable_firing_add_to_the_open_alert(
    fake: tuple[FakeOpsgenie, str],
) -> None:
    sink, _ = fake
    flap = {"score": 4.5, "flapping": True, "transitions": 6}
    bodies = await send(
        fake,
        payload(),
        payload(NoticeKind.REMINDER),
        payload(NoticeKind.FLAPPING, flap=flap),
        payload(NoticeKind.STABLE, flap={**flap, "flapping": False, "score": 1.2}),
    )
    assert sink.log == [("create", ALIAS)] * 4
    assert sink.alerts[ALIAS] | {"create": None} == {
        "open": True,
        "count": 4,
        "create": None,
        "closes": [],
    }
    assert bodies[2]["details"]["notice-kind"] == "FLAPPING"
    assert (
        bodies[2]["details"]["flap-score"] == "4.50"
        and bodies[2]["details"]["flap-transitions"] == "6"
    )
    assert bodies[2]["message"].startswith("[FLAPPING] DiskFull")
    assert bodies[3]["details"]["notice-kind"] == "STABLE, FIRING"


async def test_stable_resolved_closes(fake: tuple[FakeOpsgenie, str]) -> None:
    sink, _ = fake
    flap = {"score": 1.2, "flapping": False, "transitions": 6}
    await send(
        fake,
        payload(NoticeKind.FLAPPING, flap={**flap, "flapping": True}),
        payload(NoticeKind.STABLE, status="resolved", flap=flap),
    )
    assert sink.log == [("create", ALIAS), ("close", ALIAS)]
    assert sink.targets[1] == (f"/v2/alerts/{ALIAS_IN_PATH}/close", "identifierType=alias")
    assert sink.alerts[ALIAS]["open"] is False


async def test_api_url_with_a_path_and_no_trailing_slash(fake: tuple[FakeOpsgenie, str]) -> None:
    sink, base = fake
    sink.reset()
    async with notifier(f"{base}/proxy/opsgenie") as (n, _):
        assert n.prepare(message(payload())).url == f"{base}/proxy/opsgenie/v2/alerts"
        assert n.prepare(message(payload(NoticeKind.RESOLVED))).url == (
            f"{base}/proxy/opsgenie/v2/alerts/{ALIAS_IN_PATH}/close?identifierType=alias"
        )


async def test_default_api_url_is_the_global_one() -> None:
    async with notifier(None) as (n, _):
        assert n.prepare(message(payload())).url == "https://api.opsgenie.com/v2/alerts"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "P1"),
        ("page", "P1"),
        ("CRITICAL", "P1"),
        ("error", "P2"),
        ("warning", "P3"),
        ("info", "P5"),
        ("none", "P5"),
        ("", "P5"),
        ("weird", "P5"),
    ],
)
def test_priority_from_severity(severity: str, expected: str) -> None:
    assert priority_for(severity) == expected


async def test_configured_priority_wins(fake: tuple[FakeOpsgenie, str]) -> None:
    (body,) = await send(fake, payload(), priority="P4")
    assert body["priority"] == "P4"


async def test_tags_are_deduplicated_cut_and_capped(fake: tuple[FakeOpsgenie, str]) -> None:
    tags = ["critical", "t" * 80, *[f"tag{i}" for i in range(25)]]
    (body,) = await send(fake, payload(), tags=tags)
    assert len(body["tags"]) == 20
    assert body["tags"][0] == "critical" and body["tags"].count("critical") == 1
    assert body["tags"][1] == "t" * 49 + "…"


async def test_no_instance_no_entity_and_no_severity_tag(fake: tuple[FakeOpsgenie, str]) -> None:
    (body,) = await send(fake, payload(labels={"alertname": "DiskFull"}, severity=""))
    assert "entity" not in body and body["tags"] == [] and body["priority"] == "P5"


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "says"),
    [
        (
            Reply(400, {"message": "Invalid request", "took": 0.0, "requestId": "r-1"}),
            False,
            None,
            ["HTTP 400", "Invalid request (requestId r-1)"],
        ),
        (
            Reply(401, {"message": "Could not authenticate", "took": 0.0, "requestId": "r-2"}),
            False,
            None,
            ["HTTP 401", "Could not authenticate"],
        ),
        (
            Reply(403, {"message": "You are not authorized", "took": 0.0, "requestId": "r-3"}),
            False,
            None,
            ["HTTP 403"],
        ),
        (
            Reply(404, {"message": "Alert does not exist", "took": 0.0, "requestId": "r-4"}),
            False,
            None,
            ["HTTP 404", "Alert does not exist"],
        ),
        (
            _unprocessable("message", "Message can not be empty."),
            False,
            None,
            [
                "HTTP 422",
                "Please check the errors.: message: Message can not be empty. (requestId r-422)",
            ],
        ),
        (
            Reply(
                429,
                {"message": "Too many requests", "took": 0.0, "requestId": "r-5"},
                headers={"Retry-After": "4"},
            ),
            True,
            4.0,
            ["HTTP 429", "Too many requests"],
        ),
        (Reply(429, {"message": "Too many requests"}), True, None, ["HTTP 429"]),
        (
            Reply(500, {"message": "Internal error", "requestId": "r-6"}),
            True,
            None,
            ["HTTP 500", "Internal error (requestId r-6)"],
        ),
        (
            Reply(503, "unavailable", headers={"Retry-After": "12"}),
            True,
            12.0,
            ["HTTP 503", "unavailable"],
        ),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else None,
)
@pytest.mark.parametrize("kind", [NoticeKind.FIRING, NoticeKind.RESOLVED])
async def test_error_mapping(
    fake: tuple[FakeOpsgenie, str],
    kind: NoticeKind,
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
            await n.send(message(payload(kind)))
    err = info.value
    assert (err.retryable, err.status_code, err.retry_after) == (
        retryable,
        reply.status,
        retry_after,
    )
    for text in says:
        assert text in err.message
    assert KEY not in err.message
    assert len(sink.requests()) == 1


async def test_wrong_key_is_dead_and_not_leaked(fake: tuple[FakeOpsgenie, str]) -> None:
    sink, base = fake
    sink.reset()
    cfg = OpsgenieConfig.model_validate({"api_key": "CANARY-wrong-key-0123456789", "api_url": base})
    http = make_client()
    try:
        n = build_notifier(
            "opsgenie",
            cfg,
            BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock()),
        )
        with pytest.raises(DeliveryError) as info:
            await n.send(message(payload()))
    finally:
        await http.aclose()
    assert info.value.status_code == 401 and not info.value.retryable
    assert (
        "Could not authenticate" in info.value.message
        and "CANARY-wrong-key" not in info.value.message
    )


# --- size limits ------------------------------------------------------------


async def test_message_and_description_are_cut_with_a_marker(
    fake: tuple[FakeOpsgenie, str],
) -> None:
    data = payload(annotations={"summary": "s" * 1000, "description": "d" * 50_000})
    (body,) = await send(fake, data)  # the fake checked the limits and accepted
    assert len(body["message"]) == 130 and body["message"].endswith("…")
    assert body["message"].startswith("[FIRING] DiskFull (critical): sss")
    assert len(body["description"]) == 15_000 and body["description"].endswith("…")


async def test_under_the_limits_nothing_is_cut(fake: tuple[FakeOpsgenie, str]) -> None:
    data = payload(annotations={"summary": "s" * 80, "description": "d" * 14_000})
    (body,) = await send(fake, data)
    assert "…" not in body["message"] and "…" not in body["description"]
    assert body["description"].startswith("d" * 14_000)


async def test_details_stay_within_8000_characters(fake: tuple[FakeOpsgenie, str]) -> None:
    labels = {
        "alertname": "DiskFull",
        "huge": "h" * 5000,
        **{f"label{i:03}": "v" * 300 for i in range(60)},
    }
    (body,) = await send(fake, payload(labels=labels))
    details = body["details"]
    assert sum(len(k) + len(v) for k, v in details.items()) <= 8000
    assert details["runbook-url"] == "https://runbooks.example.com/diskfull"  # ours go first
    assert details["huge"] == "h" * 999 + "…"
    assert details["label000"] == "v" * 300
    kept = sum(1 for k in details if k.startswith("label"))
    assert 0 < kept < 60
    assert details["omitted-details"] == f"{60 - kept} left out (Opsgenie's 8000-character limit)"


async def test_alias_is_sliced_not_marked(fake: tuple[FakeOpsgenie, str]) -> None:
    long_key = "alertrelay/" + "f" * 700
    sink, _ = fake
    bodies = await send(
        fake, payload(dedup_key=long_key), payload(NoticeKind.RESOLVED, dedup_key=long_key)
    )
    assert bodies[0]["alias"] == long_key[:512]
    assert sink.log == [("create", long_key[:512]), ("close", long_key[:512])]


# --- injection --------------------------------------------------------------

HOSTILE = {
    "alertname": "DiskFull",
    "severity": "@everyone",
    "owner": "<@123>",
    "role": "<@&456>",
    "link": "[click me](https://evil.example/login)",
    "template": "{{ 7*7 }}",
    "quote": '", "priority": "P1", "x": "',
    "instance": "</td><script>alert(1)</script>",
}


async def test_label_values_stay_data(fake: tuple[FakeOpsgenie, str]) -> None:
    data = payload(
        labels=HOSTILE,
        severity=HOSTILE["severity"],
        annotations={"summary": "<img src=x onerror=alert(1)> [x](https://evil.example) <@123>"},
    )
    sink, _ = fake
    (body,) = await send(fake, data)
    assert set(body) == CREATE_KEYS  # nothing added by a label
    assert body["priority"] == "P5"  # an unknown severity, whatever it says
    assert body["tags"] == ["@everyone"]
    for key, value in HOSTILE.items():
        assert body["details"][key] == value  # verbatim, as a string value
    assert body["entity"] == HOSTILE["instance"]
    # Opsgenie renders HTML in the message: the tag opener is broken, the rest reads the same.
    assert (
        body["message"]
        == "[FIRING] DiskFull (@everyone): < img src=x onerror=alert(1)> [x](https://evil.example) <@123>"
    )
    assert "<img" not in body["message"]
    assert "{{ 7*7 }}" in body["description"] and "49" not in json.dumps(body)
    assert sink.targets == [("/v2/alerts", "")]


# --- overrides, limits, identity ------------------------------------------------


async def test_title_and_text_overrides(fake: tuple[FakeOpsgenie, str]) -> None:
    title = "{{ labels.alertname }} on {{ labels.instance }} ({{ tag }})"
    text = "Owner: {{ labels.owner | default('nobody') }}\n{{ default_text }}"
    bodies = await send(fake, payload(), payload(NoticeKind.RESOLVED), title=title, text=text)
    assert bodies[0]["message"] == "DiskFull on db-1:9100 (FIRING)"
    assert bodies[0]["description"].startswith("Owner: nobody\n/var is 97% full\n")
    assert bodies[1]["note"].startswith("DiskFull on db-1:9100 (RESOLVED)\nOwner: nobody\n")


async def test_identity_secrets_and_rate_limit(fake: tuple[FakeOpsgenie, str]) -> None:
    _, base = fake
    async with notifier(base) as (n, _):
        assert n.rate_limit() == RateLimit(per_second=10.0, burst=10)
        assert n.secrets() == [KEY]
        assert KEY not in n.destination()
        async with notifier(base, api_key="another-key-0123456789") as (other, _):
            assert other.destination() != n.destination()


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {"api_key": CANARY_KEY, "api_url": url},
    Reply(202, {"result": "Request will be processed", "took": 0.1, "requestId": "r-1"}),
    extra_dead=[
        Reply(422, {"message": "Request body is not processable.", "took": 0.0, "requestId": "r-2"})
    ],
)
