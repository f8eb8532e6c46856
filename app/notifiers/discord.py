"""Discord webhooks with embeds.

One message per notification: a short ``content`` line (what a push
notification shows) and one embed with the title, the text, a few fields and
the runbook link. ``?wait=true`` makes Discord answer 200 with the saved
message, so a message Discord drops is an error rather than a silent 204.

Alert data is data: ``allowed_mentions: {"parse": []}`` on every request
stops every ping (``@everyone``, ``@here``, roles, users), and markdown
characters in the content, description and field values are backslash-escaped,
so a label cannot format, mask a link or even render a mention there (URLs
stay as they are, so they still link). The embed title, which renders neither
links nor mentions, is sent as it is.

``update_message: true``: the saved message's ``id`` from the first post
names it, and every later change of the alert (or group) edits it with
``PATCH /webhooks/{id}/{token}/messages/{message_id}`` (a webhook may edit
the messages it sent). A 404 with code 10008 (Unknown Message) means the
message was deleted: a new one is posted.
"""

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr, model_validator

from app.config.fields import secret_url_from
from app.core.domain import NoticeKind
from app.core.group_text import group_text, plain_link
from app.core.message import Message, cut, default_text
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
)

# Discord's limits, in characters.
CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000  # title + description + fields + footer + author, trimmed
# Discord does not publish a limit for an embed's url; longer links stay in
# the text rather than risk a 400 for the whole message.
EMBED_URL_LIMIT = 2048

COLOUR_FIRING = 0x992D22  # Alertmanager's
COLOUR_RESOLVED = 0x2ECC71  # Alertmanager's
COLOUR_FLAPPING = 0xE67E22  # orange: neither firing red nor resolved green

# Outside URLs, every character Discord markdown gives a meaning to anywhere in
# a line: emphasis, code, spoilers, masked links, mentions, channels, emoji and
# timestamps (all ``<…>``). Discord renders ``\x`` as ``x`` for punctuation ``x``.
_INLINE = re.compile(r"([\\*_~`|<\[\]@])")
# Meaningful only at the start of a line: headings, subtext, lists, quotes.
_LINE_START = re.compile(r"(?m)^(\s*)([#>+-])")
# URLs are left whole so they still link (Discord's autolink stops at "<").
_URL = re.compile(r"https?://[^\s<>]+")
# Characters that would end or break a masked link's target.
_LINK_TARGET_UNSAFE = {"(": "%28", ")": "%29", "<": "%3C", ">": "%3E", "\\": "%5C", " ": "%20"}


UNKNOWN_WEBHOOK = 10015  # Discord's JSON error code: the webhook was deleted
UNKNOWN_MESSAGE = 10008  # the message was deleted


class DiscordConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)
    can_update_message: ClassVar[bool] = True  # a webhook may edit its own messages

    webhook_url: SecretStr
    username: str | None = None
    avatar_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "webhook_url")


