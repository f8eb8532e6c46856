"""Google Chat incoming webhooks with one thread per alert.

The message carries a short ``text`` (the title in bold and a runbook link,
in Chat's own formatting) and a ``cardsV2`` card: the title as header, then
the flap state, summary, description (or the operator's ``text:``),
duplicates, the labels, and buttons to the runbook and the source.

Threading (``threading: true``, the default): every notice of one alert
carries the same ``thread.threadKey`` (derived from its fingerprint) and the
URL asks for ``REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD``, so firing, resolved
and flapping notices of an alert land in one thread, the first one opening it.

Alert data is data: ``<``, ``>`` and ``&`` become HTML entities wherever Chat
interprets markup (the text's ``<users/all>`` and ``<url|label>``, the card's
HTML subset). The card header is plain text and stays as it is.
"""

import json
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import SecretStr, model_validator

from app.config.fields import secret_url_from
from app.core.domain import NoticeKind
from app.core.group_text import group_text
from app.core.message import Message, cut, escalation_line
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id
from app.notifiers.fit import largest_fit, longest_fit

MESSAGE_LIMIT = 32_000  # bytes, the whole message including cards (spaces.messages.create)
GROUP_TEXT_LIMIT = (
    12_000  # characters of a grouped message's list (the message's limit is in bytes)
)
THREAD_KEY_LIMIT = 4000  # characters
REPLY_OPTION = "messageReplyOption"
REPLY_OR_NEW_THREAD = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
CONTENT_TYPE = "application/json; charset=UTF-8"
ERROR_DETAIL_LIMIT = 500

_TITLE_FLOOR = 64
_LABEL_FLOOR = 16
_RED, _GREEN, _AMBER = "#D93025", "#188038", "#E37400"


class GoogleChatConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: SecretStr
    threading: bool = True

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "url")


def chat_escape(text: str) -> str:
    """Neutralise Chat markup in data: no mention, link or HTML tag can come through."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _card_text(text: str) -> str:
    """Escaped text for a card's HTML subset, keeping its line breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return chat_escape(text).replace("\n", "<br>")


def _link_url(url: str) -> str:
    # Inside <url|label> a "|" or ">" would end the URL early; percent-encode them.
    return url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def thread_key(m: Message) -> str:
    """One thread per alert: its fingerprint (the label set's identity)."""
    return cut(f"alertrelay-{m.fingerprint or m.dedup_key}", THREAD_KEY_LIMIT, marker="")


def threaded_url(url: str) -> str:
    """``url`` with ``messageReplyOption`` appended to its query (the key and token stay as is)."""
    parts = urlsplit(url)
    if any(k == REPLY_OPTION for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return url  # the operator chose one
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}{REPLY_OPTION}={REPLY_OR_NEW_THREAD}"))


@dataclass(frozen=True)
class _Parts:
    """The strings of a message that may be shortened to fit the limit."""

    title: str
    summary: str
    body: str  # the description, or the operator's text: override
    labels: tuple[tuple[str, str], ...]
    hidden: int  # labels left out to fit
    links: tuple[tuple[str, str], ...]  # (button text, URL)


def _flap_widget(m: Message) -> dict[str, Any] | None:
    status = m.status.value
    if m.kind is NoticeKind.FLAPPING:
        head, color = "⚠ FLAPPING", _AMBER
        rest = (
            f"{m.flap_transitions} transition{'s' if m.flap_transitions != 1 else ''} "
            f"(score {m.flap_score:.2f}). Notifications for this alert are paused until it "
            f"settles; it is {status} now."
        )
    elif m.kind is NoticeKind.STABLE:
        head, color = "STOPPED FLAPPING", _RED if m.firing else _GREEN
        rest = f"it is {status} now (score {m.flap_score:.2f})."
    elif m.flapping:
        head, color = "FLAPPING", _AMBER
        rest = f"score {m.flap_score:.2f}."
    else:
        return None
    return {"textParagraph": {"text": f'<font color="{color}"><b>{head}</b></font>: {rest}'}}


