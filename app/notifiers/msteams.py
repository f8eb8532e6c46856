"""Microsoft Teams via a Workflows webhook and an Adaptive Card.

The request is the envelope Teams documents for Adaptive Cards over an
incoming webhook (the same one Alertmanager's ``msteamsv2`` sends): a
``message`` whose one attachment is an Adaptive Card 1.2. The card shows the
title as a coloured heading, the summary and description (or the operator's
``text:``), the flap state and duplicates when relevant, the labels as a
FactSet, and buttons to the runbook and the alert's source.

Alert data is data: TextBlocks and facts render a Markdown subset, so every
string from an alert is Markdown-escaped (a label cannot add a link, bold
text or a list). Workflows answer 202 when the flow run is queued; legacy
connectors answered 200 with ``1``, and reported throttling as a 200 whose
body says the delivery failed. Such a body is a failure.
"""

import json
import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr, model_validator

from app.config.fields import secret_url_from
from app.core.domain import NoticeKind
from app.core.group_text import group_text
from app.core.message import Message, cut, escalation_line
from app.core.ratelimit import RateLimit
from app.core.retry import parse_retry_after
from app.notifiers import http
from app.notifiers.base import (
    BuildContext,
    DeliveryError,
    IntegrationConfig,
    Prepared,
    destination_id,
    redact,
)
from app.notifiers.fit import largest_fit, longest_fit

# Teams rejects messages over "28 KB". Read as 28,000 bytes (not 28,672) so the
# whole request is under the limit whichever way the KB is meant.
REQUEST_LIMIT = 28_000
GROUP_TEXT_LIMIT = (
    12_000  # characters of a grouped message's list (the request's limit is in bytes)
)
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"

# A 2xx whose body says the post failed: legacy connectors answered 200 with
# "Webhook message delivery failed with error: Microsoft Teams endpoint
# returned HTTP error 429 with ContextId …" when throttled.
_FAILURE_BODY = re.compile(r"delivery failed|returned HTTP error|\berror\b", re.IGNORECASE)
_EMBEDDED_STATUS = re.compile(r"HTTP error (\d{3})\b", re.IGNORECASE)
_LEGACY_SUCCESS = "1"

# Markdown that Teams' TextBlocks and facts would act on. Everything else is
# left alone so ordinary text (db-1, v1.2) reads the same on every client.
_MD_INLINE = re.compile(r"([\\`*_\[\]()#~<>|])")
_MD_BULLET = re.compile(r"^([ \t]*)([-+])", re.MULTILINE)
_MD_NUMBERED = re.compile(r"^([ \t]*\d+)\.", re.MULTILINE)

# Floors of the parts cut to fit (code points): below these a part says nothing.
_TITLE_FLOOR = 64
_FACT_FLOOR = 16


class MSTeamsConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "webhook_url")


def md_escape(text: str) -> str:
    """Backslash-escape the Markdown Adaptive Card TextBlocks render."""
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_BULLET.sub(r"\1\\\2", text)
    return _MD_NUMBERED.sub(r"\1\\.", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    # A TextBlock needs a blank line for a line break ("\n" alone is a space).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n\n".join(md_escape(line) for line in lines if line.strip())


@dataclass(frozen=True)
class _Parts:
    """The strings of a card that may be shortened to fit the limit."""

    title: str
    summary: str
    body: str  # the description, or the operator's text: override
    facts: tuple[tuple[str, str], ...]
    hidden: int  # labels left out to fit
    links: tuple[tuple[str, str], ...]  # (button title, URL)


def heading_color(m: Message) -> str:
    """``Warning`` for a flapping notice, else ``Attention`` firing, ``Good`` resolved."""
    if m.kind is NoticeKind.FLAPPING:
        return "Warning"
    return "Attention" if m.firing else "Good"


def _flap_block(m: Message) -> dict[str, Any] | None:
    """The flap state, in a coloured container so it cannot pass for a plain alert."""
    status = m.status.value
    if m.kind is NoticeKind.FLAPPING:
        text = (
            f"⚠ Flapping: {m.flap_transitions} transition"
            f"{'s' if m.flap_transitions != 1 else ''} (score {m.flap_score:.2f}). "
            f"Notifications for this alert are paused until it settles; it is {status} now."
        )
        style, color = "warning", "Warning"
    elif m.kind is NoticeKind.STABLE:
        text = f"Stopped flapping (score {m.flap_score:.2f}); it is {status} now."
        style, color = "emphasis", heading_color(m)
    elif m.flapping:
        text = f"Flapping (score {m.flap_score:.2f})."
        style, color = "warning", "Warning"
    else:
        return None
    return {
        "type": "Container",
        "style": style,
        "items": [
            {"type": "TextBlock", "text": text, "wrap": True, "weight": "Bolder", "color": color}
        ],
    }


def _card(m: Message, p: _Parts) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": md_escape(_one_line(p.title)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "style": "heading",
            "color": heading_color(m),
        }
    ]
    flap = _flap_block(m)
    if flap is not None:
        body.append(flap)
    escalated = escalation_line(m)
    if escalated:
        # Who was told before and for how long: why this receiver hears of it.
        body.append(
            {"type": "TextBlock", "text": md_escape(escalated), "wrap": True, "weight": "Bolder"}
        )
    if p.summary:
        body.append({"type": "TextBlock", "text": _paragraphs(p.summary), "wrap": True})
    if p.body:
        body.append({"type": "TextBlock", "text": _paragraphs(p.body), "wrap": True})
    if m.duplicates:
        body.append(
            {
                "type": "TextBlock",
                "text": f"Received {m.duplicates} more time"
                f"{'s' if m.duplicates != 1 else ''} as a duplicate (not re-sent).",
                "wrap": True,
                "isSubtle": True,
                "size": "Small",
            }
        )
    if p.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": md_escape(_one_line(k)), "value": md_escape(_one_line(v))}
                    for k, v in p.facts
                ],
            }
        )
    if p.hidden:
        body.append(
            {
                "type": "TextBlock",
                "text": f"{p.hidden} more label{'s' if p.hidden != 1 else ''} not shown "
                "(Teams message size limit).",
                "wrap": True,
                "isSubtle": True,
                "size": "Small",
            }
        )
    return {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.2",
        "msteams": {"width": "full"},
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": t, "url": u} for t, u in p.links],
    }


