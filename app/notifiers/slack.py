"""Slack: incoming webhooks, or the Web API with a bot token.

With ``token`` (or ``token_file``) and ``api_url`` pointing at
``…/api/chat.postMessage``, messages go through the Web API
(:mod:`app.notifiers.slackapi`): ``update_message: true`` edits the first
message of an alert (or group) with ``chat.update`` at every later change;
without it, later changes reply in that message's thread (``thread_ts``).
The message body is the same either way.

One message per notice: ``text`` is the notification fallback (title, then
the start of the body); ``blocks`` hold the title; one ``attachments`` entry
carries the colour bar (severity; resolved green; flapping purple) and, as
blocks, the body, a context line (status, severity, start, duplicates, flap
state, a link to the source) and a Runbook button.

Alert data is only data. Slack decodes exactly ``&amp;``, ``&lt;``
and ``&gt;``, so escaping ``&``, ``<`` and ``>`` in alert data means no label
can produce ``<!channel>``, ``<@U…>`` or a ``<url|text>`` link; a word-initial
``@`` gets a zero-width joiner; and text objects are ``verbatim``, so Slack
parses nothing it was not given as markup. An operator's ``title:``/``text:``
override is escaped the same way: its *mrkdwn formatting* works, links and
mentions do not. Slack has no escape for ``*``, ``_`` or ``~``: those reach
the message as they are.
"""

import json
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, model_validator

from app.config.fields import FieldError, secret_from, secret_url_from
from app.core.domain import Status
from app.core.message import Message
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import (
    BuildContext,
    IntegrationConfig,
    MessageMode,
    MessageRef,
    Prepared,
    destination_id,
)
from app.notifiers.slackapi import POST_METHOD, UPDATE_METHOD, SlackAPI, method_url, posted_ref
from app.notifiers.slackcompat import (
    check_reply,
    colour,
    cut_markup,
    flap_note,
    neutralise_mentions,
    one_line,
    title_and_text,
    url_secrets,
)

SECTION_LIMIT = 3000  # characters of a section's text (Block Kit)
TITLE_LIMIT = 1024  # Alertmanager cuts Slack titles at 1024 too
FALLBACK_LIMIT = 1500  # the top-level text: a notification, not the message
URL_LIMIT = 1500  # Slack takes 3000 in a button; longer links are left out to bound the size
SHORT_LIMIT = 100  # severity and times in the context line
# Together these keep a message under ~9,000 characters, well below the
# ~12-13k at which Slack starts answering msg_blocks_too_long.

# What Slack's error bodies mean for whoever reads the dead letter.
_HINTS = {
    "invalid_payload": "Slack could not read the message",
    "invalid_blocks": "Slack rejected the message's blocks",
    "invalid_attachments": "Slack rejected the message's attachment",
    "msg_blocks_too_long": "the message was too long for Slack",
    "user_not_found": "the user named in channel: does not exist",
    "channel_not_found": "the webhook's channel does not exist any more",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_token": "the webhook was revoked; create a new one",
    "no_service": "the webhook is disabled or removed; create a new one",
    "no_team": "the workspace of this webhook no longer exists",
    "team_disabled": "the workspace of this webhook is disabled",
}


class SlackConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    secret_fields: ClassVar[tuple[str, ...]] = ("api_url", "token")
    can_update_message: ClassVar[bool] = True

    api_url: SecretStr
    # A bot token switches to the Web API (api_url is then chat.postMessage).
    token: SecretStr | None = None
    # App webhooks ignore these; legacy custom-integration webhooks and the
    # Web API honour them (the Web API needs the channel).
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "token", required=False)
        return secret_url_from(data, "api_url")

    @model_validator(mode="after")
    def _web_api(self) -> "SlackConfig":
        if self.token is None:
            if self.update_message:
                raise FieldError(
                    "update_message",
                    "needs Slack's Web API: a bot token (token or token_file) and "
                    f"api_url https://slack.com/api/{POST_METHOD}; a webhook cannot edit",
                )
            return self
        if not urlsplit(self.api_url.get_secret_value()).path.endswith(f"/{POST_METHOD}"):
            raise FieldError(
                "api_url",
                f"with a token it must be the Web API's {POST_METHOD} URL "
                f"(https://slack.com/api/{POST_METHOD})",
            )
        if not self.channel:
            raise FieldError("channel", "required with a token (the channel ID or name to post in)")
        return self

    def secret_values(self) -> list[str]:
        # With a token the URL is Slack's public API address, not a credential.
        if self.token is not None:
            return [self.token.get_secret_value()]
        return super().secret_values()


