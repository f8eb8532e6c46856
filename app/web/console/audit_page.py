"""The audit log page: who replayed, reloaded, pruned or acknowledged what, newest first."""

from starlette.requests import Request
from starlette.responses import Response

from app.store import audit
from app.web.console.pages import page
from app.web.console.view import render
from app.web.guards import HTTPError
from app.web.state import services_of

ACTIONS = tuple(a.value for a in audit.Action)
PAGE = 50


@page
async def audit_page(request: Request, started: float) -> Response:
    services = services_of(request)
    action = request.query_params.get("action") or None
    if action is not None and action not in ACTIONS:
        raise HTTPError(400, f"action: must be one of {', '.join(ACTIONS)}")
    actor = (request.query_params.get("actor") or "").strip()[:255] or None
    cursor = request.query_params.get("cursor") or None
    async with services.db.read() as conn:
        items, next_cursor = await audit.list_entries(
            conn, action=action, actor=actor, limit=PAGE, cursor=cursor
        )
    return render(
        request,
        "audit.html",
        started,
        title="Audit log",
        items=items,
        next_cursor=next_cursor,
        paged=cursor is not None,
        filters={"action": action, "actor": actor},
        actions=ACTIONS,
    )
