"""From a stored notification to the message every notifier renders.

One model for all integrations: severity, status, title, text, summary,
description, labels, the runbook and generator links, duplicates seen, and
the flap state. Operators may override ``title`` and ``text`` per
integration with Jinja2 (sandboxed); alert data only ever enters a template
as variables, never as template source, so a label such as ``{{ 7*7 }}``
stays literal.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jinja2 import Template

from app.config.templating import text_env
from app.core.domain import NoticeKind, Status
from app.core.escalation import format_duration
from app.core.group_text import GroupView, group_text, group_title, view_from_payload
from app.core.payload import NoticePayload
from app.core.runbooks import is_http_url

log = logging.getLogger(__name__)

_TAGS = {
    NoticeKind.FIRING: "FIRING",
    NoticeKind.RESOLVED: "RESOLVED",
    NoticeKind.FLAPPING: "FLAPPING",
    NoticeKind.REMINDER: "STILL FIRING",
    NoticeKind.ESCALATION: "ESCALATED",
}


@dataclass(frozen=True)
class Message:
    """What one notification says, whatever the integration."""

    kind: NoticeKind
    status: Status
    title: str
    text: str
    fingerprint: str
    alertname: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str | None
    runbook_url: str | None
    generator_url: str | None
    dedup_key: str
    group_key: str
    group_firing: int | None
    duplicates: int
    flap_score: float
    flap_transitions: int
    flapping: bool
    receiver: str
    notification_id: int
    idempotency_key: str
    attempt: int
    payload: Mapping[str, object] = field(repr=False, default_factory=dict)
    # Set for ``grouping: group``: the message is about an Alertmanager group.
    group: GroupView | None = None
    # The one-click acknowledge link for this receiver (chat and email, when on).
    ack_url: str | None = None
    # Who acknowledged the occurrence and why, when it is acknowledged.
    ack_by: str | None = None
    ack_comment: str | None = None

    @property
    def firing(self) -> bool:
        return self.status is Status.FIRING

    @property
    def tag(self) -> str:
        """``FIRING``, ``RESOLVED``, ``FLAPPING``, ``STILL FIRING``, ``STABLE, FIRING``…"""
        if self.kind is NoticeKind.STABLE:
            return f"STABLE, {self.status.value.upper()}"
        # An ack or un-ack edits a kept message: it shows the alert's state,
        # and whether someone is on it.
        if self.kind is NoticeKind.ACK:
            return f"{self.status.value.upper()}, ACKNOWLEDGED"
        if self.kind is NoticeKind.UNACK:
            return self.status.value.upper()
        return _TAGS[self.kind]


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def escalation_line(m: Message) -> str:
    """``Escalated: firing for 15m, notified: page`` (empty for other notices)."""
    info = m.payload.get("escalation")
    if m.kind is not NoticeKind.ESCALATION or not isinstance(info, dict):
        return ""
    state = "flapping" if info.get("flapping") else "firing"
    told = [str(r) for r in info.get("notified") or []]
    return (
        f"Escalated: {state} for {format_duration(float(info.get('firing_for_s') or 0))}"
        f", notified: {', '.join(told) or 'nobody'}"
    )


def default_title(m: Message) -> str:
    if m.group is not None:
        return group_title(m.group)
    severity = f" ({m.severity})" if m.severity else ""
    name = m.alertname or m.fingerprint
    if m.kind is NoticeKind.FLAPPING:
        return (
            f"[FLAPPING] {name}{severity}: {m.flap_transitions} transition"
            f"{'s' if m.flap_transitions != 1 else ''}, notifications paused until it settles"
        )
    headline = f": {m.summary}" if m.summary else ""
    return f"[{m.tag}] {name}{severity}{headline}"


def ack_line(m: Message) -> str:
    """``acknowledged by alice (on it)``, or "" when the occurrence is not acknowledged."""
    if m.ack_by is None:
        return ""
    why = f" ({m.ack_comment})" if m.ack_comment else ""
    return f"acknowledged by {m.ack_by}{why}"


def default_text(m: Message) -> str:
    if m.group is not None:
        return group_text(m.group)
    lines: list[str] = []
    if m.kind is NoticeKind.ESCALATION:
        lines.append(escalation_line(m))
    if m.kind is NoticeKind.FLAPPING:
        lines.append(
            f"{m.alertname or m.fingerprint} is flapping (score {m.flap_score:.2f}); it is "
            f"{m.status.value} now. One more notice follows when it settles."
        )
    elif m.kind is NoticeKind.STABLE:
        burst = f" after {m.flap_transitions} transitions" if m.flap_transitions else ""
        lines.append(
            f"{m.alertname or m.fingerprint} stopped flapping{burst} and is {m.status.value}."
        )
    if m.ack_by is not None:
        lines.append(ack_line(m)[:1].upper() + ack_line(m)[1:] + ".")
    if m.description:
        lines.append(m.description)
    elif m.summary and m.kind is not NoticeKind.FLAPPING:
        lines.append(m.summary)
    shown = {k: v for k, v in sorted(m.labels.items()) if k != "alertname"}
    if shown:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if m.runbook_url:
        lines.append(f"Runbook: {m.runbook_url}")
    return "\n".join(lines)


def _context(m: Message) -> dict[str, Any]:
    return {
        "kind": m.kind.value,
        "status": m.status.value,
        "tag": m.tag,
        "alertname": m.alertname,
        "fingerprint": m.fingerprint,
        "severity": m.severity,
        "summary": m.summary,
        "description": m.description,
        "labels": m.labels,
        "annotations": m.annotations,
        "starts_at": m.starts_at,
        "ends_at": m.ends_at,
        "runbook_url": m.runbook_url,
        "generator_url": m.generator_url,
        "duplicates": m.duplicates,
        "flap": {"score": m.flap_score, "transitions": m.flap_transitions, "flapping": m.flapping},
        "receiver": m.receiver,
        "group": _group_context(m.group),
        "ack_url": m.ack_url,
        "ack": {"by": m.ack_by, "comment": m.ack_comment} if m.ack_by is not None else None,
        "default_title": default_title(m),
        "default_text": default_text(m),
    }


def _group_context(g: GroupView | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {
        "key": g.key,
        "labels": g.labels,
        "changes": g.changes,
        "firing": g.firing,
        "resolved": g.resolved,
        "alerts": [
            {
                "alertname": a.alertname,
                "labels": a.detail,
                "status": a.status,
                "severity": a.severity,
                "summary": a.summary,
                "runbook_url": a.runbook_url,
                "changed": a.changed,
                "ack_url": a.ack_url,
                "acked": a.acked,
            }
            for a in g.alerts
        ],
        "more": g.more,
    }


def _render(template: Template | None, m: Message, fallback: str, what: str) -> str:
    if template is None:
        return fallback
    try:
        return template.render(**_context(m)).strip() or fallback
    except Exception as exc:
        # A broken override must not lose the notification: say so, use the default.
        log.warning(
            "template failed, default used", extra={"template": what, "error": str(exc)[:200]}
        )
        return fallback


def render_field(template: Template | None, m: Message, fallback: str, what: str) -> str:
    """Render an operator template for one field of an integration's request."""
    return _render(template, m, fallback, what)


