"""``routes test --render``: the exact requests an alert would cause, sent nowhere.

For several alerts (``--alert`` repeated, or ``--payload`` with an
Alertmanager webhook) the alerts are one Alertmanager group firing at once:
integrations with ``grouping: group`` show the one grouped message
(:mod:`app.core.grouping`), the others one request per alert.

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
from app.core.escalation import EscalationInfo, escalation_key
from app.core.fanout import notice_payload, would_send
from app.core.fingerprint import fingerprint
from app.core.grouping import Change, advance, firing_count, group_rows
from app.core.lifecycle import escalation_steps
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
    key = incident_key(fp, now)
    escalation = None
    if notice_kind is NoticeKind.ESCALATION:
        # The alert's first step, to its receiver: what that receiver is sent.
        steps = escalation_steps(runtime.route(labels))
        receiver = steps[0].receiver if steps else "(no escalation step)"
        after = steps[0].after_s if steps else 900.0
        told = runtime.route(labels).receivers
        escalation = EscalationInfo(0, receiver, after, after, told, False)
        key = escalation_key(key, receiver)
    notice = Notice(
        notice_kind,
        status,
        now,
        key,
        "preview",
        4.2 if flapping else 1.0,
        5 if flapping else 0,
        escalation=escalation,
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
    """Every routed integration's request for an alert with these labels (for
    an escalation: the integrations of its first step's receiver)."""
    payload = _payload(runtime, labels, annotations, kind)
    out: list[RenderedRequest] = []
    receivers = runtime.route(labels).receivers
    escalated = payload.get("escalation")
    if escalated is not None:
        receivers = (escalated.get("receiver", ""),)
    for receiver in receivers:
        for integration in runtime.receivers.get(receiver, ()):
            reason = would_send(NoticeKind(kind), integration)
            if reason is not None:
                out.append(RenderedRequest(integration.key, skipped=reason))
                continue
            out.append(render_integration(runtime, integration, payload, http))
    return out


@dataclass(frozen=True)
class PreviewAlert:
    """One alert of a previewed group."""

    labels: dict[str, str]
    annotations: dict[str, str]
    status: Status = Status.FIRING


_PREVIEW_GROUP = "{}:{preview}"  # the group key when none is given


def render_group(
    runtime: CompiledConfig,
    alerts: list[PreviewAlert],
    http: httpx.AsyncClient,
    *,
    group_key: str = "",
    group_labels: dict[str, str] | None = None,
    kind: str | None = None,
) -> list[RenderedRequest]:
    """The requests for ``alerts`` arriving together as one Alertmanager group.

    ``kind`` overrides every alert's notice (else each alert's status says
    firing or resolved).
    """
    now = SystemClock().now()
    key = group_key or _PREVIEW_GROUP
    changes: list[Change] = []
    for alert in alerts:
        notice_kind = NoticeKind(kind) if kind else NoticeKind(alert.status.value)
        status = Status.RESOLVED if notice_kind is NoticeKind.RESOLVED else Status.FIRING
        fp = fingerprint(alert.labels)
        runbook = runtime.runbook(alert.labels, alert.annotations)
        rec = AlertRecord(
            fingerprint=fp,
            labels=alert.labels,
            annotations=alert.annotations,
            status=status,
            starts_at=now,
            ends_at=now if status is Status.RESOLVED else None,
            generator_url="",
            source="alertmanager",
            group_key=key,
            first_seen=now,
            last_seen=now,
            last_changed=now,
            runbook_url=runbook.url,
            runbook_source=runbook.source,
        )
        flapping = notice_kind in (NoticeKind.FLAPPING, NoticeKind.STABLE)
        notice = Notice(
            notice_kind,
            status,
            now,
            incident_key(fp, now),
            f"preview|{notice_kind}",
            4.2 if flapping else 1.0,
            5 if flapping else 0,
        )
        changes.append(Change(rec, notice, runtime.route(alert.labels)))
    members = {c.record.fingerprint: c.record for c in changes}
    state, opened = advance(None, key, group_labels or {}, firing_count(members), now)
    grouped = {
        row.receiver + "/" + row.integration + "/" + str(row.integration_index): row
        for row in group_rows(changes, state, members, runtime, now, opened=opened)
    }
    out: list[RenderedRequest] = []
    done: set[str] = set()
    for change in changes:
        for receiver in change.routed.receivers:
            for integration in runtime.receivers.get(receiver, ()):
                if integration.grouped:
                    if integration.key in done:
                        continue
                    done.add(integration.key)
                    row = grouped.get(integration.key)
                    if row is None:
                        why = would_send(change.notice.kind, integration) or "nothing to send"
                        out.append(RenderedRequest(integration.key, skipped=why))
                    else:
                        out.append(render_integration(runtime, integration, row.payload, http))
                    continue
                reason = would_send(change.notice.kind, integration)
                if reason is not None:
                    out.append(RenderedRequest(integration.key, skipped=reason))
                    continue
                payload = notice_payload(change.record, change.notice, now)
                out.append(render_integration(runtime, integration, payload, http))
    return out


def render_group_requests(
    runtime: CompiledConfig,
    alerts: list[PreviewAlert],
    *,
    group_key: str = "",
    group_labels: dict[str, str] | None = None,
    kind: str | None = None,
) -> str:
    """:func:`render_group` as text."""
    http = httpx.AsyncClient()  # never used: prepare() does not send
    try:
        found = render_group(
            runtime, alerts, http, group_key=group_key, group_labels=group_labels, kind=kind
        )
        return _as_text(found, kind or "grouped")
    finally:
        asyncio.run(http.aclose())


def render_requests(
    runtime: CompiledConfig,
    labels: dict[str, str],
    annotations: dict[str, str],
    *,
    kind: str = "firing",
) -> str:
    """Each routed integration's request, secrets redacted, as text."""
    http = httpx.AsyncClient()  # never used: prepare() does not send
    try:
        return _as_text(render_routed(runtime, labels, annotations, http, kind=kind), kind)
    finally:
        asyncio.run(http.aclose())


def _as_text(requests: list[RenderedRequest], kind: str) -> str:
    out: list[str] = []
    for r in requests:
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
    return "\n".join(out)
