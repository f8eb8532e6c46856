"""``GET`` and ``POST /ack/{token}``: the one-click acknowledge link notifications carry.

GET only shows what the link would acknowledge, with a button: link
previews in chat and mail scanners fetch links, and a fetch must never
acknowledge. The button POSTs the form back with the console's CSRF token;
that acknowledges the occurrence the token names, as the receiver whose
message carried it (``via`` link).

Each refusal is a page of its own with a 4xx: a token we did not sign or
that was damaged (403), an expired one (410), one for an occurrence that is
over or an alert that resolved since (409), an alert no longer stored
(404), and links switched off (404).
"""

import time
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.config.fields import parse_duration
from app.core.ack import ackable
from app.core.acklink import LinkClaims, LinkError, read_token
from app.oncall.acknowledge import AckStatus, acknowledge, covers
from app.store import queries
from app.store.alerts import record_from_row
from app.store.engine import is_unavailable
from app.web.console import access
from app.web.console.view import render
from app.web.guards import HTTPError
from app.web.state import services_of

_MAX_FOR = timedelta(days=30)


class _Refused(Exception):
    def __init__(self, status: int, heading: str, message: str, alert: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.heading = heading
        self.message = message
        self.alert = alert


def _claims(request: Request) -> LinkClaims:
    services = services_of(request)
    links = services.runtime().config.ack_links()
    if links is None:
        raise _Refused(
            404,
            "Acknowledge links are off",
            "This alertrelay does not accept acknowledge links (external_url or "
            "auth.link_secret is not set). Use the console or the API.",
        )
    try:
        return read_token(links[1], request.path_params["token"], services.clock.now())
    except LinkError as exc:
        if exc.reason == "expired":
            raise _Refused(
                410,
                "This link has expired",
                "Acknowledge links work for a limited time. Open the alert in the console "
                "to acknowledge it.",
            ) from None
        raise _Refused(
            403,
            "This link is not valid",
            "The link is damaged or was not made by this alertrelay (or its secret has "
            "changed). Nothing was acknowledged.",
        ) from None


_OVER = (
    "This occurrence is over",
    "The link was for an earlier occurrence of this alert, which has ended; it fired again "
    "since. Use the link in the newer message, or the console.",
)
_RESOLVED = (
    "Already resolved",
    "The alert resolved after this message was sent: there is nothing to acknowledge.",
)
_GONE = ("Unknown alert", "This alert is no longer stored.")


async def _current(request: Request, claims: LinkClaims) -> tuple[dict[str, Any], AckStatus]:
    """The alert as the page shows it, and whether the link may act on it now
    (DONE) or why not (the same verdicts the acknowledge use case gives)."""
    services = services_of(request)
    async with services.db.read() as conn:
        raw = await queries.alert_row(conn, claims.fingerprint)
    if raw is None:
        raise _Refused(404, *_GONE)
    alert = queries.alert_summary(raw._mapping, services.clock.now())
    rec = record_from_row(raw)
    if not covers(rec, claims.occurrence):
        return alert, AckStatus.OTHER_OCCURRENCE
    if not ackable(rec):
        return alert, AckStatus.NOT_FIRING
    return alert, AckStatus.DONE


def _refusal(status: AckStatus, alert: dict[str, Any] | None) -> _Refused:
    if status is AckStatus.OTHER_OCCURRENCE:
        return _Refused(409, *_OVER, alert)
    if status is AckStatus.NOT_FIRING:
        return _Refused(409, *_RESOLVED, alert)
    return _Refused(404, *_GONE)


def _refused(request: Request, started: float, exc: _Refused, receiver: str = "") -> Response:
    return render(
        request,
        "ack.html",
        started,
        status_code=exc.status,
        title=exc.heading,
        heading=exc.heading,
        message=exc.message,
        alert=exc.alert,
        receiver=receiver,
        form=False,
        done=False,
    )


async def _guarded(request: Request, fn: Any) -> Response:
    started = time.perf_counter()
    try:
        result: Response = await fn(request, started)
        return result
    except _Refused as exc:
        return _refused(request, started, exc)
    except HTTPError as exc:
        return render(
            request,
            "ack.html",
            started,
            status_code=exc.status_code,
            title="Refused",
            heading="Refused",
            message=exc.message,
            alert=None,
            receiver="",
            form=False,
            done=False,
        )
    except Exception as exc:
        if is_unavailable(exc):
            return _refused(
                request,
                started,
                _Refused(503, "Try again", "The database is unavailable; try again in a moment."),
            )
        raise


async def _show(request: Request, started: float) -> Response:
    claims = _claims(request)
    alert, verdict = await _current(request, claims)
    if verdict is not AckStatus.DONE:
        raise _refusal(verdict, alert)
    name = alert["alertname"] or alert["fingerprint"]
    return render(
        request,
        "ack.html",
        started,
        title=f"Acknowledge {name}",
        heading=f"Acknowledge {name}?",
        message="",
        alert=alert,
        receiver=claims.receiver,
        form=True,
        done=False,
    )


def _duration(raw: str) -> timedelta | None:
    if not raw.strip():
        return None
    try:
        value = parse_duration(raw.strip())
    except ValueError:
        raise HTTPError(400, "For: use a duration such as 30m or 2h") from None
    if value <= timedelta(0) or value > _MAX_FOR:
        raise HTTPError(400, "For: must be more than 0 and at most 30d")
    return value


async def _act(request: Request, started: float) -> Response:
    services = services_of(request)
    claims = _claims(request)
    fields = await access.check_csrf(request)
    duration = _duration(fields.get("for", ""))
    result = await acknowledge(
        services.db,
        services.runtime(),
        claims.fingerprint,
        services.clock.now(),
        actor=claims.receiver,
        via="link",
        comment=fields.get("comment"),
        duration=duration,
        occurrence=claims.occurrence,
        receiver=claims.receiver,
        metrics=services.metrics,
    )
    alert, _verdict = await _current(request, claims)
    if result.status is not AckStatus.DONE:
        raise _refusal(result.status, alert)
    services.wake_delivery.set()
    name = alert["alertname"] or alert["fingerprint"]
    return render(
        request,
        "ack.html",
        started,
        title=f"Acknowledged {name}",
        heading=f"Acknowledged {name}",
        message=f"Acknowledged by {claims.receiver}. Reminders and escalation of this "
        "occurrence stop until it resolves"
        + (" or the time you gave runs out." if duration else "."),
        alert=alert,
        receiver=claims.receiver,
        form=False,
        done=True,
    )


async def show(request: Request) -> Response:
    return await _guarded(request, _show)


async def act(request: Request) -> Response:
    return await _guarded(request, _act)