def escape_markdown(text: str) -> str:
    """Neutralise Discord markdown in ``text`` (URLs left intact so they still link)."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(_escape_plain(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    return _LINE_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", text))


def _link(label: str, url: str) -> str:
    """A masked link whose target cannot end early or carry markup."""
    target = "".join(_LINK_TARGET_UNSAFE.get(ch, ch) for ch in url)
    return f"[{label}]({target})"


def colour(m: Message) -> int:
    if m.kind is NoticeKind.FLAPPING:
        return COLOUR_FLAPPING
    return COLOUR_FIRING if m.firing else COLOUR_RESOLVED


def embed_length(embed: dict[str, Any]) -> int:
    """What Discord counts against the 6,000 total: text fields, trimmed."""
    parts = [embed.get("title", ""), embed.get("description", "")]
    parts += [embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
    for f in embed.get("fields", []):
        parts += [f["name"], f["value"]]
    return sum(len(p.strip()) for p in parts)


def _text(value: str, limit: int) -> str:
    # Discord trims before it counts; trimming first makes our count its count.
    return cut(value.strip(), limit).strip()


def _timestamp(m: Message) -> str | None:
    raw = (m.ends_at if not m.firing else None) or m.starts_at
    try:
        when = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None  # Discord rejects a malformed timestamp with a 400
    return when.isoformat() if when is not None and when.tzinfo is not None else None


def fit(embed: dict[str, Any], limit: int = EMBED_TOTAL_LIMIT) -> None:
    """Cut ``embed`` in place to ``limit`` characters in total.

    The description goes first (it is the long part); then fields are dropped
    from the end; the title is cut last.
    """
    over = embed_length(embed) - limit
    if over > 0 and embed.get("description"):
        keep = len(embed["description"]) - over
        if keep >= 2:  # room for one character and the marker
            embed["description"] = cut(embed["description"], keep).strip()
        else:
            del embed["description"]
        over = embed_length(embed) - limit
    while over > 0 and embed.get("fields"):
        embed["fields"].pop()
        if not embed["fields"]:
            del embed["fields"]
        over = embed_length(embed) - limit
    if over > 0 and embed.get("title"):
        embed["title"] = cut(embed["title"], max(len(embed["title"]) - over, 1))


class DiscordNotifier:
    def __init__(self, config: DiscordConfig, ctx: BuildContext) -> None:
        self._config = config
        self._webhook = config.webhook_url.get_secret_value()
        self._url = _with_wait(self._webhook)
        self._http = ctx.http
        self._clock = ctx.clock

    def destination(self) -> str:
        return destination_id("discord", self._webhook)

    def secrets(self) -> list[str]:
        token = _webhook_token(self._webhook)
        return [self._webhook, token] if token else [self._webhook]

    def rate_limit(self) -> RateLimit:
        # Discord does not publish a fixed webhook limit (its answers carry
        # X-RateLimit-* buckets); webhooks are seen to allow about 5 requests
        # per 2 s. 2.5/s with a burst of 5 stays inside that, and a 429's
        # retry_after is honoured when it is not.
        return RateLimit(per_second=2.5, burst=5)

    def prepare(self, message: Message) -> Prepared:
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        return Prepared("POST", self._url, {"Content-Type": "application/json"}, body)

    def embed(self, m: Message) -> dict[str, Any]:
        embed: dict[str, Any] = {
            # An embed title renders no links or mentions, only a little
            # emphasis, so it goes as it is (no backslashes shown where a
            # client does not unescape).
            "title": _text(m.title, TITLE_LIMIT),
            "color": colour(m),
        }
        if not embed["title"]:
            del embed["title"]  # Discord refuses an empty title; the content still says what
        if m.runbook_url and len(m.runbook_url) <= EMBED_URL_LIMIT:
            embed["url"] = m.runbook_url  # the title links to the runbook
        if m.group is not None and m.text == default_text(m):
            # The list gives way alert by alert, so its "and N more" stays.
            listed = group_text(m.group, escape_markdown, plain_link, DESCRIPTION_LIMIT)
            description = _text(listed, DESCRIPTION_LIMIT)
        else:
            description = _text(escape_markdown(m.text), DESCRIPTION_LIMIT)
        if description:
            embed["description"] = description
        fields: list[tuple[str, str, bool]] = [("Notice", m.tag, True)]
        if m.severity:
            fields.append(("Severity", escape_markdown(m.severity), True))
        if m.kind in (NoticeKind.FLAPPING, NoticeKind.STABLE) or m.flapping:
            fields.append(
                ("Flap", f"score {m.flap_score:.2f}, {m.flap_transitions} transitions", True)
            )
        if m.duplicates:
            fields.append(("Repeats", f"{m.duplicates} duplicate(s) seen", True))
        for name, label, url in (
            ("Runbook", "Open the runbook", m.runbook_url),
            ("Source", "Open the source", m.generator_url),
            ("Acknowledge", "Acknowledge", m.ack_url),
        ):
            link = _link(label, url) if url else ""
            # A cut link would not link; one too long for a field is left out.
            if link and len(link) <= FIELD_VALUE_LIMIT:
                fields.append((name, link, False))
        embed["fields"] = [
            {
                "name": _text(name, FIELD_NAME_LIMIT),
                "value": _text(value, FIELD_VALUE_LIMIT),
                "inline": inline,
            }
            for name, value, inline in fields[:FIELDS_LIMIT]
            if value.strip()
        ]
        footer = f"alertrelay · {m.fingerprint}" if m.fingerprint else "alertrelay"
        embed["footer"] = {"text": _text(footer, FOOTER_LIMIT)}
        timestamp = _timestamp(m)
        if timestamp:
            embed["timestamp"] = timestamp
        fit(embed)
        return embed

    def payload(self, m: Message) -> dict[str, Any]:
        name = escape_markdown(m.alertname or m.fingerprint)
        body: dict[str, Any] = {
            "content": _text(f"{m.tag}: {name}", CONTENT_LIMIT),
            "embeds": [self.embed(m)],
            # Nothing in an alert may ping anyone, whatever its text says.
            "allowed_mentions": {"parse": []},
        }
        if self._config.username:
            body["username"] = self._config.username
        if self._config.avatar_url:
            body["avatar_url"] = self._config.avatar_url
        return body

    # -- update_message: post (the answer names the message), then edit

    def message_mode(self) -> MessageMode | None:
        return MessageMode.EDIT if self._config.update_message else None

    def prepare_post(self, message: Message, thread: MessageRef | None) -> Prepared:
        return self.prepare(message)  # webhook messages have no threads to reply in

    def prepare_edit(self, message: Message, ref: MessageRef) -> Prepared:
        body = self.payload(message)
        # The author is fixed when the message is posted; an edit cannot change it.
        body.pop("username", None)
        body.pop("avatar_url", None)
        data = json.dumps(body, ensure_ascii=False).encode()
        url = _message_url(self._webhook, ref["message_id"])
        return Prepared("PATCH", url, {"Content-Type": "application/json"}, data)

    async def post(self, message: Message, thread: MessageRef | None) -> MessageRef:
        reply = await self._call(self.prepare_post(message, thread), editing=False)
        data = reply.json()
        ident = data.get("id") if isinstance(data, dict) else None
        if isinstance(ident, int) and not isinstance(ident, bool):
            ident = str(ident)
        if not isinstance(ident, str) or not ident.isdigit():
            # Posted (2xx), but without the id (a snowflake) it cannot be edited later.
            raise DeliveryError("discord: the answer names no message id", retryable=False)
        return {"message_id": ident}

    async def edit(self, message: Message, ref: MessageRef) -> None:
        await self._call(self.prepare_edit(message, ref), editing=True)

    async def send(self, message: Message) -> str | None:
        await self._call(self.prepare(message), editing=False)
        return None

    async def _call(self, request: Prepared, *, editing: bool) -> http.Reply:
        reply = await http.request(
            self._http,
            request.method,
            request.url,
            what="discord",
            content=request.body,
            headers=request.headers,
        )
        data: Any = None
        detail = None
        if not 200 <= reply.status < 300:
            data = reply.json()
            detail = _error_detail(data) if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        if reply.status == 404 and editing and code != UNKNOWN_WEBHOOK:
            # The webhook is there, the message is not: deleted in the channel.
            raise MessageGone(
                f"discord: HTTP 404: {detail or 'Unknown Message'} (the message was deleted)",
                status_code=404,
            )
        if reply.status == 404:
            # Discord: a webhook that answers 404 is deleted; never use it again.
            detail = f"{detail or 'Unknown Webhook'} (the webhook was deleted; replace the URL)"
        try:
            http.raise_for_status(
                reply, self._clock.now(), what="discord", secrets=self.secrets(), detail=detail
            )
        except DeliveryError as err:
            if reply.status == 429 and isinstance(data, dict):
                err.retry_after = _later(err.retry_after, data.get("retry_after"))
            raise
        return reply


def _webhook_token(url: str) -> str | None:
    """The credential part of ``…/webhooks/{id}/{token}`` (else the last path segment)."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if "webhooks" in segments:
        after = segments[segments.index("webhooks") + 1 :]
        if len(after) >= 2:
            return after[1]
    return segments[-1] if segments else None


