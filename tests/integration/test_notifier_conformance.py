"""Every notifier through the same table (docs/architecture.md, rules of the house).

2xx is sent; 5xx, 408 and 429 are retried (with the sink's Retry-After); any
other 4xx is dead; a hang is cut by the deadline; a refused connection is
retried; and no secret (routing key, URL path, token) appears in any error,
even when the sink echoes the request back, nor in any log line written
during a test (checked for every test of this module, as the app's JSON log
handler writes them).

Through the app, on SQLite and PostgreSQL, every registered notifier (email
against an aiosmtpd server, and log, which holds no secret) fails once
retryably and then for good against a sink that echoes its secrets: the
stored last_error, every delivery_attempts.error, the API and the logs stay
secret-free; and a hanging destination reschedules the row instead of
killing it.
"""

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import trustme
from starlette.applications import Starlette

from app.config.globals import GlobalConfig
from app.core.domain import NoticeKind
from app.core.message import Message, build_message
from app.delivery.worker import DeliveryWorker
from app.notifiers import CONFIG_MODELS, FACTORIES, build_notifier
from app.notifiers.base import BuildContext, DeliveryError, MessageGone, Notifier, Referencing
from app.notifiers.http import make_client
from app.ops.clock import ManualClock, SystemClock
from app.ops.logs import JsonFormatter
from tests.chat_fakes import AS_SERVICE
from tests.conformance import CANARIES, CANARY_KEY, CANARY_PATH, CANARY_TOKEN, Case, Operation
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.integration.test_email import PASSWORD as SMTP_PASSWORD
from tests.integration.test_email import USER as SMTP_USER
from tests.integration.test_email import smtp_server
from tests.sinks import ECHO, Reply, Sink, serve

# The SMTP password, and the base64 forms AUTH PLAIN and LOGIN put on the wire.
SMTP_CANARIES = (
    SMTP_PASSWORD,
    base64.b64encode(SMTP_PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode(),
)


# Integrations that do not speak HTTP have suites of their own.
NOT_HTTP = {"log", "email"}


def _cases() -> tuple[dict[str, Case], list[str]]:
    """Each registered HTTP integration's case, from its own test file; and
    the integrations that have none."""
    found: dict[str, Case] = {}
    missing: list[str] = []
    for name in sorted(FACTORIES):
        if name in NOT_HTTP:
            continue
        try:
            found[name] = importlib.import_module(f"tests.integration.test_{name}").CONFORMANCE
        except (ImportError, AttributeError):
            missing.append(f"tests/integration/test_{name}.py: CONFORMANCE")
    return found, missing


CASES, MISSING = _cases()


def test_every_registered_http_notifier_is_in_the_table() -> None:
    assert MISSING == []
    assert len(CASES) == len(set(FACTORIES) - NOT_HTTP) > 0
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
    return build_message(
        payload, notification_id=1, idempotency_key="k" * 64, receiver="r", attempt=1
    )


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
    name: str,
    sinks: dict[str, tuple[Sink, str]],
    reply: Reply | None = None,
    *,
    url: str | None = None,
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


def assert_no_secret(text: str, canaries: tuple[str, ...] = CANARIES) -> None:
    for canary in canaries:
        assert canary not in text, f"secret leaked: {text!r}"


SINK_LOGGERS = ("uvicorn", "mail.log")


def log_leaks(records: list[logging.LogRecord], canaries: tuple[str, ...]) -> list[str]:
    """Log lines, as the app's JSON handler writes them, that carry a secret.

    The sinks' own servers (uvicorn, aiosmtpd's ``mail.log``) are not
    alertrelay, and say what they were sent: they are left out."""
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in records if not r.name.startswith(SINK_LOGGERS)]
    return [line for line in lines if any(c in line for c in canaries)]


@pytest.fixture(autouse=True)
def no_secret_in_any_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test sends, nothing logged meanwhile (at any level) names a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    assert log_leaks(caplog.records, CANARIES + SMTP_CANARIES) == []


