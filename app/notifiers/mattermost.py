"""Mattermost incoming webhooks.

One post per notice. Its ``text`` is Mattermost Markdown: the title in bold,
the body, then links to the runbook and the source; one Slack-style
``attachments`` entry carries the colour bar (severity; resolved green;
flapping purple) and short fields (status, severity, times, duplicates,
flap state).

Alert data is only data. Mattermost turns ``<!channel>``, ``<!here>`` and
``<!all>`` into mentions and ``<url|text>`` into links before it renders
Markdown, and it renders HTML entities. So in alert data ``&``, ``<`` and
``>`` become entities (no token or link survives), Markdown punctuation is
backslash-escaped (``*bold*`` shows as typed), and a word-initial ``@`` gets
a zero-width joiner (no ``@here``, no ``@someone``). An operator's
``title:``/``text:`` override keeps its Markdown; only the entities and the
mention rule apply to it.
"""

import json
import re
from typing import Any, ClassVar

from pydantic import SecretStr, field_validator, model_validator

from app.config.fields import check_http_url, secret_url_from
from app.core.domain import Status
from app.core.message import Message, cut
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id
from app.notifiers.slackcompat import (
    ZWJ,
    check_reply,
    colour,
    cut_markup,
    flap_note,
    neutralise_mentions,
    one_line,
    title_and_text,
    url_secrets,
)

POST_LIMIT = 16383  # characters of a post (Mattermost ≥ 5.0; Alertmanager cuts there too)
TITLE_LIMIT = 1024
URL_LIMIT = 2000  # longer runbook or source links are left out rather than crowd the post
SHORT_LIMIT = 100  # a field's value

_MARKDOWN = re.compile(r"([\\`*_~\[\]|#])")
# "<" before what Slack syntax uses after it (<!channel>, <@U1>, <#C1>).
_SLACK_TOKEN = re.compile(r"<(?=[!@#])")


class MattermostConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: SecretStr
    channel: str | None = None
    username: str | None = None
    icon_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "webhook_url")

    @field_validator("icon_url")
    @classmethod
    def _icon(cls, value: str | None) -> str | None:
        return value if value is None else check_http_url(value, "icon_url")


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """Alert data for Markdown: entities, escaped punctuation, no mentions."""
    return neutralise_mentions(_MARKDOWN.sub(r"\\\1", _entities(text)))


def inert(text: str) -> str:
    """An operator's rendered override: its Markdown stays, links and mentions do not."""
    return neutralise_mentions(_entities(text))


def plain(text: str) -> str:
    """Plain text (the attachment's fallback, never rendered): no mentions, no tokens."""
    return _SLACK_TOKEN.sub("<" + ZWJ, neutralise_mentions(text))


def link_url(url: str) -> str:
    """A URL inside ``[text](url)``: what would end the destination early, percent-encoded."""
    for raw, encoded in (("(", "%28"), (")", "%29"), ("<", "%3C"), (">", "%3E"), (" ", "%20")):
        url = url.replace(raw, encoded)
    return url


def _short(value: str) -> str:
    return cut_markup(escape(one_line(value)), SHORT_LIMIT)


def fields(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"short": True, "title": "Status", "value": m.tag}]
    if m.severity:
        out.append({"short": True, "title": "Severity", "value": _short(m.severity)})
    if m.starts_at:
        out.append({"short": True, "title": "Started", "value": _short(m.starts_at)})
    if m.ends_at and m.status is Status.RESOLVED:
        out.append({"short": True, "title": "Ended", "value": _short(m.ends_at)})
    if m.duplicates:
        out.append({"short": True, "title": "Duplicates", "value": str(m.duplicates)})
    note = flap_note(m)
    if note:
        out.append({"short": False, "title": "Flapping", "value": note})
    return out


def mattermost_body(m: Message, config: MattermostConfig) -> dict[str, Any]:
    """The JSON body for one notice (see the module docstring)."""
    title, text = title_and_text(m, escape, inert)
    header = f"**{cut_markup(title, TITLE_LIMIT)}**"
    links = [
        f"[{name}]({link_url(url)})"
        for name, url in (
            ("Runbook", m.runbook_url),
            ("Source", m.generator_url),
            ("Acknowledge", m.ack_url),
        )
        if url and len(url) <= URL_LIMIT
    ]
    footer = " · ".join(links)
    # The body gives way: the title and the links always fit.
    budget = POST_LIMIT - len(header) - len(footer) - 2
    parts = [header, cut_markup(text, budget), footer]
    out: dict[str, Any] = {
        "text": "\n".join(p for p in parts if p),
        "attachments": [
            {
                "fallback": cut(plain(one_line(m.title)), TITLE_LIMIT),
                "color": colour(m),
                "fields": fields(m),
            }
        ],
    }
    for key in ("channel", "username", "icon_url"):
        value = getattr(config, key)
        if value:
            out[key] = value
    return out


class MattermostNotifier:
    def __init__(self, config: MattermostConfig, ctx: BuildContext) -> None:
        self._config = config
        self._url = config.webhook_url.get_secret_value()
        self._http = ctx.http
        self._clock = ctx.clock
        self._secrets = url_secrets(self._url)

    def destination(self) -> str:
        return destination_id("mattermost", self._url)

    def secrets(self) -> list[str]:
        return self._secrets

    def rate_limit(self) -> RateLimit:
        # Mattermost's rate limit is the admin's choice: off by default, and
        # when on, 10 requests a second with a burst of 100 per client address
        # (RateLimitSettings defaults). 10/s with a burst of 10 per webhook stays
        # inside that for one webhook; several webhooks on one server share the
        # address, and a 429 is retried with its Retry-After.
        return RateLimit(per_second=10.0, burst=10)

    def prepare(self, message: Message) -> Prepared:
        body = json.dumps(mattermost_body(message, self._config), ensure_ascii=False).encode()
        return Prepared("POST", self._url, {"Content-Type": "application/json"}, body)

    async def send(self, message: Message) -> str | None:
        request = self.prepare(message)
        reply = await http.post(
            self._http,
            request.url,
            what="mattermost",
            content=request.body,
            headers=request.headers,
        )
        check_reply(
            reply,
            self._clock.now(),
            what="mattermost",
            secrets=self._secrets,
            detail=_detail(reply),
        )
        return None


def _detail(reply: http.Reply) -> str | None:
    """Mattermost's own words from a JSON error: ``{"id": ..., "message": ...}``."""
    data = reply.json()
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None
    ident = data.get("id")
    said = one_line(data["message"])
    return cut(f"{said} ({ident})" if isinstance(ident, str) and ident else said, 300)


def build(config: MattermostConfig, ctx: BuildContext) -> MattermostNotifier:
    return MattermostNotifier(config, ctx)
