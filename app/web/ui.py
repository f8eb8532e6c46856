"""``GET /``: a read-only status page for the human at 3 a.m."""

from functools import lru_cache
from pathlib import Path

from jinja2 import Template
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.config.templating import html_env
from app.core.domain import isoformat
from app.store import queries
from app.web.state import services_of

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=1)
def _template() -> Template:
    return html_env().from_string((_TEMPLATES / "status.html").read_text(encoding="utf-8"))


async def status_page(request: Request) -> Response:
    services = services_of(request)
    try:
        async with services.db.read() as conn:
            firing, _ = await queries.list_alerts(conn, state="firing", limit=200, cursor=None)
            flapping, _ = await queries.list_alerts(conn, state="flapping", limit=200, cursor=None)
            dead, _ = await queries.list_notifications(
                conn, status="dead", fingerprint=None, limit=50, cursor=None
            )
            recent, _ = await queries.list_notifications(
                conn, status=None, fingerprint=None, limit=30, cursor=None
            )
            counts = await queries.alert_counts(conn)
            outbox = await queries.outbox_counts(conn)
    except Exception:
        return HTMLResponse("<h1>alertrelay</h1><p>database unavailable</p>", status_code=503)
    html = _template().render(
        version=services.version.version,
        config_version=services.runtime().loaded.version,
        now=isoformat(services.clock.now()),
        firing=firing,
        flapping=flapping,
        dead=dead,
        recent=recent,
        counts={"firing": counts.get("firing", 0), "resolved": counts.get("resolved", 0)},
        outbox=outbox,
    )
    return HTMLResponse(html)


routes = [Route("/", status_page, methods=["GET"])]