def _message_url(url: str, message_id: str) -> str:
    """``…/webhooks/{id}/{token}/messages/{message_id}``, keeping ``thread_id`` if set."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "thread_id"]
    path = f"{parts.path.rstrip('/')}/messages/{quote(message_id, safe='')}"
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def _with_wait(url: str) -> str:
    """The webhook URL with ``wait=true``, keeping any other parameter (``thread_id``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("wait", "true")])))


def _error_detail(data: dict[str, Any]) -> str | None:
    """Discord's message and code, and the first few field errors of a 400."""
    message = str(data.get("message", "")).strip()
    if not message:
        return None
    code = data.get("code")
    text = f"{message} (code {code})" if code is not None else message
    problems = list(_field_errors(data.get("errors"), ""))[:5]
    if problems:
        text += ": " + "; ".join(problems)
    return cut(text, 1000)


def _field_errors(node: Any, path: str) -> Iterator[str]:
    """``embeds.0.description: Must be 4096 or fewer in length.`` for each nested error."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "_errors" and isinstance(value, list):
            for error in value:
                if isinstance(error, dict):
                    yield f"{path or 'body'}: {error.get('message', error.get('code', ''))}"
        else:
            yield from _field_errors(value, f"{path}.{key}" if path else str(key))


def _later(header: float | None, body: Any) -> float | None:
    """The longer of the Retry-After header and the body's ``retry_after`` (seconds)."""
    try:
        from_body = float(body) if body is not None else None
    except (TypeError, ValueError):
        from_body = None
    if from_body is not None and not (math.isfinite(from_body) and from_body >= 0):
        from_body = None
    candidates = [v for v in (header, from_body) if v is not None]
    return max(candidates) if candidates else None


def build(config: DiscordConfig, ctx: BuildContext) -> DiscordNotifier:
    return DiscordNotifier(config, ctx)