def _subtitle(m: Message) -> str:
    return f"{m.tag} · {m.severity}" if m.severity else m.tag


def body(m: Message, p: _Parts, *, threading: bool) -> dict[str, Any]:
    """The JSON message: ``text``, one card, and the thread when threading."""
    text = f"*{chat_escape(_one_line(p.title))}*"
    for label, url in p.links[:1]:  # the runbook (or else the source) in the text too
        text += f"\n<{_link_url(url)}|{label}>"

    widgets: list[dict[str, Any]] = []
    flap = _flap_widget(m)
    if flap is not None:
        widgets.append(flap)
    escalated = escalation_line(m)
    if escalated:
        widgets.append({"textParagraph": {"text": f"<b>{chat_escape(escalated)}</b>"}})
    if p.summary:
        widgets.append(
            {
                "decoratedText": {
                    "topLabel": "Summary",
                    "text": _card_text(p.summary),
                    "wrapText": True,
                }
            }
        )
    if p.body:
        widgets.append({"textParagraph": {"text": _card_text(p.body)}})
    if m.duplicates:
        widgets.append(
            {
                "decoratedText": {
                    "topLabel": "Duplicates",
                    "text": f"received {m.duplicates} more time"
                    f"{'s' if m.duplicates != 1 else ''} (not re-sent)",
                    "wrapText": True,
                }
            }
        )
    sections: list[dict[str, Any]] = []
    if widgets:
        sections.append({"widgets": widgets})
    if p.labels or p.hidden:
        lines = [
            f"<b>{chat_escape(_one_line(k))}</b>: {chat_escape(_one_line(v))}" for k, v in p.labels
        ]
        if p.hidden:
            lines.append(
                f"<i>{p.hidden} more label{'s' if p.hidden != 1 else ''} not shown "
                "(Google Chat message size limit)</i>"
            )
        sections.append(
            {"header": "Labels", "widgets": [{"textParagraph": {"text": "<br>".join(lines)}}]}
        )
    if p.links:
        buttons = [{"text": label, "onClick": {"openLink": {"url": url}}} for label, url in p.links]
        sections.append({"widgets": [{"buttonList": {"buttons": buttons}}]})

    message: dict[str, Any] = {
        "text": text,
        "cardsV2": [
            {
                "cardId": "alert",
                "card": {
                    # The header is plain text in Chat: shown as it is, no markup applies.
                    "header": {"title": _one_line(p.title), "subtitle": _subtitle(m)},
                    "sections": sections,
                },
            }
        ],
    }
    if threading:
        message["thread"] = {"threadKey": thread_key(m)}
    return message


def _keep_labels(p: _Parts, n: int) -> _Parts:
    return replace(p, labels=p.labels[:n], hidden=p.hidden + len(p.labels) - n)


def _cap_labels(p: _Parts, n: int) -> _Parts:
    return replace(p, labels=tuple((cut(k, n), cut(v, n)) for k, v in p.labels))