def compile_template(source: str | None) -> Template | None:
    return text_env().from_string(source) if source else None


def build_message(
    payload: NoticePayload,
    *,
    notification_id: int,
    idempotency_key: str,
    receiver: str,
    attempt: int,
    title: Template | None = None,
    text: Template | None = None,
) -> Message:
    """The message for a stored notification payload (see ``fanout.notice_payload``)."""
    annotations = _str_map(payload.get("annotations"))
    flap = payload.get("flap") or {}
    generator = str(payload.get("generator_url") or "")
    runbook = payload.get("runbook_url")
    ack_url = payload.get("ack_url")
    ack = payload.get("ack")
    base = Message(
        kind=NoticeKind(payload["kind"]),
        status=Status(payload["status"]),
        title="",
        text="",
        fingerprint=str(payload.get("fingerprint", "")),
        alertname=str(payload.get("alertname", "")),
        severity=str(payload.get("severity", "")),
        summary=annotations.get("summary", ""),
        description=annotations.get("description", ""),
        labels=_str_map(payload.get("labels")),
        annotations=annotations,
        starts_at=str(payload.get("starts_at", "")),
        ends_at=payload.get("ends_at"),
        runbook_url=runbook if isinstance(runbook, str) and is_http_url(runbook) else None,
        generator_url=generator if is_http_url(generator) else None,
        dedup_key=str(payload.get("dedup_key", "")),
        group_key=str(payload.get("group_key", "")),
        group_firing=payload.get("group_firing"),
        duplicates=int(payload.get("duplicates") or 0),
        flap_score=float(flap.get("score") or 0.0),
        flap_transitions=int(flap.get("transitions") or 0),
        flapping=bool(flap.get("flapping")),
        receiver=receiver,
        notification_id=notification_id,
        idempotency_key=idempotency_key,
        attempt=attempt,
        payload=payload,
        group=view_from_payload(payload.get("group")),
        ack_url=ack_url if isinstance(ack_url, str) and is_http_url(ack_url) else None,
        ack_by=str(ack.get("by") or "") if isinstance(ack, dict) else None,
        ack_comment=(str(ack["comment"]) if ack.get("comment") else None)
        if isinstance(ack, dict)
        else None,
    )
    with_defaults = replace(base, title=default_title(base), text=default_text(base))
    if title is None and text is None:  # most destinations: no operator template
        return with_defaults
    return replace(
        with_defaults,
        title=_render(title, with_defaults, with_defaults.title, "title"),
        text=_render(text, with_defaults, with_defaults.text, "text"),
    )


def cut(text: str, limit: int, marker: str = "…") -> str:
    """Cut on code points to at most ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(marker), 0)] + marker