def test_the_log_check_sees_extra_fields_and_tracebacks() -> None:
    """The check above can fail: a secret in a message, an extra field or a traceback is found."""
    logger = logging.getLogger("app.test")

    def record(**kw: Any) -> logging.LogRecord:
        return logger.makeRecord(
            "app.test",
            logging.INFO,
            __file__,
            1,
            kw.pop("msg", "m"),
            (),
            kw.pop("exc_info", None),
            extra=kw,
        )

    try:
        raise RuntimeError(f"cannot reach /hook/{CANARY_PATH}")
    except RuntimeError:
        exc_info = sys.exc_info()
    leaky = [
        record(msg=f"key {CANARY_KEY}"),
        record(error=f"Bearer {CANARY_TOKEN}"),
        record(exc_info=exc_info),
    ]
    assert len(log_leaks([*leaky, record(error="clean")], CANARIES)) == 3
    uvicorn = logging.getLogger("uvicorn.error").makeRecord(
        "uvicorn.error", logging.INFO, __file__, 1, CANARY_KEY, (), None
    )
    assert log_leaks([uvicorn], CANARIES) == []


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
async def test_error_classification(
    name: str,
    sinks: dict[str, tuple[Sink, str]],
    reply: Reply,
    retryable: bool,
    retry_after: float | None,
) -> None:
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


EXTRA = [
    (name, reply, False) for name, case in sorted(CASES.items()) for reply in case.extra_dead
] + [(name, reply, True) for name, case in sorted(CASES.items()) for reply in case.extra_retry]


@pytest.mark.parametrize(
    ("name", "reply", "retryable"),
    EXTRA,
    ids=[f"{n}-{r.status}-{'retry' if t else 'dead'}" for n, r, t in EXTRA],
)
async def test_service_specific_answers(
    name: str, sinks: dict[str, tuple[Sink, str]], reply: Reply, retryable: bool
) -> None:
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
async def test_connection_refused_is_retryable_and_secret_free(
    name: str, sinks: dict[str, tuple[Sink, str]]
) -> None:
    async with notifier_for(name, sinks, url=f"http://127.0.0.1:{_closed_port()}") as (notifier, _):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    assert info.value.retryable is True and info.value.status_code is None
    assert_no_secret(info.value.message)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_huge_answer_is_read_only_in_part(
    name: str, sinks: dict[str, tuple[Sink, str]]
) -> None:
    """At most 64 KiB of an answer is read."""
    async with notifier_for(name, sinks, Reply(500, "x" * 5_000_000)) as (notifier, _):
        with pytest.raises(DeliveryError) as info:
            await notifier.send(message())
    assert info.value.retryable and len(info.value.message) < 1200


# ------------------------------------------------------------------ the other operations: post by API, edit, reply

# Each integration's further modes (posting through an API that names the
# message, editing it, replying in its thread) through the same table.
OPS = [(name, op) for name, case in sorted(CASES.items()) for op in case.operations]
OP_IDS = [f"{name}-{op.name}" for name, op in OPS]

# The answers every operation is classified by (as for plain sends above).
TABLE = [
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
]


def test_the_editing_integrations_have_operations() -> None:
    names = {name for name, _ in OPS}
    assert {"slack", "discord", "mattermost"} <= names
    assert {op.name for _, op in OPS} == {"post", "edit", "reply"}


@pytest.fixture(scope="module")
def op_sinks() -> Iterator[dict[str, tuple[Sink, str]]]:
    with contextlib.ExitStack() as stack:
        served = {}
        for ident, (_, op) in zip(OP_IDS, OPS, strict=True):
            sink = op.sink()
            served[ident] = (sink, stack.enter_context(serve(sink)))
        yield served


