"""``POST /webhook/alertmanager`` and ``POST /webhook/grafana``.

Answers (README.md, "HTTP interface"): 200 only once the alerts and the notifications they cause
are committed; 400 malformed JSON; 401 credentials; 413 too large; 415 not
JSON; 422 not a webhook envelope (naming the field); 503 when the database
cannot commit in time, which Alertmanager retries. A refused request stores
nothing.
"""

import asyncio
import logging
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.config.sections import ServerConfig
from app.core.domain import Source
from app.ingest.batcher import BatcherClosed, Ticket
from app.ingest.wire import PayloadError, parse_webhook
from app.store.engine import DatabaseUnavailable
from app.web.access import authorize
from app.web.guards import (
    HTTPError,
    error_response,
    json_response,
    read_body,
    require_json,
)
from app.web.state import services_of

log = logging.getLogger(__name__)

_REJECTED_SHOWN = 20
# Bodies up to this size parse inline: a thread hop would cost more than the
# parse (Alertmanager's usual webhook is a few KiB).
_PARSE_INLINE_BYTES = 64 * 1024
_OK_BODY = (
    b'{"status":"ok","accepted":%d,"duplicates":%d,"stale":%d,"transitions":%d,'
    b'"notifications":%d,"rejected":[],"rejected_total":0}'
)


async def alertmanager(request: Request) -> Response:
    return await _receive(request, Source.ALERTMANAGER)


async def grafana(request: Request) -> Response:
    return await _receive(request, Source.GRAFANA)


async def _receive(request: Request, source: Source) -> Response:
    services = services_of(request)
    started = time.perf_counter()
    code = 500
    try:
        response = await _handle(request, source)
        code = response.status_code
        return response
    except HTTPError as exc:
        code = exc.status_code
        # "Why did my webhook not arrive?": every refusal is one warning with
        # the request id (also in the answer's X-Request-Id), who sent it and
        # why. The reason is our own message: it never carries a credential.
        log.warning(
            "webhook not stored" if code >= 500 else "webhook rejected",
            extra={
                "source": source.value,
                "status": code,
                "reason": exc.message,
                "client": request.client.host if request.client else None,
            },
        )
        return error_response(exc)
    except ClientDisconnect:
        # The client went away mid-body: its fault, not ours, and nothing was
        # stored. 499 (as nginx counts it) keeps it out of the 5xx alerts.
        code = 499
        log.info(
            "webhook client disconnected before sending its body", extra={"source": source.value}
        )
        return Response(status_code=499)
    finally:
        services.metrics.webhook_answered(source.value, code, time.perf_counter() - started)


async def _handle(request: Request, source: Source) -> Response:
    services = services_of(request)
    runtime = services.runtime()
    server = runtime.config.server
    authorize(request, "webhook")
    require_json(request)
    ticket = services.ingest.announce()
    try:
        return await _store(request, source, server, ticket)
    finally:
        ticket.close()


async def _store(
    request: Request, source: Source, server: ServerConfig, ticket: Ticket
) -> Response:
    services = services_of(request)
    ingest = services.runtime().config.ingest
    body = await read_body(request, server.max_body_size, ingest.body_timeout.total_seconds())
    try:
        args = (body, source, services.clock.now(), server.max_alerts_per_request)
        if len(body) > _PARSE_INLINE_BYTES:
            # A big group takes long to parse; in a thread the event loop
            # keeps answering meanwhile (the parser is Python code, so the
            # GIL is handed back every few milliseconds).
            parsed = await asyncio.to_thread(parse_webhook, *args)
        else:
            parsed = parse_webhook(*args)
    except PayloadError as exc:
        raise HTTPError(exc.status_code, exc.message) from None

    for mismatch in parsed.mismatches[:5]:
        log.warning(
            "fingerprint mismatch",
            extra={"sent": mismatch.sent, "computed": mismatch.computed, "index": mismatch.index},
        )
    for rejected in parsed.rejected[:5]:
        log.warning("alert quarantined", extra={"index": rejected.index, "reason": rejected.reason})

    try:
        weight = len(parsed.webhook.alerts) + len(parsed.rejected)
        result = await services.ingest.ingest(
            parsed, ticket, deadline_s=server.ingest_deadline_s(weight)
        )
    except TimeoutError:
        raise HTTPError(
            503, "database busy: not stored in time, retry", {"Retry-After": "1"}
        ) from None
    except (DatabaseUnavailable, BatcherClosed) as exc:
        raise HTTPError(503, f"database unavailable: {exc}"[:300], {"Retry-After": "1"}) from None

    if not parsed.rejected:
        # The answer to nearly every webhook, formatted directly: the same
        # bytes JSONResponse renders, without the generic encoder.
        return Response(
            _OK_BODY
            % (
                result.accepted,
                result.duplicates,
                result.stale,
                result.transitions,
                result.notifications,
            ),
            media_type="application/json",
        )
    return json_response(
        {
            "status": "ok",
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "stale": result.stale,
            "transitions": result.transitions,
            "notifications": result.notifications,
            "rejected": [
                {"index": r.index, "reason": r.reason} for r in parsed.rejected[:_REJECTED_SHOWN]
            ],
            "rejected_total": len(parsed.rejected),
        }
    )
