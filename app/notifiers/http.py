"""The one way notifiers talk HTTP.

Every call: no redirects followed, no proxy taken from the environment
(the client is built that way), at most 64 KiB of the answer read, and no
URL in any error (the URL often is the credential). The total deadline of an
attempt is the delivery loop's ``asyncio.timeout`` around ``send``; httpx's
own timeouts are per read, and a sink that trickles bytes would outlast them.
Status classification follows Alertmanager's, plus 408/429 as retryable.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from app.core.retry import parse_retry_after
from app.notifiers.base import DeliveryError, redact

MAX_RESPONSE_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def text(self, limit: int = 300) -> str:
        """The body as one line of printable text, cut to ``limit`` characters."""
        text = self.body.decode("utf-8", errors="replace")
        text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
        return text[:limit] + ("…" if len(text) > limit else "")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def make_client(proxy: str | None = None) -> httpx.AsyncClient:
    """The process-wide client every notifier shares."""
    # httpx logs every request's full URL at INFO, and httpcore its details at
    # DEBUG: for Slack, Teams or Discord that URL is the credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return httpx.AsyncClient(
        trust_env=False,  # HTTP(S)_PROXY must not redirect alerts
        follow_redirects=False,  # nor may a sink's 3xx
        proxy=proxy,
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        # The answer is read raw (aiter_raw) and capped on the wire: ask for
        # it uncompressed, or a gzipped JSON answer would reach the notifiers
        # as bytes they cannot parse, and 64 KiB of gzip could be far more.
        headers={"User-Agent": "alertrelay", "Accept-Encoding": "identity"},
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    what: str,
    json_body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    io_timeout_s: float = 10.0,
) -> Reply:
    """POST and read a capped answer; transport failures raise a retryable DeliveryError.

    ``io_timeout_s`` bounds each connect/read/write; the attempt's total
    deadline is the caller's ``asyncio.timeout``.
    """
    return await request(
        client,
        "POST",
        url,
        what=what,
        json_body=json_body,
        content=content,
        headers=headers,
        io_timeout_s=io_timeout_s,
    )


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    json_body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    io_timeout_s: float = 10.0,
) -> Reply:
    """:func:`post` with another method (PUT, PATCH: editing a message)."""
    if json_body is not None:
        content = json.dumps(json_body, ensure_ascii=False, allow_nan=False).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with client.stream(
            method, url, content=content, headers=headers, timeout=io_timeout_s
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break  # a hostile sink cannot make us read more
            body = b"".join(chunks)[:MAX_RESPONSE_BYTES]
            return Reply(response.status_code, response.headers, body)
    except httpx.TimeoutException:
        raise DeliveryError(f"{what}: timed out", retryable=True) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        # The request cannot be put on the wire (a bad URL, a header value with
        # a newline): no retry changes that, so the row is dead at once.
        raise DeliveryError(
            f"{what}: request cannot be sent ({type(exc).__name__}); check the URL and credentials",
            retryable=False,
        ) from None
    except UnicodeEncodeError:
        # httpx encodes header values as ASCII: a token with other characters.
        raise DeliveryError(
            f"{what}: a header value is not ASCII; check the credentials", retryable=False
        ) from None
    except httpx.HTTPError as exc:
        # The exception text includes the URL; name only the failure's kind.
        raise DeliveryError(f"{what}: {type(exc).__name__}", retryable=True) from None


def raise_for_status(
    reply: Reply,
    now: datetime,
    *,
    what: str,
    secrets: list[str],
    detail: str | None = None,
) -> None:
    """2xx passes; 408, 429 and 5xx are retryable (honouring Retry-After); the rest is dead.

    The error quotes the start of the answer, with ``secrets`` redacted: a
    sink may echo the request, and the URL or key in it, back.
    """
    status = reply.status
    if 200 <= status < 300:
        return
    message = f"{what}: HTTP {status}"
    extra = detail if detail is not None else reply.text()
    if extra:
        message += f": {redact(extra, secrets)}"
    if 300 <= status < 400:
        raise DeliveryError(
            f"{message} (redirects are not followed; fix the URL)",
            retryable=False,
            status_code=status,
        )
    retryable = status >= 500 or status in RETRYABLE_STATUS
    retry_after = parse_retry_after(reply.headers.get("retry-after"), now) if retryable else None
    raise DeliveryError(message, retryable=retryable, status_code=status, retry_after=retry_after)
