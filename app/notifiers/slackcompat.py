"""The Slack webhook dialect that Slack and Mattermost share.

Both take a JSON body with ``text`` and Slack-style ``attachments`` and answer
``200 ok``; both turn ``<!channel>``-style tokens and ``<url|text>`` into
mentions and links. This module holds what their notifiers have in common:
the colour of a notice, making alert data inert (one line for labels, no
mentions), rendering the title and text from escaped fields, cutting escaped
text without breaking an escape, and reading the answer.
"""

import math
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

from app.core.domain import NoticeKind, Status
from app.core.group_text import Link, group_text, group_title, plain_link
from app.core.message import Message, cut, default_text, default_title
from app.notifiers import http
from app.notifiers.base import DeliveryError, redact

MARKER = "…"  # app.core.message.cut's marker

RED = "#D92D20"  # critical, page, error
ORANGE = "#F79009"  # warning
BLUE = "#2E90FA"  # info
GREY = "#98A2B3"  # any other severity, or none
GREEN = "#12B76A"  # resolved
PURPLE = "#7A5AF8"  # flapping: not a state, so none of the state colours

ZWJ = "\u200d"
# "@" that starts a word: @here, @channel, @all, @someone. One in the middle
# of a word (an e-mail address) is no mention and stays as it is.
_MENTION = re.compile(r"(?<!\w)@(?=\w)")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PARTIAL_ENTITY = re.compile(r"&[#0-9A-Za-z]{0,8}\Z")
# A failure reported inside a 2xx that is worth another attempt.
_TRANSIENT = (
    "rate_limited",
    "rollup_error",
    "internal_error",
    "fatal_error",
    "timeout",
    "timed out",
    "temporar",
    "unavailable",
    "try again",
)


def url_secrets(url: str) -> list[str]:
    """A webhook URL and the key that ends its path (Slack's ``…/B…/<key>``, ``/hooks/<key>``).

    The URL is the credential; the key is listed too so that a sink echoing
    just the key, or a log that names it, is redacted as well.
    """
    key = urlsplit(url).path.rstrip("/").rpartition("/")[2]
    return [url, key] if len(key) >= 6 else [url]


def colour(m: Message) -> str:
    """The colour bar of a notice: flapping, resolved, then by severity."""
    if m.kind is NoticeKind.FLAPPING:
        return PURPLE
    if m.status is Status.RESOLVED:
        return GREEN
    severity = m.severity.strip().lower()
    if severity in ("critical", "page", "error"):
        return RED
    if severity == "warning":
        return ORANGE
    if severity == "info":
        return BLUE
    return GREY


def neutralise_mentions(text: str) -> str:
    """Put a zero-width joiner after every word-initial ``@``: no ``@here`` pings anyone."""
    return _MENTION.sub("@" + ZWJ, text)


def one_line(text: str) -> str:
    """Control characters and line breaks to spaces: a label value cannot start a line."""
    return _LINE_BREAKS.sub(" ", text).strip()


def clean_block(text: str) -> str:
    """Multi-line text with line breaks kept and other control characters dropped."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


Escape = Callable[[str], str]


def title_and_text(
    m: Message, data: Escape, whole: Escape, link: Link = plain_link, limit: int | None = None
) -> tuple[str, str]:
    """The title and text in the sink's markup.

    A grouped message's default text lists the group's alerts with their
    runbooks as ``link`` renders them, as many as fit in ``limit`` characters.

    The default title and text are rebuilt from the alert's fields, each one
    passed through ``data`` (labels, summary and names on one line), without
    the runbook line: the notifier shows the runbook as a button or link of
    its own. An operator's ``title:``/``text:`` override, already rendered
    into ``m``, is the operator's markup: it goes through ``whole``, which
    keeps formatting but must still stop links and mentions.
    """

    def line(value: str) -> str:
        return data(one_line(value))

    if m.group is not None:
        title = group_title(m.group, line) if m.title == default_title(m) else None
        text = group_text(m.group, line, link, limit) if m.text == default_text(m) else None
        return (
            title if title is not None else whole(one_line(m.title)),
            text if text is not None else whole(clean_block(m.text)),
        )
    safe = replace(
        m,
        alertname=line(m.alertname),
        fingerprint=line(m.fingerprint),
        severity=line(m.severity),
        summary=line(m.summary),
        description=data(clean_block(m.description).strip()),
        labels={line(k): line(v) for k, v in m.labels.items()},
        annotations={line(k): line(v) for k, v in m.annotations.items()},
        runbook_url=None,
    )
    title = default_title(safe) if m.title == default_title(m) else whole(one_line(m.title))
    text = default_text(safe) if m.text == default_text(m) else whole(clean_block(m.text))
    return title, text


def cut_markup(text: str, limit: int) -> str:
    """``app.core.message.cut`` for escaped text: never leave half an entity or a lone backslash."""
    out = cut(text, limit)
    if out == text:
        return text
    head = _PARTIAL_ENTITY.sub("", out[: -len(MARKER)])
    if (len(head) - len(head.rstrip("\\"))) % 2:
        head = head[:-1]  # it would escape the marker instead of its own character
    return head + MARKER


def flap_note(m: Message) -> str | None:
    """One line on the flap state, when there is one to tell."""
    if m.kind is NoticeKind.FLAPPING:
        plural = "s" if m.flap_transitions != 1 else ""
        return (
            f":repeat: Flapping: {m.flap_transitions} transition{plural}, "
            f"score {m.flap_score:.2f}; notifications paused until it settles"
        )
    if m.kind is NoticeKind.STABLE:
        return f":white_check_mark: Stopped flapping (score {m.flap_score:.2f})"
    if m.flapping:
        return f":repeat: Flapping (score {m.flap_score:.2f})"
    return None


def body_retry_after(reply: http.Reply) -> float | None:
    """Slack's ``{"retry_after": 1, ...}`` in a 429's body, when no header said it."""
    data = reply.json()
    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def check_reply(
    reply: http.Reply,
    now: datetime,
    *,
    what: str,
    secrets: list[str],
    detail: str | None = None,
) -> None:
    """Success is ``200`` with the body ``ok``; everything else raises DeliveryError.

    Statuses map as in :func:`app.notifiers.http.raise_for_status`, with a
    429's ``retry_after`` also read from a JSON body. A 2xx whose body is not
    ``ok`` did not post (Alertmanager reads it so too): dead, unless the body
    names a transient failure such as ``rate_limited``.
    """
    try:
        http.raise_for_status(reply, now, what=what, secrets=secrets, detail=detail)
    except DeliveryError as err:
        if err.retryable and err.retry_after is None:
            err.retry_after = body_retry_after(reply)
        raise
    if reply.status == 200 and reply.body.strip() == b"ok":
        return
    said = redact(detail if detail is not None else reply.text(), secrets)
    transient = any(marker in said.lower() for marker in _TRANSIENT)
    raise DeliveryError(
        f'{what}: HTTP {reply.status} without "ok": {said or "(empty answer)"}',
        retryable=transient,
        status_code=reply.status,
        retry_after=body_retry_after(reply) if transient else None,
    )
