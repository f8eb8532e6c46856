"""Mattermost: incoming webhooks, or the REST API with a token.

With ``api_url`` (``https://<server>/api/v4/posts``), ``token`` (a bot's or
a personal access token, sent as ``Authorization: Bearer``) and
``channel_id``, posts are created through the REST API, which answers
``201`` with the post and its ``id``. ``update_message: true`` then edits
that post at every later change of the alert (or group) with
``PUT /api/v4/posts/{id}`` (404: the post was deleted, so a new one is
posted); without it, later changes reply in its thread (``root_id``).

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
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

from pydantic import SecretStr, field_validator, model_validator

from app.config.fields import FieldError, check_http_url, secret_from, secret_url_from
from app.core.domain import Status
from app.core.message import Message, cut
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import (
    BuildContext,
    DeliveryError,
    IntegrationConfig,
    MessageGone,
    MessageMode,
    MessageRef,
    Prepared,
    destination_id,
    redact,
)
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
# A grouped message's list: room left for the title and links of the post.
GROUP_TEXT_LIMIT = POST_LIMIT - TITLE_LIMIT - 2 * URL_LIMIT - 100

_MARKDOWN = re.compile(r"([\\`*_~\[\]|#])")
# "<" before what Slack syntax uses after it (<!channel>, <@U1>, <#C1>).
_SLACK_TOKEN = re.compile(r"<(?=[!@#])")


POSTS_PATH = "/api/v4/posts"


class MattermostConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url", "token")
    can_update_message: ClassVar[bool] = True

    webhook_url: SecretStr | None = None
    # The REST API instead of a webhook: the posts URL, a token, a channel ID.
    api_url: str | None = None
    token: SecretStr | None = None
    channel_id: str | None = None
    channel: str | None = None
    username: str | None = None
    icon_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "token", required=False)
            if data.get("api_url") is not None:
                return secret_url_from(data, "webhook_url", required=False)
        return secret_url_from(data, "webhook_url")

    @model_validator(mode="after")
    def _rest_api(self) -> "MattermostConfig":
        if self.api_url is None:
            if self.update_message:
                raise FieldError(
                    "update_message",
                    f"needs Mattermost's REST API (api_url https://<server>{POSTS_PATH}, "
                    "token or token_file, channel_id); a webhook cannot edit",
                )
            for name in ("token", "channel_id"):
                if getattr(self, name) is not None:
                    raise FieldError(name, "only used with api_url (the REST API)")
            return self
        if self.webhook_url is not None:
            raise FieldError("api_url", "set either webhook_url or api_url, not both")
        check_http_url(self.api_url, "api_url")
        if not urlsplit(self.api_url).path.rstrip("/").endswith(POSTS_PATH):
            raise FieldError(
                "api_url", f"must be the server's posts URL, https://<server>{POSTS_PATH}"
            )
        if self.token is None:
            raise FieldError("token", "required with api_url (or token_file)")
        if not self.channel_id:
            raise FieldError("channel_id", "required with api_url (the ID of the channel)")
        for name in ("channel", "username", "icon_url"):
            if getattr(self, name) is not None:
                raise FieldError(name, "only for webhooks; the REST API posts as the token's user")
        return self

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
    title, text = title_and_text(
        m, escape, inert, lambda url, label: f"[{label}]({link_url(url)})", GROUP_TEXT_LIMIT
    )
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


def rest_body(m: Message, config: MattermostConfig) -> dict[str, Any]:
    """A REST API post: the webhook body's text as ``message``, its attachment in ``props``."""
    hook = mattermost_body(m, config)
    return {
        "channel_id": config.channel_id,
        "message": hook["text"],
        "props": {"attachments": hook["attachments"]},
    }


class MattermostNotifier:
    def __init__(self, config: MattermostConfig, ctx: BuildContext) -> None:
        self._config = config
        self._http = ctx.http
        self._clock = ctx.clock
        if config.api_url is not None and config.token is not None:
            self._url = config.api_url.rstrip("/")
            self._token: str | None = config.token.get_secret_value()
            self._secrets = [self._token]
        else:
            assert config.webhook_url is not None  # the config requires one of the two
            self._url = config.webhook_url.get_secret_value()
            self._token = None
            self._secrets = url_secrets(self._url)

    def destination(self) -> str:
        if self._token is not None:
            return destination_id("mattermost", self._url, self._config.channel_id or "")
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
        if self._token is not None:
            return self.prepare_post(message, None)
        body = json.dumps(mattermost_body(message, self._config), ensure_ascii=False).encode()
        return Prepared("POST", self._url, {"Content-Type": "application/json"}, body)

    # -- the REST API (a token): create a post, reply in its thread, update it

    def message_mode(self) -> MessageMode | None:
        if self._token is None:
            return None
        return MessageMode.EDIT if self._config.update_message else MessageMode.THREAD

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            raise RuntimeError("mattermost: posting by reference needs the REST API")
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"}

    def prepare_post(self, message: Message, thread: MessageRef | None) -> Prepared:
        body = rest_body(message, self._config)
        if thread is not None:
            body["root_id"] = thread["post_id"]
        data = json.dumps(body, ensure_ascii=False).encode()
        return Prepared("POST", self._url, self._headers(), data)

    def prepare_edit(self, message: Message, ref: MessageRef) -> Prepared:
        # PUT replaces the post: fields left out are emptied, so all are sent.
        body = {"id": ref["post_id"], **rest_body(message, self._config)}
        del body["channel_id"]
        data = json.dumps(body, ensure_ascii=False).encode()
        url = f"{self._url}/{quote(ref['post_id'], safe='')}"
        return Prepared("PUT", url, self._headers(), data)

    async def _call(self, request: Prepared, *, editing: bool) -> http.Reply:
        reply = await http.request(
            self._http,
            request.method,
            request.url,
            what="mattermost",
            content=request.body,
            headers=request.headers,
        )
        if editing and reply.status == 404:
            said = redact(_detail(reply) or "not found", self._secrets)
            raise MessageGone(
                f"mattermost: HTTP 404: {said} (the post was deleted)",
                status_code=404,
            )
        http.raise_for_status(
            reply,
            self._clock.now(),
            what="mattermost",
            secrets=self._secrets,
            detail=_detail(reply),
        )
        return reply

    async def post(self, message: Message, thread: MessageRef | None) -> MessageRef:
        reply = await self._call(self.prepare_post(message, thread), editing=False)
        data = reply.json()
        ident = data.get("id") if isinstance(data, dict) else None
        if not isinstance(ident, str) or not ident.isalnum():
            raise DeliveryError("mattermost: the answer names no post id", retryable=False)
        return {"post_id": ident}

    async def edit(self, message: Message, ref: MessageRef) -> None:
        await self._call(self.prepare_edit(message, ref), editing=True)

    async def send(self, message: Message) -> str | None:
        if self._token is not None:
            await self.post(message, None)
            return None
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