def envelope(m: Message, p: _Parts) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": _card(m, p)}
        ],
    }


def _dump(m: Message, p: _Parts) -> bytes:
    return json.dumps(envelope(m, p), ensure_ascii=False, separators=(",", ":")).encode()


def _cap_facts(p: _Parts, n: int) -> _Parts:
    return replace(p, facts=tuple((cut(k, n), cut(v, n)) for k, v in p.facts))


def _keep_facts(p: _Parts, n: int) -> _Parts:
    return replace(p, facts=p.facts[:n], hidden=p.hidden + len(p.facts) - n)


def fit(m: Message, p: _Parts, limit: int = REQUEST_LIMIT) -> bytes:
    """The request body, its parts cut (with "…") until it is at most ``limit`` bytes.

    In order: the description (or text), the label values, the number of
    labels shown, the summary, the title, and last the link buttons.
    """
    data = _dump(m, p)
    if len(data) <= limit:
        return data

    def ok(q: _Parts) -> bool:
        return len(_dump(m, q)) <= limit

    p = replace(p, body=longest_fit(p.body, 1, lambda s: ok(replace(p, body=s))))
    if not ok(p) and p.facts:
        longest = max(max(len(k), len(v)) for k, v in p.facts)
        p = _cap_facts(p, largest_fit(longest, _FACT_FLOOR, lambda n: ok(_cap_facts(p, n))))
    if not ok(p) and p.facts:
        p = _keep_facts(p, largest_fit(len(p.facts), 0, lambda n: ok(_keep_facts(p, n))))
    if not ok(p):
        p = replace(p, summary=longest_fit(p.summary, 1, lambda s: ok(replace(p, summary=s))))
    if not ok(p):
        p = replace(p, title=longest_fit(p.title, _TITLE_FLOOR, lambda s: ok(replace(p, title=s))))
    if not ok(p):
        p = replace(p, links=())
    # What is left is bounded (a 64-character title, markers, fixed text), so it fits.
    return _dump(m, p)


class MSTeamsNotifier:
    def __init__(self, config: MSTeamsConfig, ctx: BuildContext) -> None:
        self._url = config.webhook_url.get_secret_value()
        # Workflows URLs carry the credential in "sig"; the whole URL stays secret.
        sig = [v for k, v in parse_qsl(urlsplit(self._url).query) if k == "sig" and v]
        self._secrets = [self._url, *sig]
        self._text_override = bool(config.text)  # as compile_template: "" is no override
        self._http = ctx.http
        self._clock = ctx.clock

    def destination(self) -> str:
        return destination_id("msteams", self._url)

    def secrets(self) -> list[str]:
        return self._secrets

    def rate_limit(self) -> RateLimit:
        # Teams throttles more than 4 requests per second per webhook.
        return RateLimit(per_second=4.0, burst=4)

    def parts(self, m: Message) -> _Parts:
        if m.group is not None and not self._text_override:
            # A group: its list of alerts is the body, as many as fit.
            summary, body = "", group_text(m.group, limit=GROUP_TEXT_LIMIT)
        elif self._text_override:
            # The operator's text replaces the summary and description.
            summary, body = "", m.text
        else:
            summary = m.summary
            body = m.description if m.description != m.summary else ""
        links = []
        if m.runbook_url:
            links.append(("Runbook", m.runbook_url))
        if m.generator_url:
            links.append(("Source", m.generator_url))
        if m.ack_url:
            links.append(("Acknowledge", m.ack_url))
        return _Parts(
            title=m.title,
            summary=summary,
            body=body,
            facts=tuple(sorted(m.labels.items())),
            hidden=0,
            links=tuple(links),
        )

    def prepare(self, message: Message) -> Prepared:
        body = fit(message, self.parts(message))
        return Prepared("POST", self._url, {"Content-Type": "application/json"}, body)

    async def send(self, message: Message) -> str | None:
        request = self.prepare(message)
        reply = await http.post(
            self._http, request.url, what="msteams", content=request.body, headers=request.headers
        )
        http.raise_for_status(reply, self._clock.now(), what="msteams", secrets=self._secrets)
        self._check_body(reply)
        return None

    def _check_body(self, reply: http.Reply) -> None:
        """A 2xx whose body reports a failed delivery is a failure."""
        text = reply.text()
        if not text or text == _LEGACY_SUCCESS or not _FAILURE_BODY.search(text):
            return
        match = _EMBEDDED_STATUS.search(text)
        embedded = int(match.group(1)) if match else None
        retryable = embedded is not None and (embedded == 429 or embedded >= 500)
        retry_after = (
            parse_retry_after(reply.headers.get("retry-after"), self._clock.now())
            if retryable
            else None
        )
        raise DeliveryError(
            f"msteams: HTTP {reply.status} but the body reports a failure: "
            f"{redact(text, self._secrets)}",
            retryable=retryable,
            status_code=reply.status,
            retry_after=retry_after,
        )


def build(config: MSTeamsConfig, ctx: BuildContext) -> MSTeamsNotifier:
    return MSTeamsNotifier(config, ctx)
