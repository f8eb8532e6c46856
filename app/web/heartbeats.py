"""``GET /api/v1/heartbeats``: each configured heartbeat, its last proof of life and age."""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config.compiled import CompiledConfig
from app.core.domain import isoformat
from app.core.heartbeats import HeartbeatState
from app.store import heartbeats as heartbeat_store
from app.web.guards import HTTPError, database_answers, error_response, json_response
from app.web.state import services_of


def heartbeat_views(
    runtime: CompiledConfig, states: list[HeartbeatState], now: Any
) -> list[dict[str, Any]]:
    """One entry per configured heartbeat, in config order. A heartbeat the
    sweeper has not looked at yet has no row: it is watched from now."""
    by_name = {s.name: s for s in states}
    out = []
    for hb in runtime.heartbeats:
        state = by_name.get(hb.name) or HeartbeatState(hb.name, now)
        out.append(
            {
                "name": hb.name,
                "matchers": [str(m) for m in hb.matchers],
                "interval_s": hb.interval_s,
                "receiver": hb.receiver,
                "watched_since": isoformat(state.watched_since),
                "last_seen": isoformat(state.last_seen) if state.last_seen else None,
                "age_s": round(state.age_s(now), 3),
                "missing": state.missing,
                "missing_since": isoformat(state.missing_since) if state.missing_since else None,
            }
        )
    return out


async def read_heartbeats(request: Request) -> list[dict[str, Any]]:
    services = services_of(request)
    with database_answers():
        async with services.db.read() as conn:
            states = await heartbeat_store.list_all(conn)
    return heartbeat_views(services.runtime(), states, services.clock.now())


async def list_heartbeats(request: Request) -> Response:
    try:
        items = await read_heartbeats(request)
    except HTTPError as exc:
        return error_response(exc)
    return json_response({"heartbeats": items})


routes = [Route("/api/v1/heartbeats", list_heartbeats, methods=["GET"])]
