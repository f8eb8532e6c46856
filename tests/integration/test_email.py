"""email_configs against a real aiosmtpd server on 127.0.0.1.

The conformance table is HTTP-only, so email has its own: the exact message
and envelope the server receives, TLS (STARTTLS required by default, implicit
TLS, certificates verified against a trustme CA), credentials only ever over
TLS, SMTP replies mapped to retry or dead-letter, a stable Message-ID across
retries, no secret in any error, no header injection through alert data, and
escaped HTML.
"""

import asyncio
import base64
import email
import email.policy
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from app.config.globals import GlobalConfig
from app.config.model import ConfigError, parse_config
from app.core.domain import NoticeKind
from app.core.message import Message, build_message, compile_template
from app.core.ratelimit import RateLimit
from app.notifiers import CONFIG_MODELS, FACTORIES, build_notifier
from app.notifiers.base import BuildContext, DeliveryError, Notifier
from app.notifiers.email import SUBJECT_LIMIT, TEXT_LIMIT, EmailConfig, EmailNotifier
from app.notifiers.http import make_client
from app.ops.clock import ManualClock, SystemClock

USER = "relay-user"
PASSWORD = "CANARY-smtp-p4ssw0rd"
SENDER = "alertrelay@example.com"
TO = "ops@example.com, Team Lead <lead@example.org>"
RECIPIENTS = ["ops@example.com", "lead@example.org"]
KEY = "5f2b" * 16  # an idempotency key as fanout makes them (sha256 hex)
DROP = "<drop>"  # a scripted DATA reply: close the connection instead of answering
MSGID = f"<{KEY[:48]}@alertrelay>"  # the key's first 192 bits: one unfolded header line
FIXED = datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)


