"""``GET /api/v1/audit`` and the actor name that audit entries carry."""

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.bootstrap import Services
from app.store import audit, queries
from app.web.guards import HTTPError, database_answers, error_response, int_param, json_response
from app.web.state import services_of

log = logging.getLogger(__name__)

ACTOR_ANONYMOUS = "anonymous"  # no auth section: nobody had to say who they are


def actor_of(request: Request) -> str:
    """Who made this request: the authenticated name when the auth layer set
    one (``request.state.actor``), else ``admin`` for the admin token, or
    ``anonymous`` when no credentials are configured at all."""
    named = getattr(request.state, "actor", None)
    if isinstance(named, str) and named:
        return named
    if services_of(request).runtime().config.auth is None:
        return ACTOR_ANONYMOUS
    return audit.ACTOR_ADMIN


async def record(request: Request, action: audit.Action, **fields: Any) -> None:
    """Write one entry in its own transaction (for actions that are not a
    database change, such as a reload). A database that is down loses the
    entry, not the action: that is logged."""
    services = services_of(request)
    await record_for(services, actor_of(request), action, **fields)


async def record_for(services: Services, actor: str, action: audit.Action, **fields: Any) -> None:
    await services.record_audit(actor, action, **fields)


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise HTTPError(
            400, f"{name}: expected an RFC 3339 time such as 2026-01-02T03:04:05Z"
        ) from None
    if value.tzinfo is None:
        raise HTTPError(400, f"{name}: the time needs a zone (Z or +hh:mm)")
    return value.astimezone(UTC)


_ACTIONS = tuple(a.value for a in audit.Action)


async def list_audit(request: Request) -> Response:
    try:
        action = request.query_params.get("action") or None
        if action is not None and action not in _ACTIONS:
            raise HTTPError(400, f"action: must be one of {', '.join(_ACTIONS)}")
        actor = request.query_params.get("actor") or None
        since = _time_param(request, "since")
        until = _time_param(request, "until")
        limit = int_param(request, "limit", 100, 1, 1000)
        cursor = request.query_params.get("cursor") or None
        services = services_of(request)
        try:
            with database_answers():
                async with services.db.read() as conn:
                    items, next_cursor = await audit.list_entries(
                        conn,
                        action=action,
                        actor=actor,
                        since=since,
                        until=until,
                        limit=limit,
                        cursor=cursor,
                    )
        except queries.BadCursor as exc:
            raise HTTPError(400, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc)
    return json_response({"entries": items, "next_cursor": next_cursor})


routes = [Route("/api/v1/audit", list_audit, methods=["GET"])]
