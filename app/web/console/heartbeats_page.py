"""The heartbeats page: each dead man's switch, its last proof of life, missing or not."""

from starlette.requests import Request
from starlette.responses import Response

from app.core.escalation import format_duration
from app.core.fingerprint import fingerprint
from app.core.heartbeats import labels as missing_labels
from app.web.console.pages import page
from app.web.console.view import render
from app.web.heartbeats import read_heartbeats


@page
async def heartbeats_page(request: Request, started: float) -> Response:
    items = await read_heartbeats(request)
    for item in items:
        item["interval"] = format_duration(item["interval_s"])
        item["age"] = format_duration(item["age_s"])
        # The HeartbeatMissing alert's page, where its notifications are.
        item["alert"] = fingerprint(missing_labels(item["name"]))
    return render(request, "heartbeats.html", started, title="Heartbeats", items=items)
