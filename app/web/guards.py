"""Helpers the HTTP handlers share: errors, body limits, parameters."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.store.engine import is_unavailable


class HTTPError(Exception):
    """Answered as ``{"status": "error", "error": message}`` with ``status_code``."""

    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


def error_response(exc: HTTPError) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "error": exc.message}, status_code=exc.status_code, headers=exc.headers
    )


def json_response(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code)


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """Read at most ``limit`` bytes within ``timeout_s``.

    413 as soon as the body is known to be larger; 408, closing the
    connection, when it has not all arrived in time (a client that announces
    more than it sends would otherwise hold the connection forever). A
    client that goes away meanwhile raises ``ClientDisconnect``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise HTTPError(413, f"body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    # asyncio.timeout's own bookkeeping, cut to one timer: it cost several
    # percent of a small webhook's CPU. The timer cancels the task; the
    # cancellation is ours (and becomes the 408) only when the timer fired and
    # nobody else cancelled the task meanwhile, as asyncio.timeout decides it.
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    fired: list[bool] = []
    timer = asyncio.get_running_loop().call_later(timeout_s, _cut_off, task, fired)
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HTTPError(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except asyncio.CancelledError:
        if fired and task.uncancel() <= cancelling:
            raise HTTPError(
                408,
                f"request body not received within {timeout_s:g}s",
                {"Connection": "close"},
            ) from None
        raise
    finally:
        timer.cancel()
    return b"".join(chunks)


def _cut_off(task: "asyncio.Task[object]", fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise HTTPError(415, "Content-Type must be application/json")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise HTTPError(415, f"Content-Encoding {encoding[:20]!r} is not accepted")


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise HTTPError(400, f"{name}: must be an integer between {lo} and {hi}")
    value = int(raw)
    if not lo <= value <= hi:
        raise HTTPError(400, f"{name}: must be an integer between {lo} and {hi}")
    return value


@contextmanager
def database_answers() -> Iterator[None]:
    """Answer 503 (with ``Retry-After``) when the database cannot be reached.

    Every handler that touches the database says it the same way, so
    Alertmanager, scripts and probes can retry on one shape of answer."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise HTTPError(503, "database unavailable", {"Retry-After": "1"}) from None
        raise
