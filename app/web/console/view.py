"""Rendering the console's pages: one autoescaped Jinja2 environment over package files.

These templates are ours, not the operator's, so they use a plain
``Environment`` (autoescaped); operator templates keep the sandbox.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.core.domain import isoformat
from app.web.console import access
from app.web.state import services_of

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


@dataclass(frozen=True)
class NavItem:
    path: str
    title: str


# Pages in the navigation bar. Features that add a page append theirs with
# ``add_nav``.
NAV: list[NavItem] = [
    NavItem("/", "Overview"),
    NavItem("/alerts", "Alerts"),
    NavItem("/dead-letters", "Dead letters"),
    NavItem("/routes", "Routes"),
    NavItem("/heartbeats", "Heartbeats"),
    NavItem("/audit", "Audit log"),
]


def add_nav(path: str, title: str) -> None:
    if all(item.path != path for item in NAV):
        NAV.append(NavItem(path, title))


SEVERITY_ORDER = ("critical", "error", "warning", "info")


def severity_class(severity: str | None) -> str:
    """A CSS class for a severity; the page always prints the word as well."""
    value = (severity or "").lower()
    return f"sev-{value}" if value in SEVERITY_ORDER else "sev-other"


def _query(base: dict[str, str | None], **changes: str | None) -> str:
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def _since(value: str | None, now: datetime) -> str:
    """``3h 12m`` from an ISO timestamp to ``now``."""
    if not value:
        return ""
    try:
        then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "in the future"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _when(value: str | None) -> str:
    """``2026-12-04 19:11:01 UTC`` from an ISO timestamp (the exact value stays in ``datetime``)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sevclass"] = severity_class
    env.filters["when"] = _when
    env.globals["query"] = _query
    return env


def render(
    request: Request,
    name: str,
    started: float,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``name``; the footer shows the time spent since ``started``."""
    services = services_of(request)
    now = services.clock.now()

    def elapsed_ms() -> str:
        return f"{(time.perf_counter() - started) * 1000:.1f}"

    since: Callable[[str | None], str] = lambda value: _since(value, now)  # noqa: E731
    html = (
        environment()
        .get_template(name)
        .render(
            request_path=request.url.path,
            nav=NAV,
            version=services.version.version,
            config_version=services.runtime().loaded.version,
            rendered_at=isoformat(now),
            elapsed_ms=elapsed_ms,
            since=since,
            csrf_field=access.CSRF_FIELD,
            csrf_token=access.csrf_token(request),
            **context,
        )
    )
    total = (time.perf_counter() - started) * 1000
    response = HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Server-Timing": f"render;dur={total:.2f}",
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
        },
    )
    access.set_csrf_cookie(request, response)
    return response
