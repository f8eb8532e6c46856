"""Slack's Web API: ``chat.postMessage`` and ``chat.update`` with a bot token.

A webhook can only post. With a bot token (``xoxb-…``, scope ``chat:write``)
``chat.postMessage`` answers with the channel's ID and the message's ``ts``,
and those two name the message for ``chat.update`` (which takes a channel
ID, not a name) or for a reply in its thread (``thread_ts``).

Slack answers HTTP 200 with ``{"ok": false, "error": "<code>"}`` for most
failures, so the code decides: ``message_not_found`` on an update means the
message was deleted (a new one is posted); ``ratelimited`` and Slack's own
internal failures are retried; anything else (``invalid_auth``,
``channel_not_found``, ``not_in_channel``, ``cant_update_message``…) needs a
person and is dead. Rate limiting also comes as HTTP 429 with
``Retry-After``, which is honoured.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.core.retry import parse_retry_after
from app.notifiers import http
from app.notifiers.base import DeliveryError, MessageGone, MessageRef, Prepared, redact

POST_METHOD = "chat.postMessage"
UPDATE_METHOD = "chat.update"

# ok:false codes worth another attempt: Slack's own trouble or its rate limit.
_TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)

# What the other codes mean for whoever reads the dead letter.
_HINTS = {
    "not_authed": "no bot token reached Slack",
    "invalid_auth": "Slack does not accept the bot token",
    "account_inactive": "the bot token belongs to a deleted user or workspace",
    "token_revoked": "the bot token was revoked",
    "token_expired": "the bot token expired",
    "missing_scope": "the bot token lacks the chat:write scope",
    "channel_not_found": "the channel does not exist or the bot cannot see it",
    "not_in_channel": "the bot is not a member of the channel; invite it",
    "is_archived": "the channel is archived",
    "msg_too_long": "the message was too long for Slack",
    "no_text": "the message had no text",
    "invalid_blocks": "Slack rejected the message's blocks",
    "cant_update_message": "the bot may not edit this message",
    "edit_window_closed": "the workspace does not allow editing messages this old",
    "restricted_action": "a workspace admin restricted posting to this channel",
}


def method_url(post_url: str, method: str) -> str:
    """The URL of another Web API method beside ``…/chat.postMessage``."""
    parts = urlsplit(post_url)
    head = parts.path.rpartition("/")[0]
    return urlunsplit(parts._replace(path=f"{head}/{method}"))


@dataclass(frozen=True)
class SlackAPI:
    """Sends prepared Web API requests and reads Slack's answers."""

    client: httpx.AsyncClient
    token: str

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.token}",
        }

    def prepared(self, url: str, body: dict[str, Any]) -> Prepared:
        data = json.dumps(body, ensure_ascii=False).encode()
        return Prepared("POST", url, self.headers(), data)

    async def call(self, request: Prepared, now: datetime, *, what: str) -> dict[str, Any]:
        """Send ``request``; the answer's JSON when ``ok`` is true, else DeliveryError."""
        reply = await http.post(
            self.client, request.url, what=what, content=request.body, headers=request.headers
        )
        secrets = [self.token]
        data = reply.json()
        code = data.get("error") if isinstance(data, dict) else None
        detail = None
        if isinstance(code, str) and code:
            hint = _HINTS.get(code)
            detail = f"{code} ({hint})" if hint else code
        http.raise_for_status(reply, now, what=what, secrets=secrets, detail=detail)
        if not isinstance(data, dict):
            raise DeliveryError(
                f"{what}: HTTP {reply.status} with an answer that is not Slack's JSON: "
                f"{redact(reply.text(120), secrets) or '(empty)'}",
                retryable=False,
                status_code=reply.status,
            )
        if data.get("ok") is True:
            return data
        said = redact(detail or "ok is false, no error named", secrets)
        if code == "message_not_found":
            raise MessageGone(f"{what}: {said}", status_code=reply.status)
        transient = code in _TRANSIENT
        retry_after = None
        if transient:
            retry_after = parse_retry_after(reply.headers.get("retry-after"), now)
        raise DeliveryError(
            f"{what}: {said}",
            retryable=transient,
            status_code=reply.status,
            retry_after=retry_after,
        )


def posted_ref(data: dict[str, Any], *, what: str) -> MessageRef:
    """The channel ID and ts of a message ``chat.postMessage`` just posted."""
    channel, ts = data.get("channel"), data.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        # Posted, but it cannot be edited: not worth a retry (it would post again).
        raise DeliveryError(f"{what}: the answer names no channel and ts", retryable=False)
    return {"channel": channel, "ts": ts}