class GoogleChatNotifier:
    def __init__(self, config: GoogleChatConfig, ctx: BuildContext) -> None:
        self._url = config.url.get_secret_value()
        self._threading = config.threading
        self._send_url = threaded_url(self._url) if self._threading else self._url
        parts = urlsplit(self._url)
        # The key and token are the credential; the whole URL stays secret too.
        creds = [v for k, v in parse_qsl(parts.query) if k in ("key", "token") and v]
        self._secrets = list(dict.fromkeys([self._url, self._send_url, *creds]))
        # Chat limits writes per space, whatever webhook writes: one bucket per space.
        self._space = urlunsplit(parts._replace(query="", fragment=""))
        self._text_override = bool(config.text)  # as compile_template: "" is no override
        self._http = ctx.http
        self._clock = ctx.clock

    def destination(self) -> str:
        return destination_id("googlechat", self._space)

    def secrets(self) -> list[str]:
        return self._secrets

    def rate_limit(self) -> RateLimit:
        # 60 writes per 60 s per space: a burst of 5 plus 55/60 per second keeps
        # any 60 s window at 60 or fewer.
        return RateLimit(per_second=55 / 60, burst=5)

    def parts(self, m: Message) -> _Parts:
        if m.group is not None and not self._text_override:
            # A group: its list of alerts is the body, as many as fit.
            summary, text = "", group_text(m.group, limit=GROUP_TEXT_LIMIT)
        elif self._text_override:
            summary, text = "", m.text  # the operator's text replaces both
        else:
            summary = m.summary
            text = m.description if m.description != m.summary else ""
        links = []
        if m.runbook_url:
            links.append(("Runbook", m.runbook_url))
        if m.generator_url:
            links.append(("Source", m.generator_url))
        if m.ack_url:
            links.append(("Acknowledge", m.ack_url))
        return _Parts(m.title, summary, text, tuple(sorted(m.labels.items())), 0, tuple(links))

    def encode(self, m: Message) -> bytes:
        """The request body, cut (with "…") to Google Chat's 32,000 bytes.

        In order: the description (or text), label values, the number of
        labels shown, the summary, the title, and last the links.
        """
        p = self.parts(m)

        def dump(q: _Parts) -> bytes:
            return json.dumps(
                body(m, q, threading=self._threading), ensure_ascii=False, separators=(",", ":")
            ).encode()

        def ok(q: _Parts) -> bool:
            return len(dump(q)) <= MESSAGE_LIMIT

        if ok(p):
            return dump(p)
        p = replace(p, body=longest_fit(p.body, 1, lambda s: ok(replace(p, body=s))))
        if not ok(p) and p.labels:
            longest = max(max(len(k), len(v)) for k, v in p.labels)
            p = _cap_labels(p, largest_fit(longest, _LABEL_FLOOR, lambda n: ok(_cap_labels(p, n))))
        if not ok(p) and p.labels:
            p = _keep_labels(p, largest_fit(len(p.labels), 0, lambda n: ok(_keep_labels(p, n))))
        if not ok(p):
            p = replace(p, summary=longest_fit(p.summary, 1, lambda s: ok(replace(p, summary=s))))
        if not ok(p):
            p = replace(
                p, title=longest_fit(p.title, _TITLE_FLOOR, lambda s: ok(replace(p, title=s)))
            )
        if not ok(p):
            p = replace(p, links=())
        # What is left is bounded (a 64-character title, markers, fixed text), so it fits.
        return dump(p)

    def prepare(self, message: Message) -> Prepared:
        return Prepared(
            "POST", self._send_url, {"Content-Type": CONTENT_TYPE}, self.encode(message)
        )

    async def send(self, message: Message) -> str | None:
        request = self.prepare(message)
        reply = await http.post(
            self._http,
            request.url,
            what="googlechat",
            content=request.body,
            headers=request.headers,
        )
        http.raise_for_status(
            reply,
            self._clock.now(),
            what="googlechat",
            secrets=self._secrets,
            detail=error_detail(reply),
        )
        return None


def error_detail(reply: http.Reply) -> str | None:
    """``STATUS: message`` from Google's ``{"error": {"code", "message", "status"}}``."""
    if 200 <= reply.status < 300:
        return None
    data = reply.json()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None  # not Google's JSON: raise_for_status quotes the start of the body
    status, message = str(error.get("status") or ""), str(error.get("message") or "")
    detail = ": ".join(part for part in (status, message) if part)
    return cut(_one_line(detail), ERROR_DETAIL_LIMIT) or None


def build(config: GoogleChatConfig, ctx: BuildContext) -> GoogleChatNotifier:
    return GoogleChatNotifier(config, ctx)