@asynccontextmanager
async def op_notifier(
    name: str, op: Operation, base: str, *, url: str | None = None
) -> AsyncIterator[Any]:
    http = make_client()
    try:
        model = dict(CONFIG_MODELS.items())[f"{name}_configs"][1]
        cfg = model.model_validate(op.config(url or base))
        ctx = BuildContext(global_config=GlobalConfig(), http=http, clock=SystemClock())
        notifier = build_notifier(name, cfg, ctx)
        assert isinstance(notifier, Referencing) and notifier.message_mode() is not None
        yield notifier
    finally:
        await http.aclose()


async def run_op(notifier: Any, op: Operation, ref: dict[str, str] | None) -> Any:
    if op.name == "edit":
        assert ref is not None
        return await notifier.edit(message(NoticeKind.RESOLVED), ref)
    return await notifier.post(message(), ref if op.name == "reply" else None)


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
async def test_operation_success(
    name: str, op: Operation, op_sinks: dict[str, tuple[Sink, str]]
) -> None:
    """Against the fake that answers as the service: a post names its message, which edits and replies reach."""
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    async with op_notifier(name, op, base) as notifier:
        ref = await notifier.post(message(), None)
        assert ref and all(isinstance(v, str) and v for v in ref.values())
        assert_no_secret(json.dumps(ref))
        result = await run_op(notifier, op, ref)
    if op.name == "edit":
        assert result is None
    else:
        assert result and result != ref
    assert len(sink.requests()) == 2
    assert all(200 <= r.status < 300 for r in sink.requests())


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    TABLE,
    ids=lambda v: str(v.status) if isinstance(v, Reply) else str(v),
)
async def test_operation_error_classification(
    name: str,
    op: Operation,
    op_sinks: dict[str, tuple[Sink, str]],
    reply: Reply,
    retryable: bool,
    retry_after: float | None,
) -> None:
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    sink.script(reply)
    async with op_notifier(name, op, base) as notifier:
        with pytest.raises(DeliveryError) as info:
            await run_op(notifier, op, op.ref)
    err = info.value
    assert (err.retryable, err.status_code, err.retry_after) == (
        retryable,
        reply.status,
        retry_after,
    )
    assert f"HTTP {reply.status}" in err.message
    assert_no_secret(err.message)


OP_EXTRA = [(name, op, reply, False) for name, op in OPS for reply in op.extra_dead] + [
    (name, op, reply, True) for name, op in OPS for reply in op.extra_retry
]


@pytest.mark.parametrize(
    ("name", "op", "reply", "retryable"),
    OP_EXTRA,
    ids=[
        f"{n}-{o.name}-{r.status}-{'retry' if t else 'dead'}-{i}"
        for i, (n, o, r, t) in enumerate(OP_EXTRA)
    ],
)
async def test_operation_service_specific_answers(
    name: str,
    op: Operation,
    op_sinks: dict[str, tuple[Sink, str]],
    reply: Reply,
    retryable: bool,
) -> None:
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    sink.script(replace(reply, body=reply.body))
    async with op_notifier(name, op, base) as notifier:
        with pytest.raises(DeliveryError) as info:
            await run_op(notifier, op, op.ref)
    assert info.value.retryable is retryable
    assert not isinstance(info.value, MessageGone)
    assert_no_secret(info.value.message)


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
async def test_operation_hang_is_cut_by_the_deadline(
    name: str, op: Operation, op_sinks: dict[str, tuple[Sink, str]]
) -> None:
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    sink.script(Reply(200, AS_SERVICE, delay=30))
    async with op_notifier(name, op, base) as notifier:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await run_op(notifier, op, op.ref)


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
async def test_operation_connection_refused_is_retryable_and_secret_free(
    name: str, op: Operation, op_sinks: dict[str, tuple[Sink, str]]
) -> None:
    _, base = op_sinks[f"{name}-{op.name}"]
    async with op_notifier(name, op, base, url=f"http://127.0.0.1:{_closed_port()}") as notifier:
        with pytest.raises(DeliveryError) as info:
            await run_op(notifier, op, op.ref)
    assert info.value.retryable is True and info.value.status_code is None
    assert_no_secret(info.value.message)


