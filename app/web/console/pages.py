"""The console's read pages: overview, alerts, one alert."""

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.core.domain import integration_key
from app.delivery.preview import RenderedRequest, render_integration
from app.store import console_reads, queries
from app.store.engine import is_unavailable
from app.web.console import access
from app.web.console.view import SEVERITY_ORDER, render
from app.web.guards import HTTPError
from app.web.state import services_of

log = logging.getLogger(__name__)

STATES = ("firing", "flapping", "resolved")
OVERVIEW_ROWS = 50
PAGE_DEFAULT = 50
PAGE_MAX = 200
NOTIFICATIONS_SHOWN = 50
RESOLVED_WINDOW = timedelta(hours=24)  # the overview counts alerts resolved this recently

Handler = Callable[[Request, float], Awaitable[Response]]


def page(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a page: read access, then ``fn``; errors become an HTML page, not a traceback."""

    async def handler(request: Request) -> Response:
        started = time.perf_counter()
        services = services_of(request)
        try:
            access.require_read(request, services.runtime().config.auth)
            return await fn(request, started)
        except HTTPError as exc:
            response = render(
                request, "error.html", started, status_code=exc.status_code, message=exc.message
            )
            response.headers.update(exc.headers)
            return response
        except queries.BadCursor as exc:
            return render(request, "error.html", started, status_code=400, message=str(exc))
        except Exception as exc:
            if is_unavailable(exc):
                return render(
                    request,
                    "error.html",
                    started,
                    status_code=503,
                    message="The database is unavailable; try again in a moment.",
                )
            raise

    return handler


def _choice(request: Request, name: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise HTTPError(400, f"{name}: must be one of {', '.join(allowed)}")
    return value


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit") or ""
    if not raw:
        return PAGE_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise HTTPError(400, f"limit: must be a number from 1 to {PAGE_MAX}")
    return int(raw)


def _with_receivers(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    services = services_of(request)
    runtime = services.runtime()
    now = services.clock.now()
    for item in items:
        item["receivers"] = list(runtime.route(item["labels"]).receivers)
        ack = item.get("ack")
        if ack is not None and ack["until"] is not None:
            # The lists are read without the clock; an ack past its "for" shows as expired.
            ack["active"] = datetime.fromisoformat(ack["until"]) > now
    return items


def _refresh_seconds(request: Request) -> int:
    raw = request.query_params.get("refresh") or ""
    return max(2, min(int(raw), 3600)) if raw.isdigit() else 15


@page
async def overview(request: Request, started: float) -> Response:
    services = services_of(request)
    async with services.db.read() as conn:
        counts = await console_reads.severity_counts(conn, services.clock.now() - RESOLVED_WINDOW)
        active, more = await console_reads.search_alerts(
            conn,
            state="active",
            severity=None,
            receiver=None,
            text=None,
            limit=OVERVIEW_ROWS,
            cursor=None,
        )
        outbox = await queries.outbox_counts(conn)
    severities = sorted(
        {s for by_sev in counts.values() for s in by_sev},
        key=lambda s: (SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 99, s),
    )
    return render(
        request,
        "overview.html",
        started,
        title="Overview",
        counts=counts,
        severities=severities,
        states=STATES,
        active=_with_receivers(request, active),
        more=more is not None,
        outbox=outbox,
        refresh=_refresh_seconds(request),
    )


@page
async def alert_list(request: Request, started: float) -> Response:
    services = services_of(request)
    runtime = services.runtime()
    receivers = [r.name for r in runtime.config.receivers]
    state = _choice(request, "state", STATES)
    receiver = _choice(request, "receiver", receivers)
    severity = (request.query_params.get("severity") or "").strip()[:64] or None
    text = (request.query_params.get("q") or "").strip()[:200] or None
    cursor = request.query_params.get("cursor") or None
    limit = _limit(request)
    async with services.db.read() as conn:
        items, next_cursor = await console_reads.search_alerts(
            conn,
            state=state,
            severity=severity,
            receiver=receiver,
            text=text,
            limit=limit,
            cursor=cursor,
        )
    filters = {
        "state": state,
        "severity": severity,
        "receiver": receiver,
        "q": text,
        "limit": str(limit) if limit != PAGE_DEFAULT else None,
    }
    return render(
        request,
        "alerts.html",
        started,
        title="Alerts",
        items=_with_receivers(request, items),
        next_cursor=next_cursor,
        paged=cursor is not None,
        filters=filters,
        # A filtered page looks at so many alerts at most (it may show fewer).
        partial=bool(severity or receiver or text)
        and next_cursor is not None
        and len(items) < limit,
        scan=console_reads.SCAN,
        states=STATES,
        severities=SEVERITY_ORDER,
        receivers=receivers,
    )


def _rendered(request: Request, note: dict[str, Any]) -> RenderedRequest | None:
    """The request this notification makes with the current config, secrets redacted."""
    services = services_of(request)
    runtime = services.runtime()
    key = integration_key(note["receiver"], note["integration"], note["integration_index"])
    integration = runtime.integrations.get(key)
    if integration is None:
        return None
    try:
        return render_integration(
            runtime,
            integration,
            note["payload"],
            services.http,  # prepare() builds the request; nothing is sent
            notification_id=note["id"],
            idempotency_key=note["idempotency_key"],
            attempt=max(1, note["attempts"]),
            message=note.get("message"),
        )
    except Exception as exc:
        # A notifier that cannot build the request shows why, by type only:
        # exception texts may quote a destination URL.
        log.warning("console could not render a notification", extra={"id": note["id"]})
        return RenderedRequest(key, error=f"could not be rendered ({type(exc).__name__})")


@page
async def alert_detail(request: Request, started: float) -> Response:
    services = services_of(request)
    fingerprint = request.path_params["fingerprint"]
    async with services.db.read() as conn:
        alert = await queries.get_alert(conn, fingerprint, now=services.clock.now())
        if alert is None:
            raise HTTPError(404, f"No alert with fingerprint {fingerprint[:32]!r}.")
        notes = await console_reads.alert_notifications(conn, fingerprint, NOTIFICATIONS_SHOWN)
    runtime = services.runtime()
    for note in notes:
        note["rendered"] = _rendered(request, note)
    alert["receivers"] = list(runtime.route(alert["labels"]).receivers)
    timeline = list(reversed(alert["transitions"]))  # oldest first: read as a story
    return render(
        request,
        "alert.html",
        started,
        title=alert["alertname"] or fingerprint,
        alert=alert,
        timeline=timeline,
        notifications=notes,
        admin=access.admin_state(request, runtime.config.auth),
        ack_result=ACK_RESULTS.get(request.query_params.get("ack", "")),
    )


# What the alert page says after an ack form (post/redirect/get): a code in
# the query, never free text, so a crafted link cannot make it say anything else.
ACK_RESULTS = {
    "done": ("ok", "Acknowledged."),
    "undone": ("ok", "Acknowledgement taken back."),
    "not_firing": ("bad", "Not acknowledged: the alert is resolved and not flapping."),
    "not_acked": ("bad", "The alert is not acknowledged."),
    "bad_for": ("bad", "Not acknowledged: 'for' must be a duration such as 30m or 2h."),
}
