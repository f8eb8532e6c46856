"""Fakes of the chat APIs that edit messages: Slack's Web API, Discord webhooks, Mattermost's REST API.

Each keeps the messages it was sent, hands out the reference its service
does (Slack channel ID and ts, a Discord snowflake, a Mattermost post id),
edits them, and fails as the real service documents:

* Slack: HTTP 200 with ``{"ok": false, "error": code}``: ``not_authed`` /
  ``invalid_auth`` for a missing or wrong bot token, ``channel_not_found``
  for an unknown channel, ``no_text`` for an empty message, and on
  ``chat.update`` ``message_not_found`` for an unknown (or deleted) ts;
  ``chat.update`` needs both channel (the ID) and ts. Past a rate limit
  (``limit(calls, per_s)``, off by default) it answers HTTP 429 with
  ``Retry-After`` (whole seconds) and ``{"ok": false, "error": "ratelimited"}``.
* Discord: ``?wait=true`` answers 200 with the message (its ``id``), without
  it 204; ``PATCH …/messages/{id}`` answers 200 with the edited message, or
  404 code 10008 Unknown Message; a wrong token is 401 code 50027, a deleted
  webhook 404 code 10015.
* Mattermost: ``POST /api/v4/posts`` answers 201 with the post; ``PUT
  /api/v4/posts/{id}`` 200, or 404 for an unknown (or deleted) post, 400
  when the body's id is not the path's; a wrong token is 401.

A scripted reply (``sink.script(...)``) is answered as it is, without
touching the state: that is how tests make the service fail or hang. A
scripted reply whose body is ``AS_SERVICE`` is answered by the fake's logic
(after its delay), so success can be scripted too.
"""

import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request

from tests.sinks import Reply, Sink

AS_SERVICE = "<as the service answers>"


