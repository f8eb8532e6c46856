"""``routes test --render``: the exact requests an alert would cause, sent nowhere.

Each request is built by the delivery attempt's own steps
(:func:`app.delivery.attempt.prepare` and :meth:`~app.delivery.attempt.Prepared.message`),
then redacted instead of sent.
"""

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.config.compiled import CompiledConfig, Integration
from app.core.domain import AlertRecord, NoticeKind, Status
from app.core.fanout import notice_payload, would_send
from app.core.fingerprint import fingerprint
from app.core.message import Message
from app.core.notices import Notice, incident_key
from app.core.payload import NoticePayload
from app.delivery.attempt import prepare
from app.notifiers.base import BuildContext, Notifier, Prepared, Referencing, redact
from app.ops.clock import SystemClock


def _payload(
    runtime: CompiledConfig, labels: dict[str, str], annotations: dict[str, str], kind: str
) -> NoticePayload:
    now = SystemClock().now()
    fp = fingerprint(labels)
    notice_kind = NoticeKind(kind)
    status = Status.RESOLVED if notice_kind is NoticeKind.RESOLVED else Status.FIRING
    runbook = runtime.runbook(labels, annotations)
    rec = AlertRecord(
        fingerprint=fp,
        labels=labels,
        annotations=annotations,
        status=status,
        starts_at=now,
        ends_at=now if status is Status.RESOLVED else None,
        generator_url="",
        source="alertmanager",
        group_key="",
        first_seen=now,
        last_seen=now,
        last_changed=now,
        runbook_url=runbook.url,
        runbook_source=runbook.source,
    )
    if notice_kind is NoticeKind.ACK:
        # What an ack sends: PagerDuty's acknowledge, the edit of a kept message.
        rec = replace(rec, ack_at=now, ack_by="someone", ack_via="api", ack_comment="on it")
    flapping = notice_kind in (NoticeKind.FLAPPING, NoticeKind.STABLE)
    notice = Notice(
        notice_kind,
        status,
        now,
        incident_key(fp, now),
        "preview",
        4.2 if flapping else 1.0,
        5 if flapping else 0,
    )
    return notice_payload(rec, notice, now)


def _is_url(secret: str) -> bool:
    return secret.startswith(("http://", "https://"))


def shown_url(url: str, secrets: list[str]) -> str:
    """``url`` with its secret parts redacted, keeping the rest readable.

    A webhook URL is a secret as a whole, and its notifier also names the
    part that is the credential (Slack's key, Discord's token, Teams' ``sig``),
    so only that part is hidden. A secret URL with no such part named (a
    ``webhook_configs`` URL may hide a credential anywhere) shows only its
    scheme, host and port.
    """
    shown = redact(url, [s for s in secrets if not _is_url(s)])
    parts = urlsplit(url)
    secret_url = any(_is_url(s) and s in url for s in secrets)
    # Credentials in the authority (user:password@) are never shown either.
    if secret_url and (shown == url or "@" in parts.netloc):
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/<redacted>"
    return shown


@dataclass(frozen=True)
class RenderedRequest:
    """One integration's request as it would go out, every secret redacted."""

    key: str  # receiver/integration/index
    method: str = ""
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    error: str | None = None  # why no request could be built
    skipped: str | None = None  # why this integration would not send this notice


def render_integration(
    runtime: CompiledConfig,
    integration: Integration,
    payload: NoticePayload,
    http: httpx.AsyncClient,
    *,
    notification_id: int = 0,
    idempotency_key: str = "preview",
    attempt: int = 1,
    message: dict[str, Any] | None = None,
) -> RenderedRequest:
    """The request ``integration`` would send for ``payload``; ``http`` is never used to send.

    ``message`` is what a delivery did with the chat message (a
    notification's ``message``): an edit or a thread reply is rendered as
    that request, with the reference it used.
    """
    ctx = BuildContext(runtime.config.global_, http, SystemClock())
    try:
        prepared = prepare(integration, ctx)
    except LookupError as exc:
        return RenderedRequest(integration.key, error=str(exc))
    # The same preparation and message a delivery attempt makes.
    built = prepared.message(
        payload,
        notification_id=notification_id,
        idempotency_key=idempotency_key,
        receiver=integration.receiver,
        attempt=attempt,
    )
    secrets = prepared.secrets
    notifier = prepared.notifier
    request = _by_reference(notifier, built, message) or notifier.prepare(built)
    # A mail's body is the whole message, headers included: show them once.
    headers = () if request.method == "SMTP" else tuple(request.headers.items())
    text = request.body.decode("utf-8", errors="replace")
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return RenderedRequest(
        integration.key,
        request.method,
        shown_url(request.url, secrets),
        tuple((name, redact(value, secrets)) for name, value in headers),
        redact(text, secrets).rstrip("\n"),
    )


def _by_reference(
    notifier: Notifier, built: Message, message: dict[str, Any] | None
) -> Prepared | None:
    """The edit or the reply a delivery sent, when it sent one."""
    if message is None or not isinstance(notifier, Referencing):
        return None
    if notifier.message_mode() is None:
        return None
    ref = message.get("ref")
    if message.get("action") == "edited" and isinstance(ref, dict):
        return notifier.prepare_edit(built, ref)
    thread = message.get("thread")
    if message.get("action") == "replied" and isinstance(thread, dict):
        return notifier.prepare_post(built, thread)
    return None


def render_routed(
    runtime: CompiledConfig,
    labels: dict[str, str],
    annotations: dict[str, str],
    http: httpx.AsyncClient,
    *,
    kind: str = "firing",
) -> list[RenderedRequest]:
    """Every routed integration's request for an alert with these labels."""
    payload = _payload(runtime, labels, annotations, kind)
    out: list[RenderedRequest] = []
    for receiver in runtime.route(labels).receivers:
        for integration in runtime.receivers.get(receiver, ()):
            reason = would_send(NoticeKind(kind), integration)
            if reason is not None:
                out.append(RenderedRequest(integration.key, skipped=reason))
                continue
            out.append(render_integration(runtime, integration, payload, http))
    return out


def render_requests(
    runtime: CompiledConfig,
    labels: dict[str, str],
    annotations: dict[str, str],
    *,
    kind: str = "firing",
) -> str:
    """Each routed integration's request, secrets redacted, as text."""
    out: list[str] = []
    http = httpx.AsyncClient()  # never used: prepare() does not send
    try:
        for r in render_routed(runtime, labels, annotations, http, kind=kind):
            if r.skipped is not None:
                out.append(f"--- {r.key}: would not send a {kind} notice ({r.skipped})")
                continue
            if r.error is not None:
                out.append(f"--- {r.key}: {r.error}")
                continue
            out.append(f"--- {r.key}: {r.method} {r.url}")
            out.extend(f"{name}: {value}" for name, value in r.headers)
            out.append("")
            out.append(r.body)
    finally:
        asyncio.run(http.aclose())
    return "\n".join(out)