def escape(text: str) -> str:
    """Alert data for mrkdwn: ``& < >`` as entities (Slack's three), no mentions."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return neutralise_mentions(text)


def link_url(url: str) -> str:
    """A URL inside ``<url|text>``: ``&`` as an entity; ``< > |`` would end it early."""
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack neither links bare URLs nor parses names in what we send.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _short(value: str) -> str:
    return cut_markup(escape(one_line(value)), SHORT_LIMIT)


def context_items(m: Message) -> list[str]:
    """The context line: status, severity, times, duplicates, flap state, source."""
    items = [f"*Status:* {m.tag}"]
    if m.severity:
        items.append(f"*Severity:* {_short(m.severity)}")
    if m.starts_at:
        items.append(f"*Started:* {_short(m.starts_at)}")
    if m.ends_at and m.status is Status.RESOLVED:
        items.append(f"*Ended:* {_short(m.ends_at)}")
    if m.duplicates:
        items.append(f"*Duplicates:* {m.duplicates}")
    note = flap_note(m)
    if note:
        items.append(note)
    if m.generator_url and len(m.generator_url) <= URL_LIMIT:
        items.append(f"<{link_url(m.generator_url)}|Source>")
    return items


def slack_body(m: Message, config: SlackConfig) -> dict[str, Any]:
    """The JSON body for one notice (see the module docstring)."""
    title, text = title_and_text(
        m, escape, escape, lambda url, label: f"<{link_url(url)}|{label}>", SECTION_LIMIT
    )
    title = cut_markup(title, TITLE_LIMIT)
    body = cut_markup(text, SECTION_LIMIT)
    inner: list[dict[str, Any]] = []
    if body:
        inner.append(_section(body))
    inner.append({"type": "context", "elements": [_mrkdwn(i) for i in context_items(m)]})
    buttons = [
        {
            "type": "button",
            "action_id": action,
            "text": {"type": "plain_text", "text": label},
            "url": url,
        }
        for action, label, url in (
            ("runbook", "Runbook", m.runbook_url),
            ("acknowledge", "Acknowledge", m.ack_url),
        )
        if url and len(url) <= URL_LIMIT
    ]
    if buttons:
        inner.append({"type": "actions", "elements": buttons})
    out: dict[str, Any] = {
        "text": cut_markup(f"{title}\n{text}" if text else title, FALLBACK_LIMIT),
        "blocks": [_section(f"*{title}*")],
        "attachments": [{"color": colour(m), "fallback": title, "blocks": inner}],
        # Alert data may hold links; no previews of them in the channel.
        "unfurl_links": False,
        "unfurl_media": False,
    }
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            out[key] = value
    return out


class SlackNotifier:
    def __init__(self, config: SlackConfig, ctx: BuildContext) -> None:
        self._config = config
        self._url = config.api_url.get_secret_value()
        self._http = ctx.http
        self._clock = ctx.clock
        token = config.token.get_secret_value() if config.token is not None else None
        self._api = SlackAPI(ctx.http, token) if token else None
        self._secrets = [token] if token else url_secrets(self._url)

    def destination(self) -> str:
        if self._api is not None:
            # Slack paces posting per channel (and workspace): one bucket per
            # token and channel, not one for everyone behind slack.com/api.
            return destination_id("slack", self._url, self._api.token, self._config.channel or "")
        return destination_id("slack", self._url)

    def secrets(self) -> list[str]:
        return self._secrets

    def rate_limit(self) -> RateLimit:
        # Slack allows one message per second per webhook and tolerates short
        # bursts, without saying how long; no burst by default keeps a storm
        # at the documented rate (a config's rate_limit may allow one).
        return RateLimit(per_second=1.0, burst=1)

    def prepare(self, message: Message) -> Prepared:
        if self._api is not None:
            return self.prepare_post(message, None)
        body = json.dumps(slack_body(message, self._config), ensure_ascii=False).encode()
        return Prepared("POST", self._url, {"Content-Type": "application/json"}, body)

    # -- the Web API (a bot token): post, reply in a thread, edit

    def message_mode(self) -> MessageMode | None:
        if self._api is None:
            return None
        return MessageMode.EDIT if self._config.update_message else MessageMode.THREAD

    def _api_or_fail(self) -> SlackAPI:
        if self._api is None:
            raise RuntimeError("slack: posting by reference needs a bot token")
        return self._api

    def prepare_post(self, message: Message, thread: MessageRef | None) -> Prepared:
        body = slack_body(message, self._config)
        if thread is not None:
            body["channel"] = thread["channel"]
            body["thread_ts"] = thread["ts"]
        return self._api_or_fail().prepared(self._url, body)

    def prepare_edit(self, message: Message, ref: MessageRef) -> Prepared:
        body = slack_body(message, self._config)
        # chat.update takes the channel's ID (as postMessage answered it) and
        # the message's ts; it has no username, icon or unfurl arguments.
        for key in ("username", "icon_emoji", "unfurl_links", "unfurl_media"):
            body.pop(key, None)
        body = {**body, "channel": ref["channel"], "ts": ref["ts"]}
        return self._api_or_fail().prepared(method_url(self._url, UPDATE_METHOD), body)

    async def post(self, message: Message, thread: MessageRef | None) -> MessageRef:
        api = self._api_or_fail()
        data = await api.call(
            self.prepare_post(message, thread), self._clock.now(), what=f"slack {POST_METHOD}"
        )
        return posted_ref(data, what=f"slack {POST_METHOD}")

    async def edit(self, message: Message, ref: MessageRef) -> None:
        api = self._api_or_fail()
        await api.call(
            self.prepare_edit(message, ref), self._clock.now(), what=f"slack {UPDATE_METHOD}"
        )

    async def send(self, message: Message) -> str | None:
        if self._api is not None:
            await self.post(message, None)
            return None
        request = self.prepare(message)
        reply = await http.post(
            self._http, request.url, what="slack", content=request.body, headers=request.headers
        )
        said = reply.text()
        hint = _HINTS.get(said)
        check_reply(
            reply,
            self._clock.now(),
            what="slack",
            secrets=self._secrets,
            detail=f"{said} ({hint})" if hint else None,
        )
        return None


def build(config: SlackConfig, ctx: BuildContext) -> SlackNotifier:
    return SlackNotifier(config, ctx)
