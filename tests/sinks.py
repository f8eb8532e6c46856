"""Local HTTP sinks served by uvicorn on 127.0.0.1, in a thread of their own.

``FakePagerDuty`` follows the Events API v2 dedup state machine; ``FakeSlackAPI``,
``FakeDiscordMessages`` and ``FakeMattermostAPI`` (in tests/chat_fakes.py) keep the
messages they were sent and edit them as those services do;
``WebhookSink`` records whatever it gets. All
answer from a script: each request takes the next scripted ``Reply`` (or the
default success), which can set a status, headers, a body, a delay before
answering, or a trickle of bytes.
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    status: int = 200
    body: Any = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hang, if long)
    trickle: float = 0.0  # seconds between body bytes (a slow sink)


@dataclass
class Received:
    at: float  # time.monotonic()
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


ECHO = "<echo>"  # a reply body replaced by what the request carried (path, auth, body)


class Sink:
    """Scripted replies and a thread-safe request log."""

    default = Reply()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self.received: list[Received] = []
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["POST", "PUT", "PATCH", "GET", "DELETE"]
                )
            ]
        )

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.received.clear()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def decide(self, body: bytes, reply: Reply) -> Reply:  # subclasses may react to content
        return reply

    def respond(self, request: Request, body: bytes, reply: Reply) -> Reply:
        """Subclasses that need the method, path or headers react here."""
        return self.decide(body, reply)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        reply = self.respond(request, body, self._next())
        with self._lock:
            self.received.append(
                Received(
                    time.monotonic(), request.url.path, dict(request.headers), body, reply.status
                )
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        content = reply.body if isinstance(reply.body, (str, bytes)) else json.dumps(reply.body)
        if content == ECHO:
            auth = request.headers.get("authorization", "")
            content = f"rejected {request.url.path}?{request.url.query} auth={auth} body={body.decode(errors='replace')}"
        data = content.encode() if isinstance(content, str) else content
        if reply.trickle:

            async def drip():  # type: ignore[no-untyped-def]
                for i in range(len(data)):
                    yield data[i : i + 1]
                    await asyncio.sleep(reply.trickle)

            return StreamingResponse(drip(), status_code=reply.status, headers=reply.headers)
        return Response(data, status_code=reply.status, headers=reply.headers)


class WebhookSink(Sink):
    def bodies(self) -> list[Any]:
        return [r.json() for r in self.requests() if 200 <= r.status < 300]


class QuerySink(WebhookSink):
    """Records the query string too (the sink base class keeps only the path)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.queries.clear()

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            self.queries.append(request.url.query)
        return await super()._handle(request)


PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")


def pd_invalid(*errors: str) -> Reply:
    """PagerDuty's answer to an event it will not take."""
    return Reply(
        400,
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)},
    )


class FakePagerDuty(Sink):
    """PagerDuty's dedup rules: trigger opens or adds; resolve closes an open
    incident and is dropped otherwise; a trigger after a resolve opens a new one.

    It validates as the real Events API v2 does: a
    trigger needs a payload with a summary of at most 1,024 characters, a
    source, and one of the four severities; a trigger without ``dedup_key``
    gets a generated one (returned in the answer, and always a new incident);
    acknowledge and resolve need a key. Rejected events answer 400 and are
    kept in ``rejected``. A scripted failure is answered without looking at
    the event."""

    default = Reply(202, {"status": "success", "message": "Event processed"})

    def __init__(self) -> None:
        super().__init__()
        self.incidents: list[dict[str, Any]] = []  # every incident ever opened
        self.dropped: list[dict[str, Any]] = []  # resolves for keys that were not open
        self.rejected: list[tuple[Any, list[str]]] = []  # (event or raw body, errors) answered 400
        self.order: list[tuple[str, str]] = []  # (action, dedup_key) as accepted

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.incidents.clear()
            self.dropped.clear()
            self.rejected.clear()
            self.order.clear()

    @staticmethod
    def problems(event: Any, size: int) -> list[str]:
        """Why PagerDuty would refuse this event (empty: it takes it)."""
        if not isinstance(event, dict):
            return ["Event object is not a JSON object"]
        errors = []
        if size > 512_000:
            errors.append("Event object exceeds the maximum size of 512KB")
        if not isinstance(event.get("routing_key"), str) or not event["routing_key"]:
            errors.append("'routing_key' is missing or blank")
        action = event.get("event_action")
        if action not in PD_ACTIONS:
            errors.append(
                "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"
            )
        key = event.get("dedup_key")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "'payload' is missing or not an object"]
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' must be at most 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append(
                    "'payload.severity' is invalid (must be one of critical, error, warning, info)"
                )
        return errors

    def decide(self, body: bytes, reply: Reply) -> Reply:
        if not 200 <= reply.status < 300:
            return reply
        try:
            event = json.loads(body)
        except ValueError:
            event = None
            errors = ["Event object is not valid JSON"]
        else:
            errors = self.problems(event, len(body))
        if errors:
            with self._lock:
                self.rejected.append((event if event is not None else body, errors))
            return pd_invalid(*errors)
        action, routing = event["event_action"], event["routing_key"]
        key = event.get("dedup_key") or uuid.uuid4().hex  # as PagerDuty: a new key, a new incident
        with self._lock:
            self.order.append((action, key))
            open_ = self._open(routing, key)
            if action == "trigger":
                if open_ is None:
                    self.incidents.append(
                        {"routing_key": routing, "dedup_key": key, "open": True, "events": [event]}
                    )
                else:
                    open_["events"].append(event)
            elif action == "resolve":
                if open_ is None:
                    self.dropped.append(event)
                else:
                    open_["open"] = False
                    open_["events"].append(event)
            elif action == "acknowledge":
                if open_ is None:
                    self.dropped.append(event)
                else:
                    open_["acknowledged"] = True
                    open_["events"].append(event)
        if isinstance(reply.body, dict) and reply.body.get("status") == "success":
            # The real answer names the key, generated or not.
            return replace(reply, body={**reply.body, "dedup_key": key})
        return reply

    def _open(self, routing: str, key: str) -> dict[str, Any] | None:
        for incident in self.incidents:
            if (
                incident["routing_key"] == routing
                and incident["dedup_key"] == key
                and incident["open"]
            ):
                return incident
        return None

    def open_incidents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [i for i in self.incidents if i["open"]]

    def all_incidents(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.incidents)


@contextmanager
def serve_app(app: Starlette) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Do not wait for handlers a test left hanging on purpose.
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)


@contextmanager
def serve(sink: Sink) -> Iterator[str]:
    """Serve ``sink`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    with serve_app(sink.app) as url:
        yield url
