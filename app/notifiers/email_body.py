"""The parts of a mail built from a message: the HTML body's template and
variables, and the Message-ID every attempt of one notification shares."""

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Template

from app.config.templating import html_env
from app.core.domain import NoticeKind
from app.core.group_text import change_mark, changes_text, console_link
from app.core.message import Message, cut

FIELD_LIMIT = 64_000  # characters of summary/description in the HTML part
LABEL_LIMIT = 1_000  # characters of one label value in the HTML part
MSGID_KEY_LIMIT = 48  # characters of the idempotency key in the Message-ID
_TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "email.html"
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_COLOURS = {
    NoticeKind.FIRING: "#b00020",
    NoticeKind.REMINDER: "#c4471d",
    NoticeKind.RESOLVED: "#2e7d32",
    NoticeKind.FLAPPING: "#c77700",
}


@lru_cache(maxsize=1)
def default_html() -> Template:
    """The default HTML body (``app/templates/email.html``), compiled once."""
    return html_env().from_string(_TEMPLATE.read_text(encoding="utf-8"))


def html_context(m: Message) -> dict[str, Any]:
    """The variables of the HTML template (the default and an ``html:`` override)."""
    return {
        "title": m.title,
        "text": m.text,
        "kind": m.kind.value,
        "status": m.status.value,
        "tag": m.tag,
        # A stable notice carries the current state: its colour says which.
        "colour": _COLOURS.get(
            m.kind, _COLOURS[NoticeKind.FIRING if m.firing else NoticeKind.RESOLVED]
        ),
        "alertname": m.alertname,
        "fingerprint": m.fingerprint,
        "severity": m.severity,
        "summary": cut(m.summary, FIELD_LIMIT),
        "description": cut(m.description, FIELD_LIMIT),
        "labels": {k: cut(v, LABEL_LIMIT) for k, v in m.labels.items()},
        "annotations": {k: cut(v, FIELD_LIMIT) for k, v in m.annotations.items()},
        "starts_at": m.starts_at,
        "ends_at": m.ends_at,
        "runbook_url": m.runbook_url,
        "generator_url": m.generator_url,
        "ack_url": m.ack_url,
        "duplicates": m.duplicates,
        "flap": {"score": m.flap_score, "transitions": m.flap_transitions, "flapping": m.flapping},
        "receiver": m.receiver,
        "group": _group(m),
    }


def _group(m: Message) -> dict[str, Any] | None:
    g = m.group
    if g is None:
        return None
    return {
        "labels": g.labels,
        "changes": changes_text(g.changes),
        "firing": g.firing,
        "resolved": g.resolved,
        "alerts": [
            {
                "name": a.alertname or a.fingerprint,
                "detail": cut(a.detail, LABEL_LIMIT),
                "status": a.status,
                "severity": a.severity,
                "summary": cut(a.summary, LABEL_LIMIT),
                "runbook_url": a.runbook_url,
                "changed": change_mark(a.changed) if a.changed else "",
                "ack_url": a.ack_url,
                "acked": cut(a.acked, LABEL_LIMIT),
            }
            for a in g.alerts
        ],
        "more": g.more,
        "console_url": console_link(g),
    }


def message_id(m: Message) -> str:
    """The same ``Message-ID`` for every attempt of one notification.

    The idempotency key (sha256 hex) cut to 48 characters, 192 bits: the
    header then fits one 78-character line, and some parsers mishandle a
    folded Message-ID. The mail that opens a group's occurrence takes the
    occurrence's own id instead (:func:`thread_root`), so later mails can
    answer it.
    """
    if m.group is not None and m.group.opened:
        return _occurrence_id(m.group.message_key)
    return f"<{message_key(m)}@alertrelay>"


def thread_root(m: Message) -> str | None:
    """The Message-ID a grouped mail answers (In-Reply-To, References): the
    first mail of its group occurrence. None for that first mail and for
    per-alert mails."""
    if m.group is None or m.group.opened or not m.group.message_key:
        return None
    return _occurrence_id(m.group.message_key)


def _occurrence_id(key: str) -> str:
    # Stable per group occurrence and destination, the same on every replica.
    return f"<g.{hashlib.sha256(key.encode()).hexdigest()[:40]}@alertrelay>"


def message_key(m: Message) -> str:
    return _MSGID_UNSAFE.sub("", m.idempotency_key)[:MSGID_KEY_LIMIT] or str(m.notification_id)