# ------------------------------------------------------------------ through the app: every registered notifier


@pytest.fixture(scope="module")
def smtp_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server certificate for 127.0.0.1 and the CA file that verifies it (SMTP over STARTTLS)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    path = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return server, str(path)


@dataclass
class Destination:
    entry: dict[str, Any]  # the integration's entry under <name>_configs
    canaries: tuple[str, ...]  # what must never show; empty: it holds no secret
    hang: Callable[[], None]  # make the destination stop answering


@asynccontextmanager
async def destination(
    name: str,
    sinks: dict[str, tuple[Sink, str]],
    smtp_tls: tuple[ssl.SSLContext, str],
    *replies: str,
) -> AsyncIterator[Destination]:
    """The named integration's destination, answering ``replies`` in turn.

    ``replies`` are "retry" (HTTP 500, SMTP 451) and "dead" (HTTP 400, SMTP
    554); every one echoes the request's secrets back (HTTP: the sink's
    ECHO, with URL, Authorization and body; SMTP: the password in the reply
    text), so only redaction keeps them out of what is stored."""
    if name in CASES:
        sink, base = sinks[name]
        sink.reset()
        sink.script(*(Reply(500 if r == "retry" else 400, ECHO) for r in replies))
        success = CASES[name].success
        yield Destination(
            CASES[name].config(base),
            CANARIES,
            lambda: sink.script(Reply(success.status, success.body, delay=30)),
        )
    elif name == "email":
        server_tls, ca_file = smtp_tls
        with smtp_server(tls_context=server_tls) as (rec, port):
            rec.data_script = [
                f"451 4.3.0 later, {SMTP_PASSWORD}"
                if r == "retry"
                else f"554 5.7.1 you sent {SMTP_PASSWORD}"
                for r in replies
            ]
            entry = {
                "to": "ops@example.com",
                "from": "alertrelay@example.com",
                "smarthost": f"127.0.0.1:{port}",
                "require_tls": True,
                "tls_ca_file": ca_file,
                "auth_username": SMTP_USER,
                "auth_password": SMTP_PASSWORD,
            }

            def hang() -> None:
                rec.data_delay = 10.0

            yield Destination(entry, SMTP_CANARIES, hang)
    elif name == "log":
        # One JSON line on stdout: nothing to fail, nothing secret to leak.
        assert dict(CONFIG_MODELS.values())["log"].secret_fields == ()

        def cannot_hang() -> None:
            raise AssertionError("the log integration cannot hang")

        yield Destination({}, (), cannot_hang)
    else:
        raise AssertionError(f"{name} is registered but has no destination here: add one")


def app_config(name: str, entry: dict[str, Any], **delivery: Any) -> str:
    settings = {
        "initial_backoff": "1s",
        "max_backoff": "1s",
        "timeout": "1s",
        "lease": "10s",
        **delivery,
    }
    # JSON is YAML: the entry goes in as it is.
    return f"""
delivery: {json.dumps(settings)}
route: {{receiver: r}}
receivers:
  - name: r
    {name}_configs: [{json.dumps(entry)}]
"""


async def fire(client: httpx.AsyncClient) -> None:
    alert = am_alert({"alertname": "Conformance", "severity": "critical", "instance": "db-1"})
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    worker: DeliveryWorker = app.state.services.delivery
    async with asyncio.timeout(30):
        await worker.drain()