# ------------------------------------------------------------------ the server


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool

    def parsed(self) -> EmailMessage:
        msg = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    """aiosmtpd handler: records every DATA and answers from a script.

    ``data_script`` answers DATA in turn (then 250); ``rcpt_script`` answers
    RCPT for an address in turn (then 250); ``transcripts`` hold what each
    connection's client sent (after STARTTLS, as decrypted). No method may
    be named ``auth_*``: aiosmtpd would offer it as an AUTH mechanism.
    """

    data_script: list[str] = field(default_factory=list)
    rcpt_script: dict[str, list[str]] = field(default_factory=dict)
    data_delay: float = 0.0
    received: list[Mail] = field(default_factory=list)  # every DATA, answered or not
    accepted: list[Mail] = field(default_factory=list)  # those answered 250
    transcripts: list[list[bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commands(self) -> list[str]:
        """Every command line clients sent, in order, across connections (DATA content too)."""
        with self.lock:
            raw = [b"".join(t) for t in self.transcripts]
        return [
            line.decode("utf-8", "replace") for blob in raw for line in blob.split(b"\r\n") if line
        ]

    def auth_commands(self) -> list[str]:
        return [c for c in self.commands() if c.upper().startswith("AUTH")]

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            script = self.rcpt_script.get(address)
            reply = script.pop(0) if script else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        assert server.transport is not None
        mail = Mail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=bytes(envelope.original_content),
            tls=server.transport.get_extra_info("ssl_object") is not None,
            authenticated=bool(session.authenticated),
        )
        with self.lock:
            self.received.append(mail)
            reply = self.data_script.pop(0) if self.data_script else "250 OK"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if reply == DROP:
            # The message is in, the answer never comes.
            server.transport.close()
            await asyncio.sleep(5)  # cancelled when the connection is lost
        if reply.startswith("250"):
            with self.lock:
                self.accepted.append(mail)
        return reply


class RecordingSMTP(SMTP):
    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._transcript: list[bytes] = []
        with handler.lock:
            handler.transcripts.append(self._transcript)

    def data_received(self, data: bytes) -> None:
        self._transcript.append(data)
        super().data_received(data)


class RecordingController(Controller):
    def factory(self) -> SMTP:
        return RecordingSMTP(self.handler, **self.SMTP_kwargs)


def _authenticator(
    server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[Recorder, int]]:
    """An aiosmtpd server on 127.0.0.1; kwargs go to aiosmtpd's SMTP (or ssl_context)."""
    recorder = Recorder()
    port = _free_port()
    kwargs.setdefault("authenticator", _authenticator)
    controller = RecordingController(
        recorder, hostname="127.0.0.1", port=port, server_hostname="mx.test", **kwargs
    )
    controller.start()
    with recorder.lock:
        recorder.transcripts.clear()  # the controller's own readiness probe
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


# ------------------------------------------------------------------ the client


@pytest.fixture
async def ctx() -> AsyncIterator[BuildContext]:
    http = make_client()  # unused by email; BuildContext wants one
    try:
        yield BuildContext(global_config=GlobalConfig(), http=http, clock=ManualClock(FIXED))
    finally:
        await http.aclose()


def config(port: int, **extra: Any) -> EmailConfig:
    raw: dict[str, Any] = {
        "to": TO,
        "from": SENDER,
        "smarthost": f"127.0.0.1:{port}",
        "require_tls": False,
    }
    raw.update(extra)
    return EmailConfig.model_validate(raw)


def notifier(cfg: EmailConfig, ctx: BuildContext) -> Notifier:
    return build_notifier("email", cfg, ctx)


def message(
    *,
    kind: NoticeKind = NoticeKind.FIRING,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    key: str = KEY,
    attempt: int = 1,
    cfg: EmailConfig | None = None,
    flap: dict[str, Any] | None = None,
) -> Message:
    labels = labels or {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"}
    payload = {
        "kind": kind.value,
        "status": "resolved" if kind is NoticeKind.RESOLVED else "firing",
        "fingerprint": "0123456789abcdef",
        "alertname": labels.get("alertname", ""),
        "labels": labels,
        "annotations": annotations
        if annotations is not None
        else {"summary": "disk almost full", "description": "92% used on /var"},
        "severity": labels.get("severity", ""),
        "starts_at": "2026-11-22T10:00:00Z",
        "ends_at": None,
        "generator_url": "http://prometheus:9090/graph?g0.expr=up",
        "runbook_url": "https://runbooks.example.com/DiskFull",
        "dedup_key": "alertrelay/0123456789abcdef/20261122T100000.000000Z",
        "group_key": '{}:{alertname="DiskFull"}',
        "group_firing": 1,
        "duplicates": 2,
        "flap": flap or {"score": 1.0, "flapping": False, "transitions": 1},
    }
    return build_message(
        payload,
        notification_id=7,
        idempotency_key=key,
        receiver="mail",
        attempt=attempt,
        title=compile_template(cfg.title) if cfg else None,
        text=compile_template(cfg.text) if cfg else None,
    )


def parts(msg: EmailMessage) -> list[EmailMessage]:
    out = list(msg.iter_parts())
    assert all(isinstance(p, EmailMessage) for p in out)
    return out  # type: ignore[return-value]


def html_of(msg: EmailMessage) -> str:
    # Parsed off the wire, decoded parts keep SMTP's CRLF line ends.
    return str(parts(msg)[-1].get_content()).replace("\r\n", "\n")


def text_of(msg: EmailMessage) -> str:
    return str(parts(msg)[0].get_content()).replace("\r\n", "\n")


def assert_secret_free(text: str) -> None:
    for form in (
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    ):
        assert form not in text, f"secret leaked: {text!r}"


# ------------------------------------------------------------------ registry and contract


def test_email_is_registered_and_not_in_the_http_table() -> None:
    assert FACTORIES["email"] is not None
    assert dict(CONFIG_MODELS.values())["email"] is EmailConfig
    assert EmailConfig.model_validate({"to": "a@example.com"}).effective_send_resolved is False


async def test_contract_destination_secrets_rate_limit_prepare(ctx: BuildContext) -> None:
    cfg = config(2525, auth_username=USER, auth_password=PASSWORD, require_tls=True)
    n = notifier(cfg, ctx)
    assert isinstance(n, EmailNotifier)
    assert re.fullmatch(r"[0-9a-f]{16}", n.destination())
    assert (
        n.destination()
        != notifier(config(2525, **{"from": "other@example.com"}), ctx).destination()
    )
    assert PASSWORD in n.secrets()
    assert n.rate_limit() == RateLimit(per_second=5.0, burst=10)
    prepared = n.prepare(message())
    assert (prepared.method, prepared.url) == ("SMTP", "smtp://127.0.0.1:2525")
    assert prepared.headers["Message-ID"] == MSGID
    assert prepared.headers["Subject"] == "[FIRING] DiskFull (critical): disk almost full"
    assert prepared.body.startswith(b"From: ")
    assert PASSWORD.encode() not in prepared.body


# ------------------------------------------------------------------ the message


async def test_exact_message_envelope_and_mime_structure(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        cfg = config(
            port,
            headers={"X-Team": "storage", "Reply-To": "noc@example.com"},
            hello="relay.example.com",
        )
        n = notifier(cfg, ctx)
        m = message()
        assert await n.send(m) is None
    assert len(rec.accepted) == 1
    mail = rec.accepted[0]
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == RECIPIENTS  # one RCPT per address of the list
    assert "EHLO relay.example.com" in rec.commands()
    # Byte for byte what prepare() shows (routes test --render).
    assert mail.content.rstrip(b"\r\n") == n.prepare(m).body.rstrip(b"\r\n")
    assert mail.content.isascii()  # 7-bit: RFC 2047 headers, quoted-printable parts

    msg = mail.parsed()
    assert [k.lower() for k in msg.keys()] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "x-team",
        "reply-to",
        "mime-version",
        "content-type",
    ]
    assert msg["From"] == SENDER
    assert msg["To"] == TO
    assert msg["Subject"] == "[FIRING] DiskFull (critical): disk almost full"
    assert msg["Date"] == "Sun, 22 Nov 2026 10:00:05 +0000"
    assert msg["Message-ID"] == MSGID
    assert msg["X-Team"] == "storage"
    assert msg["Reply-To"] == "noc@example.com"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    # RFC 2046 §5.1.4: the preferred (richest) alternative goes last.
    assert [p.get_content_type() for p in (text, html)] == ["text/plain", "text/html"]
    for p in (text, html):
        assert [k.lower() for k in p.keys()] == ["content-type", "content-transfer-encoding"]
        assert p.get_content_charset() == "utf-8"
        assert p["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(msg) == m.text + "\n"
    assert "Runbook: https://runbooks.example.com/DiskFull" in text_of(msg)
    body = html_of(msg)
    assert '<a href="https://runbooks.example.com/DiskFull"' in body
    assert '<a href="http://prometheus:9090/graph?g0.expr=up"' in body
    assert "disk almost full" in body and "92% used on /var" in body
    assert ">instance</td>" in body and ">db-1</td>" in body  # the labels table
    assert "2 repeated webhooks seen" in body


async def test_utf8_subject_and_body_round_trip(ctx: BuildContext) -> None:
    labels = {"alertname": "Überlast", "severity": "warning", "site": "東京"}
    summary = "Température élevée 🔥 ✓ — Ωmega"
    with smtp_server() as (rec, port):
        m = message(labels=labels, annotations={"summary": summary, "description": "Ärger in 東京"})
        await notifier(config(port), ctx).send(m)
    mail = rec.accepted[0]
    raw_subject = re.search(rb"^Subject: (.*(?:\r\n[ \t].*)*)", mail.content, re.M)
    assert raw_subject and b"=?utf-8?" in raw_subject.group(1)  # RFC 2047 on the wire
    msg = mail.parsed()
    assert msg["Subject"] == f"[FIRING] Überlast (warning): {summary}"
    assert "Ärger in 東京" in text_of(msg)
    assert "東京" in html_of(msg) and summary in html_of(msg)


async def test_message_id_is_stable_per_notification(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        n = notifier(config(port), ctx)
        await n.send(message(attempt=1))
        await n.send(message(attempt=2))  # the same notification, retried
        await n.send(message(key="9" * 64))  # another notification
    ids = [m.parsed()["Message-ID"] for m in rec.accepted]
    assert ids == [MSGID, MSGID, f"<{'9' * 48}@alertrelay>"]


async def test_global_smtp_defaults(ca_file: str, server_tls: ssl.SSLContext) -> None:
    g = GlobalConfig.model_validate(
        {
            "smtp_smarthost": "placeholder:25",
            "smtp_from": "Alert Relay <relay@example.net>",
            "smtp_hello": "mx-client.example.net",
            "smtp_auth_username": USER,
            "smtp_auth_password": PASSWORD,
        }
    )
    with smtp_server(tls_context=server_tls) as (rec, port):
        g = g.model_copy(update={"smtp_smarthost": f"127.0.0.1:{port}"})
        http = make_client()
        try:
            ctx = BuildContext(global_config=g, http=http, clock=SystemClock())
            n = build_notifier(
                "email",
                EmailConfig.model_validate({"to": "ops@example.com", "tls_ca_file": ca_file}),
                ctx,
            )
            await n.send(message())
        finally:
            await http.aclose()
    mail = rec.accepted[0]
    # smtp_require_tls defaults to true: STARTTLS ran, then AUTH, over TLS.
    assert mail.tls and mail.authenticated
    assert mail.mail_from == "relay@example.net"
    assert mail.parsed()["From"] == "Alert Relay <relay@example.net>"
    assert "EHLO mx-client.example.net" in rec.commands()


async def test_flapping_and_stable_notices_look_distinct(ctx: BuildContext) -> None:
    n = notifier(config(2525), ctx)
    flap = {"score": 4.5, "flapping": True, "transitions": 6}
    parsed = {}
    for kind in (NoticeKind.FLAPPING, NoticeKind.STABLE, NoticeKind.FIRING):
        body = n.prepare(message(kind=kind, flap=flap)).body
        parsed[kind] = email.message_from_bytes(body, policy=email.policy.default)
    assert parsed[NoticeKind.FLAPPING]["Subject"].startswith(
        "[FLAPPING] DiskFull (critical): 6 transitions"
    )
    assert parsed[NoticeKind.STABLE]["Subject"].startswith("[STABLE, FIRING] DiskFull")
    flapping_html = html_of(parsed[NoticeKind.FLAPPING])  # type: ignore[arg-type]
    stable_html = html_of(parsed[NoticeKind.STABLE])  # type: ignore[arg-type]
    assert (
        "<strong>Flapping:</strong>" in flapping_html and "changed state 6 times" in flapping_html
    )
    assert "<strong>Stopped flapping:</strong>" in stable_html and "Flapping:" not in stable_html
    assert "Flapping:" not in html_of(parsed[NoticeKind.FIRING])  # type: ignore[arg-type]


async def test_size_limits_cut_with_a_marker(ctx: BuildContext) -> None:
    n = notifier(config(2525), ctx)
    huge = "x" * (TEXT_LIMIT * 3)
    m = message(annotations={"summary": "🔥" * 2000, "description": huge})
    msg = email.message_from_bytes(n.prepare(m).body, policy=email.policy.default)
    assert len(msg["Subject"]) == SUBJECT_LIMIT and msg["Subject"].endswith("…")
    text = text_of(msg)  # type: ignore[arg-type]
    assert len(text.rstrip("\n")) == TEXT_LIMIT and text.rstrip("\n").endswith("…")
    html = html_of(msg)  # type: ignore[arg-type]
    assert "…" in html and len(html) < 400_000


# ------------------------------------------------------------------ overrides and injection


async def test_title_text_and_html_overrides(ctx: BuildContext) -> None:
    cfg_raw = {
        "title": "{{ status|upper }} on {{ labels.instance }}",
        "text": "Custom text for {{ alertname }}",
        "html": "<p>{{ title }}</p><p>{{ labels.instance }} {{ summary }}</p>",
    }
    with smtp_server() as (rec, port):
        cfg = config(port, **cfg_raw)
        await notifier(cfg, ctx).send(
            message(cfg=cfg, labels={"alertname": "A", "instance": "<b>db-1</b>"})
        )
    msg = rec.accepted[0].parsed()
    assert msg["Subject"] == "FIRING on <b>db-1</b>"
    # The runbook line is added where an override left it out.
    assert text_of(msg) == "Custom text for A\n\nRunbook: https://runbooks.example.com/DiskFull\n"
    assert (
        html_of(msg).strip()
        == "<p>FIRING on &lt;b&gt;db-1&lt;/b&gt;</p><p>&lt;b&gt;db-1&lt;/b&gt; disk almost full</p>"
    )


async def test_a_failing_html_override_falls_back_to_the_default(ctx: BuildContext) -> None:
    n = notifier(config(2525, html="{{ 1 // 0 }}"), ctx)
    msg = email.message_from_bytes(n.prepare(message()).body, policy=email.policy.default)
    assert "Sent by alertrelay to receiver mail" in html_of(msg)  # type: ignore[arg-type]


def test_config_errors_are_caught_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="html: template error"):
        EmailConfig.model_validate({"to": "a@example.com", "html": "{% if %}"})
    with pytest.raises(ValueError, match="Message-ID is set by alertrelay"):
        EmailConfig.model_validate({"to": "a@example.com", "headers": {"Message-ID": "<x@y>"}})
    with pytest.raises(ValueError, match="tls_ca_file: cannot load"):
        EmailConfig.model_validate(
            {"to": "a@example.com", "tls_ca_file": str(tmp_path / "missing.pem")}
        )
    with pytest.raises(ValueError, match="to: 'nobody' is not an email address"):
        EmailConfig.model_validate({"to": "ops@example.com, nobody"})
    with pytest.raises(ValueError, match="hello: must be a host name"):
        EmailConfig.model_validate(
            {"to": "a@example.com", "hello": "relay.example.com\r\nRCPT TO:<x@example.invalid>"}
        )
    with pytest.raises(ValueError, match="from: .* must be exactly one email address"):
        EmailConfig.model_validate({"to": "a@example.com", "from": "a@example.com, b@example.com"})
    text = """
global: {smtp_smarthost: "mail.example.com:25", smtp_from: a@example.com}
route: {receiver: r}
receivers:
  - name: r
    email_configs:
      - {to: b@example.com, require_tls: false, auth_username: u, auth_password: p}
      - {to: b@example.com, require_tls: false, auth_username: u, auth_password: p, smarthost: "mail.example.com:465"}
      - {to: b@example.com, auth_username: u, auth_password: p}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yml", {})
    assert info.value.errors == [
        "receivers[0].email_configs[0].require_tls: credentials are never sent without TLS; "
        "keep require_tls true or use implicit TLS (port 465)"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "content-transfer-encoding",
        "Content-Disposition",
        "CONTENT-ID",
        "Content-Language",
        "MIME-Version",
        "mime-version",
        "Message-Id",
        "date",
        "BCC",
    ],
)
def test_headers_that_describe_the_mime_structure_are_refused(name: str) -> None:
    """Every ``Content-*`` and ``MIME-Version``, any case: alertrelay builds the parts itself."""
    text = f"""
global: {{smtp_smarthost: "mail.example.com:587", smtp_from: a@example.com}}
route: {{receiver: r}}
receivers:
  - name: r
    email_configs:
      - {{to: b@example.com, headers: {{X-Team: ops, {name}: "x"}}}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yml", {})
    assert info.value.errors == [
        f"receivers[0].email_configs[0].headers.{name}: {name} is set by alertrelay and cannot be configured"
    ]


async def test_headers_that_only_look_reserved_are_sent(ctx: BuildContext) -> None:
    headers = {"X-Content-Type-Options": "nosniff", "Contented": "yes", "X-MIME-Version": "2"}
    prepared = notifier(config(2525, headers=headers), ctx).prepare(message())
    assert {k: prepared.headers[k] for k in headers} == headers
    # The structure is still alertrelay's own, once each.
    msg = email.message_from_bytes(prepared.body, policy=email.policy.default)
    assert msg.get_all("MIME-Version") == ["1.0"]
    assert msg.get_content_type() == "multipart/alternative"


async def test_header_injection_through_labels_and_headers(ctx: BuildContext) -> None:
    """CR/LF in a label (used in the Subject) or a configured header adds no header."""
    evil = "DiskFull\r\nBcc: x@example.invalid"
    labels = {"alertname": evil, "severity": "critical\nBcc: y@example.invalid", "team": "a\rb"}
    annotations = {
        "summary": "s\r\n\r\nInjected body\r\nBcc: z@example.invalid",
        "description": "d",
    }
    with smtp_server() as (rec, port):
        cfg = config(
            port,
            headers={"X-Team": "ops\r\nBcc: h@example.invalid", "Subject": "{{ labels.team }}"},
            title="{{ labels.alertname }}\n{{ labels.team }}",
        )
        await notifier(cfg, ctx).send(message(labels=labels, annotations=annotations, cfg=cfg))
        # Without the configured Subject, the label-built title is the subject.
        cfg2 = config(port)
        await notifier(cfg2, ctx).send(message(labels=labels, annotations=annotations, cfg=cfg2))
    assert len(rec.accepted) == 2
    for mail in rec.accepted:
        assert mail.rcpt_tos == RECIPIENTS
        header_block = mail.content.split(b"\r\n\r\n", 1)[0]
        header_lines = header_block.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n")
        assert not [line for line in header_lines if line.lower().startswith(b"bcc")]
        assert len(header_lines) == len(mail.parsed().keys())  # one line per header, none smuggled
        msg = mail.parsed()
        assert msg["Bcc"] is None
        assert "Bcc" not in [k for k, _ in msg.items()]
        assert msg.defects == []
    first, second = (m.parsed() for m in rec.accepted)
    assert first["X-Team"] == "ops  Bcc: h@example.invalid"
    assert first["Subject"] == "{{ labels.team }}"  # configured headers are plain strings
    assert (
        second["Subject"]
        == "[FIRING] DiskFull  Bcc: x@example.invalid (critical Bcc: y@example.invalid): s    Injected body  Bcc: z@example.invalid"
    )
    # Nothing a recipient could be added through.
    assert not any(c.upper().startswith("RCPT TO:<X") for c in rec.commands())


async def test_html_is_autoescaped(ctx: BuildContext) -> None:
    """Label and annotation values are text in the HTML part."""
    labels = {
        "alertname": "<script>alert(1)</script>",
        "severity": "critical",
        "x": '"><img src=x onerror=alert(2)>',
    }
    annotations = {
        "summary": "<b>bold</b> & {{ 7*7 }}",
        "description": "<a href='javascript:alert(3)'>click</a>",
    }
    n = notifier(config(2525), ctx)
    html = html_of(
        email.message_from_bytes(
            n.prepare(message(labels=labels, annotations=annotations)).body,
            policy=email.policy.default,
        )
    )  # type: ignore[arg-type]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; {{ 7*7 }}" in html
    assert "javascript:" not in html.replace("&lt;a href=&#39;javascript:alert(3)&#39;&gt;", "")


# ------------------------------------------------------------------ TLS and credentials


async def test_starttls_with_a_private_ca_and_auth_after_tls(
    ctx: BuildContext, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    with smtp_server(tls_context=server_tls) as (rec, port):
        cfg = config(
            port, require_tls=True, tls_ca_file=ca_file, auth_username=USER, auth_password=PASSWORD
        )
        await notifier(cfg, ctx).send(message())
    mail = rec.accepted[0]
    assert mail.tls and mail.authenticated
    commands = [c.split(" ")[0].upper() for c in rec.commands()]
    assert commands.index("STARTTLS") < commands.index("AUTH") < commands.index("MAIL")
    assert len(rec.auth_commands()) == 1


async def test_starttls_is_required_by_default(ctx: BuildContext, ca_file: str) -> None:
    """A server that does not offer STARTTLS gets no message and no credentials."""
    with smtp_server(auth_require_tls=False) as (
        rec,
        port,
    ):  # offers AUTH in the clear, no STARTTLS
        raw = {
            "to": TO,
            "from": SENDER,
            "smarthost": f"127.0.0.1:{port}",
            "auth_username": USER,
            "auth_password": PASSWORD,
            "tls_ca_file": ca_file,
        }
        n = notifier(EmailConfig.model_validate(raw), ctx)
        with pytest.raises(DeliveryError) as info:
            await n.send(message())
        assert "250-AUTH" not in "".join(rec.commands())  # sanity: we read client lines only
    assert info.value.retryable
    assert "does not offer STARTTLS" in info.value.message
    assert rec.received == []
    assert rec.auth_commands() == []
    assert not any(c.upper().startswith("MAIL") for c in rec.commands())
    assert_secret_free(info.value.message)


async def test_no_credentials_over_plaintext_even_when_tls_is_not_required(
    ctx: BuildContext,
) -> None:
    with smtp_server(auth_require_tls=False) as (rec, port):
        n = notifier(config(port, auth_username=USER, auth_password=PASSWORD), ctx)
        with pytest.raises(DeliveryError) as info:
            await n.send(message())
    assert not info.value.retryable  # a setting, not a passing problem
    assert "plaintext" in info.value.message
    assert rec.auth_commands() == [] and rec.received == []
    assert_secret_free(info.value.message)


async def test_plain_smtp_only_when_tls_is_not_required(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        await notifier(config(port), ctx).send(message())
    assert len(rec.accepted) == 1 and not rec.accepted[0].tls
    assert not any(c.upper().startswith("STARTTLS") for c in rec.commands())


async def test_implicit_tls_with_auth(
    ctx: BuildContext, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    # aiosmtpd only knows STARTTLS as "TLS" for AUTH, so it must be told AUTH is fine here.
    with smtp_server(ssl_context=server_tls, auth_require_tls=False) as (rec, port):
        cfg = config(
            port,
            force_implicit_tls=True,
            require_tls=True,
            tls_ca_file=ca_file,
            auth_username=USER,
            auth_password=PASSWORD,
        )
        await notifier(cfg, ctx).send(message())
    mail = rec.accepted[0]
    assert mail.tls and mail.authenticated
    assert not any(c.upper().startswith("STARTTLS") for c in rec.commands())


async def test_implicit_tls_is_the_default_on_port_465(ctx: BuildContext) -> None:
    n = notifier(config(465, require_tls=True), ctx)
    assert isinstance(n, EmailNotifier)
    assert (n._implicit_tls, n._starttls) == (True, False)
    n = notifier(config(465, force_implicit_tls=False, require_tls=True), ctx)
    assert isinstance(n, EmailNotifier)
    assert (n._implicit_tls, n._starttls) == (False, True)


async def test_certificates_are_verified(ctx: BuildContext, server_tls: ssl.SSLContext) -> None:
    """Without the private CA the server's certificate is not trusted: nothing sent, no AUTH."""
    with smtp_server(tls_context=server_tls) as (rec, port):
        n = notifier(
            config(port, require_tls=True, auth_username=USER, auth_password=PASSWORD), ctx
        )
        with pytest.raises(DeliveryError) as info:
            await n.send(message())
    assert info.value.retryable
    assert "TLS failed" in info.value.message and "certificate" in info.value.message
    assert rec.received == [] and rec.auth_commands() == []


async def test_wrong_password_is_dead_and_secret_free(
    ctx: BuildContext, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    with smtp_server(tls_context=server_tls) as (rec, port):
        cfg = config(
            port,
            require_tls=True,
            tls_ca_file=ca_file,
            auth_username=USER,
            auth_password=PASSWORD + "-wrong",
        )
        with pytest.raises(DeliveryError) as info:
            await notifier(cfg, ctx).send(message())
    assert not info.value.retryable and info.value.status_code == 535
    assert info.value.message.startswith("email: AUTH 535")
    assert PASSWORD not in info.value.message
    assert rec.received == []


async def test_a_server_echoing_the_credentials_is_redacted(
    ctx: BuildContext, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with smtp_server(tls_context=server_tls) as (rec, port):
        rec.data_script = [
            f"554 5.7.1 rejected: you sent {PASSWORD} as {plain}",
            f"451 4.3.0 later, {PASSWORD}",
        ]
        n = notifier(
            config(
                port,
                require_tls=True,
                tls_ca_file=ca_file,
                auth_username=USER,
                auth_password=PASSWORD,
            ),
            ctx,
        )
        errors = []
        for _ in range(2):
            with pytest.raises(DeliveryError) as info:
                await n.send(message())
            errors.append(info.value)
    assert [e.status_code for e in errors] == [554, 451]
    assert [e.retryable for e in errors] == [False, True]
    for e in errors:
        assert_secret_free(e.message)
        assert "<redacted>" in e.message


# ------------------------------------------------------------------ SMTP replies


async def deliver(
    n: Notifier, m: Message, max_attempts: int = 5
) -> tuple[int, list[DeliveryError]]:
    """What the delivery loop does: retry while retryable, give up when dead."""
    errors: list[DeliveryError] = []
    for attempt in range(1, max_attempts + 1):
        try:
            async with asyncio.timeout(10):
                await n.send(m)
            return attempt, errors
        except DeliveryError as exc:
            errors.append(exc)
            if not exc.retryable:
                return attempt, errors
    return max_attempts, errors


async def test_451_twice_then_250(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        rec.data_script = ["451 4.3.0 try again later", "451 4.3.0 try again later"]
        attempts, errors = await deliver(notifier(config(port), ctx), message())
    assert attempts == 3
    assert [(e.retryable, e.status_code) for e in errors] == [(True, 451), (True, 451)]
    assert errors[0].message == "email: DATA 451 4.3.0 try again later"
    assert len(rec.received) == 3 and len(rec.accepted) == 1
    assert len({m.parsed()["Message-ID"] for m in rec.received}) == 1


@pytest.mark.parametrize(
    ("where", "reply", "retryable", "code"),
    [
        ("data", "550 5.7.1 message refused", False, 550),
        ("data", "552 5.3.4 message too big", False, 552),
        ("data", "554 5.6.0 bad content", False, 554),
        ("data", "421 4.7.0 closing", True, 421),
        ("data", "452 4.3.1 insufficient storage", True, 452),
        ("rcpt", "550 5.1.1 no such user", False, 550),
        ("rcpt", "450 4.2.1 mailbox busy", True, 450),
    ],
)
async def test_reply_codes_map_to_retry_or_dead(
    ctx: BuildContext, where: str, reply: str, retryable: bool, code: int
) -> None:
    with smtp_server() as (rec, port):
        if where == "data":
            rec.data_script = [reply]
        else:
            rec.rcpt_script = {address: [reply] for address in RECIPIENTS}
        attempts, errors = await deliver(notifier(config(port), ctx), message(), max_attempts=2)
    assert (errors[0].retryable, errors[0].status_code) == (retryable, code)
    assert reply.split(" ", 1)[1] in errors[0].message
    # Dead: one attempt only. Retryable: the second attempt got through.
    assert attempts == (2 if retryable else 1)
    assert len(rec.accepted) == (1 if retryable else 0)


async def test_one_refused_recipient_is_noted_not_retried(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        rec.rcpt_script = {"lead@example.org": ["550 5.1.1 no such user"]}
        note = await notifier(config(port), ctx).send(message())
    assert note == "refused by the server for lead@example.org (550)"
    assert [m.rcpt_tos for m in rec.accepted] == [["ops@example.com"]]


async def test_dropped_after_data_is_resent_with_the_same_message_id(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        rec.data_script = [DROP]
        attempts, errors = await deliver(notifier(config(port), ctx), message())
    assert attempts == 2 and errors[0].retryable
    assert len(rec.received) == 2 and len(rec.accepted) == 1
    first, second = (m.parsed()["Message-ID"] for m in rec.received)
    assert first == second == MSGID


async def test_slow_server_hits_the_per_operation_timeout(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        rec.data_delay = 3.0
        n = notifier(config(port, delivery={"timeout": "1s"}), ctx)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(DeliveryError) as info:
            await n.send(message())
        elapsed = loop.time() - start
    assert info.value.retryable and "timed out after 1s" in info.value.message
    assert 0.9 < elapsed < 2.5


async def test_the_callers_deadline_bounds_the_whole_exchange(ctx: BuildContext) -> None:
    with smtp_server() as (rec, port):
        rec.data_delay = 3.0
        n = notifier(config(port), ctx)  # per-operation timeout 10 s: the deadline wins
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await n.send(message())
        assert loop.time() - start < 1.5


async def test_connection_refused_is_retryable(ctx: BuildContext) -> None:
    n = notifier(
        config(_free_port(), auth_username=USER, auth_password=PASSWORD, require_tls=True), ctx
    )
    with pytest.raises(DeliveryError) as info:
        await n.send(message())
    assert info.value.retryable and info.value.status_code is None
    assert info.value.message.startswith("email: SMTPConnectError")
    assert_secret_free(info.value.message)
