"""Request ids, access logging, and the last line of defence against a 500 with a traceback."""

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops.logs import request_id
from app.ops.tracing import NOOP_SPAN, Span, Tracer

log = logging.getLogger("alertrelay.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_500 = json.dumps({"status": "error", "error": "internal error; see the server log"}).encode()


class RequestMiddleware:
    def __init__(
        self, app: ASGIApp, tracer: Tracer | None = None, *, access_log: bool = False
    ) -> None:
        self.app = app
        self.tracer = tracer or Tracer()
        # The access log is its own switch, at info: no need for debug level
        # (and the database drivers' debug output) to see the requests.
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _SAFE_ID.match(incoming) else os.urandom(8).hex()
        token = request_id.set(rid)
        method = scope.get("method", "")
        try:
            await self._traced(scope, receive, send, rid, method)
        finally:
            request_id.reset(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, rid: str, method: str
    ) -> None:
        if not self.tracer.enabled:
            # No span to open: the attributes and the context manager were
            # measurable on every request of a busy webhook endpoint.
            await self._serve(scope, receive, send, rid, NOOP_SPAN)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        with self.tracer.span(
            method,
            kind="server",
            headers=headers,
            attributes={
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "alertrelay.request_id": rid,
            },
        ) as span:
            await self._serve(scope, receive, send, rid, span)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, rid: str, span: Span
    ) -> None:
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Gone mid-request: nothing to answer, and not a server error.
            status = status or 499
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            if status == 0:
                status = 500
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_500)).encode()),
                            (b"x-request-id", rid.encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _500})
        finally:
            route = getattr(scope.get("route"), "path", None)
            if isinstance(route, str):
                span.rename(f"{scope.get('method', '')} {route}")
                span.set("http.route", route)
            span.set("http.response.status_code", status)
            if status >= 500:
                span.error(f"HTTP {status}")
            level = (
                logging.WARNING
                if status >= 500
                else logging.INFO
                if self.access_log
                else logging.DEBUG
            )
            if log.isEnabledFor(level):
                client = scope.get("client")
                log.log(
                    level,
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )


class DirectPosts:
    """ASGI middleware: a POST to one of ``routes`` goes straight to its endpoint.

    The webhook endpoints answer most of the requests a busy service gets,
    and the layers between here and the endpoint (the read guard, which
    never applies to a POST; Starlette's exception middleware, router and
    request wrapper) were about a tenth of such a request's CPU. Everything
    else, and every other method on these paths, goes through the router as
    before.
    """

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.routes: dict[str, tuple[Route, Callable[[Request], Awaitable[Response]]]] = {
            route.path: (route, route.endpoint) for route in routes
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under a root path the router's own matching applies.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = self.routes.get(scope["path"])
            if found is not None:
                route, endpoint = found
                scope["route"] = route  # what the router would set (access log, traces)
                scope["endpoint"] = endpoint
                scope.setdefault("path_params", {})
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