class _ChatFake(Sink):
    default = Reply(200, AS_SERVICE)

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token  # None: any token is accepted
        self._ids = itertools.count(1)
        self._state_lock = threading.Lock()

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self.clear()

    def clear(self) -> None:
        """Forget every message (subclasses)."""

    def respond(self, request: Request, body: bytes, reply: Reply) -> Reply:
        if reply.body != AS_SERVICE:
            return reply
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        with self._state_lock:
            answer = self.answer(request, data)
        return replace(answer, delay=reply.delay)

    def answer(self, request: Request, data: Any) -> Reply:
        raise NotImplementedError

    def _bearer(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


class FakeSlackAPI(_ChatFake):
    """``chat.postMessage`` and ``chat.update`` of Slack's Web API."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__(token)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel ID, ts) → body
        self.posts: list[dict[str, Any]] = []  # every accepted postMessage body
        self.updates: list[dict[str, Any]] = []  # every accepted chat.update body
        self.unknown_channels: set[str] = set()
        self._limit: tuple[int, float, Callable[[], float]] | None = None
        self._calls: list[float] = []  # when the calls inside the limit's window came
        self.limited = 0  # calls answered 429

    def clear(self) -> None:
        self.messages.clear()
        self.posts.clear()
        self.updates.clear()
        self._limit = None
        self._calls.clear()
        self.limited = 0

    def limit(self, calls: int, per_s: float, now: Callable[[], float] = time.monotonic) -> None:
        """At most ``calls`` calls in any ``per_s`` seconds (by ``now``), as
        Slack's per-method limits; the calls past it get 429 and change nothing."""
        with self._state_lock:
            self._limit = (calls, per_s, now)
            self._calls.clear()

    def _rate_limited(self) -> Reply | None:
        if self._limit is None:
            return None
        calls, per_s, now = self._limit
        at = now()
        self._calls = [t for t in self._calls if t > at - per_s]
        if len(self._calls) < calls:
            self._calls.append(at)
            return None
        self.limited += 1
        wait = max(1, math.ceil(self._calls[0] + per_s - at))
        return Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": str(wait)})

    def channel_id(self, channel: str) -> str:
        """Slack answers with the channel's ID whether it was named by ID or by name."""
        if channel.startswith("C") and channel[1:].isalnum() and channel.upper() == channel:
            return channel
        return "C" + format(abs(hash(channel.lstrip("#"))) % 10**9, "09d")

    def delete(self, channel: str, ts: str) -> None:
        """Someone deleted the message in Slack."""
        with self._state_lock:
            del self.messages[(channel, ts)]

    @staticmethod
    def _error(code: str) -> Reply:
        return Reply(200, {"ok": False, "error": code})

    def answer(self, request: Request, data: Any) -> Reply:
        token = self._bearer(request)
        if not token:
            return self._error("not_authed")
        if self.token is not None and token != self.token:
            return self._error("invalid_auth")
        limited = self._rate_limited()
        if limited is not None:
            return limited
        if not isinstance(data, dict):
            return self._error("invalid_json")
        method = request.url.path.rpartition("/")[2]
        channel = data.get("channel")
        if not isinstance(channel, str) or not channel or channel in self.unknown_channels:
            return self._error("channel_not_found")
        if not (data.get("text") or data.get("blocks") or data.get("attachments")):
            return self._error("no_text")
        if method == "chat.postMessage":
            cid = self.channel_id(channel)
            ts = f"1700000000.{next(self._ids):06d}"
            self.messages[(cid, ts)] = data
            self.posts.append(data)
            return Reply(200, {"ok": True, "channel": cid, "ts": ts, "message": {"ts": ts}})
        if method == "chat.update":
            ts = data.get("ts")
            if not isinstance(ts, str) or (channel, ts) not in self.messages:
                return self._error("message_not_found")
            self.messages[(channel, ts)] = {**data, "edited": True}
            self.updates.append(data)
            return Reply(200, {"ok": True, "channel": channel, "ts": ts, "text": data.get("text")})
        return self._error("unknown_method")


class FakeDiscordMessages(_ChatFake):
    """Discord's execute (with ``wait``) and edit of webhook messages."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__(token)
        self.messages: dict[str, dict[str, Any]] = {}  # message id → body
        self.posts: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.webhook_deleted = False

    def clear(self) -> None:
        self.messages.clear()
        self.posts.clear()
        self.edits.clear()

    def delete(self, message_id: str) -> None:
        with self._state_lock:
            del self.messages[message_id]

    def answer(self, request: Request, data: Any) -> Reply:
        parts = [p for p in request.url.path.split("/") if p]
        if "webhooks" not in parts:
            return Reply(404, {"message": "404: Not Found", "code": 0})
        after = parts[parts.index("webhooks") + 1 :]
        if self.webhook_deleted:
            return Reply(404, {"message": "Unknown Webhook", "code": 10015})
        if len(after) < 2 or (self.token is not None and after[1] != self.token):
            return Reply(401, {"message": "Invalid Webhook Token", "code": 50027})
        if not isinstance(data, dict) or not (data.get("content") or data.get("embeds")):
            return Reply(400, {"message": "Cannot send an empty message", "code": 50006})
        if request.method == "POST" and len(after) == 2:
            ident = str(1_100_000_000_000_000_000 + next(self._ids))
            self.messages[ident] = data
            self.posts.append(data)
            if request.query_params.get("wait") == "true":
                return Reply(200, {"id": ident, **data})
            return Reply(204, b"")
        if request.method == "PATCH" and len(after) == 4 and after[2] == "messages":
            ident = after[3]
            if ident not in self.messages:
                return Reply(404, {"message": "Unknown Message", "code": 10008})
            self.messages[ident] = {**self.messages[ident], **data}
            self.edits.append(data)
            return Reply(200, {"id": ident, **self.messages[ident]})
        return Reply(405, {"message": "405: Method Not Allowed", "code": 0})


class FakeMattermostAPI(_ChatFake):
    """Mattermost's ``POST /api/v4/posts`` and ``PUT /api/v4/posts/{id}``."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__(token)
        self.posts: dict[str, dict[str, Any]] = {}  # post id → post
        self.created: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []

    def clear(self) -> None:
        self.posts.clear()
        self.created.clear()
        self.updated.clear()

    def delete(self, post_id: str) -> None:
        with self._state_lock:
            del self.posts[post_id]

    @staticmethod
    def _error(status: int, ident: str, message: str) -> Reply:
        return Reply(status, {"id": ident, "message": message, "status_code": status})

    def answer(self, request: Request, data: Any) -> Reply:
        token = self._bearer(request)
        if not token or (self.token is not None and token != self.token):
            return self._error(
                401, "api.context.session_expired.app_error", "Invalid or expired session"
            )
        if not isinstance(data, dict):
            return self._error(400, "api.context.invalid_body_param.app_error", "Invalid body")
        path = request.url.path.rstrip("/")
        if request.method == "POST" and path.endswith("/api/v4/posts"):
            if not data.get("channel_id"):
                return self._error(400, "api.context.invalid_body_param.app_error", "channel_id")
            ident = format(next(self._ids), "026d")
            post = {"id": ident, "create_at": 1, "update_at": 1, "edit_at": 0, **data}
            self.posts[ident] = post
            self.created.append(data)
            return Reply(201, post)
        if request.method == "PUT" and "/api/v4/posts/" in path:
            ident = path.rpartition("/")[2]
            if data.get("id") != ident:
                return self._error(400, "api.context.invalid_body_param.app_error", "post.id")
            if ident not in self.posts:
                return self._error(404, "app.post.get.app_error", "Unable to get the post.")
            post = {**self.posts[ident], **data, "edit_at": 2}
            self.posts[ident] = post
            self.updated.append(data)
            return Reply(200, post)
        return self._error(404, "api.no_route", "Not found")