@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_failed_delivery_through_the_app_stores_and_logs_no_secret(
    name: str,
    db_url: str,
    sinks: dict[str, tuple[Sink, str]],
    smtp_tls: tuple[ssl.SSLContext, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No secret in errors, for every registered notifier: a retryable failure, then a dead one."""
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with destination(name, sinks, smtp_tls, "retry", "dead") as dest:
        async with running_app(
            db_url, app_config(name, dest.entry, max_attempts=3), clock=clock
        ) as (app, client):
            await fire(client)
            await drain(app)
            clock.advance(5)  # past the 1 s backoff
            await drain(app)
            outputs = [
                (await client.get("/api/v1/notifications")).text,
                (await client.get("/metrics")).text,
            ]
            for n in (await client.get("/api/v1/notifications")).json()["notifications"]:
                outputs.append((await client.get(f"/api/v1/notifications/{n['id']}")).text)
    (row,) = table_rows(db_url, "notifications")
    attempts = table_rows(db_url, "delivery_attempts")
    if dest.canaries:
        assert (row["status"], row["attempts"]) == ("dead", 2), row
        assert [a["outcome"] for a in attempts] == ["retry", "dead"]
        errors = [str(a["error"]) for a in attempts]
        # The sink did echo the secrets: they were there to leak, and were redacted.
        assert all("<redacted>" in e for e in errors), errors
        assert row["last_error"].startswith(errors[1])
    else:
        assert row["status"] == "sent" and [a["outcome"] for a in attempts] == ["sent"]
    stored = [str(row), *(str(a) for a in attempts)]
    for text in [*stored, *outputs]:
        assert_no_secret(text, dest.canaries)
    assert log_leaks(caplog.records, dest.canaries) == []


HANGABLE = sorted(set(FACTORIES) - {"log"})


@pytest.mark.parametrize("name", HANGABLE)
async def test_timeout_through_the_app_is_retried_not_dead(
    name: str, db_url: str, sinks: dict[str, tuple[Sink, str]], smtp_tls: tuple[ssl.SSLContext, str]
) -> None:
    """A destination that never answers: the attempt ends at the 1 s deadline and the row is rescheduled."""
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with destination(name, sinks, smtp_tls) as dest:
        dest.hang()
        async with running_app(db_url, app_config(name, dest.entry), clock=clock) as (app, client):
            await fire(client)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await drain(app)
            elapsed = loop.time() - started
    (row,) = table_rows(db_url, "notifications")
    (attempt,) = table_rows(db_url, "delivery_attempts")
    assert elapsed < 5, "the deadline did not cut the hang"  # it would take 10 s or 30 s
    assert (row["status"], row["attempts"], attempt["outcome"]) == ("pending", 1, "retry"), row
    assert row["next_attempt_at"] >= clock.now()
    assert row["last_status_code"] is None and "1s" in row["last_error"], row["last_error"]
    assert_no_secret(str(row) + str(attempt), dest.canaries)


class BrokenTransport(httpx.AsyncBaseTransport):
    """An HTTP transport with a bug: it raises something no notifier expects,
    quoting the request (URL, Authorization, body) and so every secret in it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content.decode(errors="replace")[:300]
        try:
            raise ValueError(f"no route for {request.url}")
        except ValueError as inner:
            raise RuntimeError(
                f"transport bug at {request.url} auth={request.headers.get('authorization')} body={body}"
            ) from inner


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_notifier_bug_is_logged_redacted_and_retried(
    name: str, db_url: str, sinks: dict[str, tuple[Sink, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception whose text holds the secret: the log line has its
    type, a redacted message and redacted traceback frames, never exc_info."""
    clock = ManualClock(T0 + timedelta(minutes=1))
    _, base = sinks[name]
    async with running_app(db_url, app_config(name, CASES[name].config(base)), clock=clock) as (
        app,
        client,
    ):
        await fire(client)
        services = app.state.services
        async with httpx.AsyncClient(transport=BrokenTransport()) as broken:
            worker = DeliveryWorker(
                services.db,
                services.runtime,
                services.clock,
                services.metrics,
                broken,
                worker_id="broken",
                wake=asyncio.Event(),
            )
            async with asyncio.timeout(30):
                await worker.drain()
    (record,) = [r for r in caplog.records if r.getMessage() == "notifier failed"]
    assert record.exc_info is None and record.exc_text is None
    fields = record.__dict__
    assert fields["error_type"] == "RuntimeError" and fields["integration"] == name
    assert fields["error"].startswith("transport bug at ") and "<redacted>" in fields["error"]
    # The frames are there (where it broke, and the exception it came from), the secrets are not.
    trace = fields["traceback"]
    assert "handle_async_request" in trace and "ValueError: no route for" in trace
    assert "RuntimeError: transport bug at" in trace and "<redacted>" in trace
    assert log_leaks(caplog.records, CANARIES) == []
    (row,) = table_rows(db_url, "notifications")
    assert (
        row["status"] == "pending" and row["last_error"] == f"{name}: internal error RuntimeError"
    )


# ------------------------------------------------------------------ through the app: the other operations


async def _fire_then(
    client: httpx.AsyncClient, app: Starlette, op: Operation, sink: Sink, *replies: Reply
) -> None:
    """Post the alert's message (the fake answers as the service); then, for an edit or
    a reply, resolve it with ``replies`` scripted. A post gets ``replies`` at once."""
    if op.name == "post":
        sink.script(*replies)
        await fire(client)
        await drain(app)
        return
    await fire(client)
    await drain(app)
    sink.script(*replies)
    alert = am_alert(
        {"alertname": "Conformance", "severity": "critical", "instance": "db-1"}, status="resolved"
    )
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text
    await drain(app)


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
async def test_operation_failures_through_the_app_store_and_log_no_secret(
    name: str, op: Operation, db_url: str, op_sinks: dict[str, tuple[Sink, str]]
) -> None:
    """A retryable failure, then a dead one, of each operation, against a sink that
    echoes every secret: nothing stored, served or logged names one."""
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    clock = ManualClock(T0 + timedelta(minutes=1))
    config = app_config(name, op.config(base), max_attempts=3)
    async with running_app(db_url, config, clock=clock) as (app, client):
        await _fire_then(client, app, op, sink, Reply(500, ECHO), Reply(400, ECHO))
        clock.advance(5)
        await drain(app)
        outputs = [
            (await client.get("/api/v1/notifications")).text,
            (await client.get("/metrics")).text,
        ]
        for n in (await client.get("/api/v1/notifications")).json()["notifications"]:
            outputs.append((await client.get(f"/api/v1/notifications/{n['id']}")).text)
    rows = table_rows(db_url, "notifications")
    failed = rows[-1]
    assert (failed["status"], failed["attempts"]) == ("dead", 2), failed
    attempts = [
        a for a in table_rows(db_url, "delivery_attempts") if a["notification_id"] == failed["id"]
    ]
    assert [a["outcome"] for a in attempts] == ["retry", "dead"]
    assert all("<redacted>" in str(a["error"]) for a in attempts)
    refs = table_rows(db_url, "message_refs", order="message_key")
    assert len(refs) == (0 if op.name == "post" else 1)
    for text in [*(str(r) for r in rows), *(str(a) for a in attempts), str(refs), *outputs]:
        assert_no_secret(text)


@pytest.mark.parametrize(("name", "op"), OPS, ids=OP_IDS)
async def test_operation_timeout_through_the_app_is_retried_not_dead(
    name: str, op: Operation, db_url: str, op_sinks: dict[str, tuple[Sink, str]]
) -> None:
    sink, base = op_sinks[f"{name}-{op.name}"]
    sink.reset()
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with running_app(db_url, app_config(name, op.config(base)), clock=clock) as (
        app,
        client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _fire_then(client, app, op, sink, Reply(200, AS_SERVICE, delay=30))
        elapsed = loop.time() - started
    row = table_rows(db_url, "notifications")[-1]
    (attempt,) = [
        a for a in table_rows(db_url, "delivery_attempts") if a["notification_id"] == row["id"]
    ]
    assert elapsed < 6, "the deadline did not cut the hang"
    assert (row["status"], row["attempts"], attempt["outcome"]) == ("pending", 1, "retry"), row
    assert row["last_status_code"] is None and "1s" in row["last_error"], row["last_error"]
