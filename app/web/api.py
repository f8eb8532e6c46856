"""``/api/v1``: alerts, notifications, runbooks, quarantine; and ``/-/reload``."""

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.delivery.replay import replay_dead
from app.store import audit, queries
from app.store.outbox import ReplayStatus
from app.web.access import authorize
from app.web.ack_api import delete_ack, post_ack
from app.web.audit import actor_of
from app.web.audit import record as record_audit
from app.web.guards import HTTPError, database_answers, error_response, int_param, json_response
from app.web.state import services_of

log = logging.getLogger(__name__)

_ALERT_STATES = ("firing", "resolved", "flapping")
_NOTIFICATION_STATUSES = ("pending", "in_flight", "sent", "dead")


async def _read(request: Request, fn: Any, *args: Any, **kwargs: Any) -> Any:
    services = services_of(request)
    try:
        with database_answers():
            async with services.db.read() as conn:
                return await fn(conn, *args, **kwargs)
    except queries.BadCursor as exc:
        raise HTTPError(400, str(exc)) from None


def _handled(fn: Any) -> Any:
    async def handler(request: Request) -> Response:
        try:
            result: Response = await fn(request)
            return result
        except HTTPError as exc:
            return error_response(exc)

    return handler


@_handled
async def list_alerts(request: Request) -> Response:
    state = request.query_params.get("state") or None
    if state is not None and state not in _ALERT_STATES:
        raise HTTPError(400, f"state: must be one of {', '.join(_ALERT_STATES)}")
    limit = int_param(request, "limit", 100, 1, 1000)
    cursor = request.query_params.get("cursor") or None
    now = services_of(request).clock.now()
    items, next_cursor = await _read(
        request, queries.list_alerts, state=state, limit=limit, cursor=cursor, now=now
    )
    return json_response({"alerts": items, "next_cursor": next_cursor})


@_handled
async def get_alert(request: Request) -> Response:
    fingerprint = request.path_params["fingerprint"]
    alert = await _read(
        request, queries.get_alert, fingerprint, now=services_of(request).clock.now()
    )
    if alert is None:
        raise HTTPError(404, f"no alert with fingerprint {fingerprint[:32]!r}")
    return json_response(alert)


@_handled
async def list_notifications(request: Request) -> Response:
    status = request.query_params.get("status") or None
    if status is not None and status not in _NOTIFICATION_STATUSES:
        raise HTTPError(400, f"status: must be one of {', '.join(_NOTIFICATION_STATUSES)}")
    limit = int_param(request, "limit", 100, 1, 1000)
    cursor = request.query_params.get("cursor") or None
    fingerprint = request.query_params.get("fingerprint") or None
    items, next_cursor = await _read(
        request,
        queries.list_notifications,
        status=status,
        fingerprint=fingerprint,
        limit=limit,
        cursor=cursor,
    )
    return json_response({"notifications": items, "next_cursor": next_cursor})


_MAX_ID = 2**63 - 1  # ids are 64-bit signed integers in both databases


def _notification_id(raw: str) -> int:
    """A notification id from the path; anything that cannot be one is a 404
    (an id past 64 bits would otherwise overflow the database driver)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > _MAX_ID:
        raise HTTPError(404, "no such notification")
    return int(raw)


@_handled
async def get_notification(request: Request) -> Response:
    raw = request.path_params["id"]
    item = await _read(request, queries.get_notification, _notification_id(raw))
    if item is None:
        raise HTTPError(404, f"no notification {raw}")
    return json_response(item)


@_handled
async def replay(request: Request) -> Response:
    """Put a dead notification back in line (admin). Replaying twice sends once."""
    services = services_of(request)
    authorize(request, "admin")
    raw = request.path_params["id"]
    notification_id = _notification_id(raw)
    with database_answers():
        result = await replay_dead(
            services.db, notification_id, services.clock.now(), actor=actor_of(request), via="api"
        )
    if result.status is ReplayStatus.NOT_FOUND:
        raise HTTPError(404, f"no notification {raw}")
    if result.status is ReplayStatus.NOT_DEAD:
        raise HTTPError(409, f"notification {raw} is not dead (already replayed or delivered)")
    if result.status is ReplayStatus.SUPERSEDED:
        raise HTTPError(
            409,
            f"notification {raw} is superseded by notification {result.superseded_by} for the "
            "same alert and destination; replaying it would reopen what that one settled",
        )
    services.wake_delivery.set()
    log.info("notification replayed", extra={"notification": result.id})
    return json_response({"status": "requeued", "id": result.id})


@_handled
async def resolve_runbook(request: Request) -> Response:
    labels = {k: v for k, v in request.query_params.multi_items()}
    runbook = services_of(request).runtime().runbook(labels, {})
    return json_response({"url": runbook.url, "source": runbook.source, "labels": labels})


@_handled
async def quarantine(request: Request) -> Response:
    limit = int_param(request, "limit", 100, 1, 1000)
    items = await _read(request, queries.list_quarantine, limit)
    return json_response({"quarantined": items})


@_handled
async def reload(request: Request) -> Response:
    services = services_of(request)
    authorize(request, "admin")
    ok, message = services.reload()
    await record_audit(
        request,
        audit.Action.RELOAD,
        target="config",
        outcome="ok" if ok else "refused",
        details=services.reload_details(ok, message),
    )
    if not ok:
        raise HTTPError(400, f"config refused, the previous config stays in force:\n{message}")
    return json_response({"status": "ok", "config": message})


routes = [
    Route("/api/v1/alerts", list_alerts, methods=["GET"]),
    Route("/api/v1/alerts/{fingerprint}", get_alert, methods=["GET"]),
    Route("/api/v1/alerts/{fingerprint}/ack", post_ack, methods=["POST"]),
    Route("/api/v1/alerts/{fingerprint}/ack", delete_ack, methods=["DELETE"]),
    Route("/api/v1/notifications", list_notifications, methods=["GET"]),
    Route("/api/v1/notifications/{id}", get_notification, methods=["GET"]),
    Route("/api/v1/notifications/{id}/replay", replay, methods=["POST"]),
    Route("/api/v1/runbooks/resolve", resolve_runbook, methods=["GET"]),
    Route("/api/v1/quarantine", quarantine, methods=["GET"]),
    Route("/-/reload", reload, methods=["POST"]),
]
