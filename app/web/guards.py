"""Helpers the HTTP handlers share: errors, body limits, credentials."""

import base64
import binascii
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.config.model import AuthConfig


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


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 as soon as the body is known to be larger."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise HTTPError(413, f"body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HTTPError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


def _compare_any(given: bytes, accepted: list[bytes]) -> bool:
    # Compare against every accepted secret (bytes, constant time each) so
    # the timing does not reveal which one, or how many, matched.
    found = False
    for secret in accepted:
        found |= hmac.compare_digest(given, secret)
    return found


def _credentials(request: Request) -> tuple[str, bytes]:
    header = request.headers.get("authorization")
    if not header:
        return "", b""
    scheme, _, value = header.partition(" ")
    # Starlette decodes headers as latin-1, so this recovers the raw bytes.
    return scheme.lower(), value.strip().encode("latin-1")


def check_webhook_auth(request: Request, auth: AuthConfig | None) -> None:
    """Bearer token(s) or basic auth, whichever is configured; 401 otherwise."""
    if auth is None:
        return
    tokens = auth.webhook_secrets()
    basic = auth.basic_auth
    if not tokens and basic is None:
        return
    scheme, value = _credentials(request)
    ok = False
    if scheme == "bearer" and tokens:
        ok = _compare_any(value, tokens)
    elif scheme == "basic" and basic is not None:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        expected = f"{basic.username}:{basic.password.get_secret_value()}".encode()
        ok = _compare_any(decoded, [expected])
    if not ok:
        challenge = 'Bearer realm="alertrelay"' if tokens else 'Basic realm="alertrelay"'
        raise HTTPError(401, "missing or invalid credentials", {"WWW-Authenticate": challenge})


def check_admin(request: Request, auth: AuthConfig | None) -> None:
    """The admin token guards writes; with no ``auth`` section at all, all is open."""
    if auth is None:
        return
    if auth.admin_token is None:
        raise HTTPError(
            403, "admin endpoints are disabled: set auth.admin_token or admin_token_file"
        )
    scheme, value = _credentials(request)
    if scheme != "bearer" or not _compare_any(
        value, [auth.admin_token.get_secret_value().encode()]
    ):
        raise HTTPError(
            401,
            "missing or invalid admin token",
            {"WWW-Authenticate": 'Bearer realm="alertrelay-admin"'},
        )


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
