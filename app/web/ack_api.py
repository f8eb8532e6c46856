"""``POST`` and ``DELETE /api/v1/alerts/{fingerprint}/ack``: acknowledge and take it back.

Both need the admin credential: the admin token or a named admin user
(``auth.admin_users``), whose name the audit log records. The body of a POST
is optional JSON ``{"by", "comment", "for"}``: ``by`` names the person when
the credential names nobody (the admin token), ``for`` is a duration such as
``30m`` after which reminders and escalation resume.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.config.fields import parse_duration
from app.oncall.acknowledge import AckResult, AckStatus, acknowledge, unacknowledge
from app.store.queries import ack_state
from app.web.access import authorize
from app.web.audit import actor_of
from app.web.guards import (
    HTTPError,
    database_answers,
    error_response,
    json_response,
    read_body,
    require_json,
)
from app.web.state import services_of

log = logging.getLogger(__name__)

_BODY_LIMIT = 16 * 1024
_MAX_FOR = timedelta(days=365)


def parse_for(raw: Any) -> timedelta | None:
    """An ack's ``for``: a positive duration up to a year, or None (no expiry)."""
    if raw is None or raw == "":
        return None
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise HTTPError(400, f"for: {exc}") from None
    if value <= timedelta(0) or value > _MAX_FOR:
        raise HTTPError(400, "for: must be more than 0 and at most 365d")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, _BODY_LIMIT)
    if not raw.strip():
        return {}
    require_json(request)
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPError(400, "body: not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(422, 'body: expected an object such as {"comment": "on it"}')
    unknown = sorted(set(data) - {"by", "comment", "for"})
    if unknown:
        raise HTTPError(422, f"body: unknown field {unknown[0]!r} (by, comment, for)")
    for name in ("by", "comment", "for"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise HTTPError(422, f"{name}: must be a string")
    return data


def ack_view(result: AckResult, now: datetime) -> dict[str, Any]:
    rec = result.record
    assert rec is not None
    return {
        "status": "acknowledged" if rec.ack_at is not None else "unacknowledged",
        "fingerprint": rec.fingerprint,
        "ack": ack_state(
            {
                "ack_at": rec.ack_at,
                "ack_by": rec.ack_by,
                "ack_via": rec.ack_via,
                "ack_comment": rec.ack_comment,
                "ack_until": rec.ack_until,
            },
            now,
        ),
        "notifications": result.notifications,
    }


def _refuse(result: AckResult, fingerprint: str) -> None:
    if result.status is AckStatus.NOT_FOUND:
        raise HTTPError(404, f"no alert with fingerprint {fingerprint[:32]!r}")
    if result.status is AckStatus.NOT_FIRING:
        raise HTTPError(409, "the alert is resolved and not flapping: nothing to acknowledge")
    if result.status is AckStatus.NOT_ACKED:
        raise HTTPError(409, "the alert is not acknowledged")


async def _answer(request: Request, change: Any, done: str) -> Response:
    """Run ``change(services, fingerprint, now)`` for the admin and answer with the ack's state."""
    services = services_of(request)
    fingerprint = request.path_params["fingerprint"]
    now = services.clock.now()
    try:
        authorize(request, "admin")
        with database_answers():
            result = await change(services, fingerprint, now)
        _refuse(result, fingerprint)
    except HTTPError as exc:
        return error_response(exc)
    services.wake_delivery.set()
    log.info(done, extra={"fingerprint": fingerprint, "via": "api"})
    return json_response(ack_view(result, now))


async def post_ack(request: Request) -> Response:
    async def change(services: Any, fingerprint: str, now: datetime) -> AckResult:
        data = await _body(request)
        duration = parse_for(data.get("for"))
        actor = actor_of(request)
        return await acknowledge(
            services.db,
            services.runtime(),
            fingerprint,
            now,
            actor=(data.get("by") or "").strip() or actor,
            credential=actor,
            via="api",
            comment=data.get("comment"),
            duration=duration,
            metrics=services.metrics,
        )

    return await _answer(request, change, "alert acknowledged")


async def delete_ack(request: Request) -> Response:
    async def change(services: Any, fingerprint: str, now: datetime) -> AckResult:
        return await unacknowledge(
            services.db, services.runtime(), fingerprint, now, actor=actor_of(request), via="api"
        )

    return await _answer(request, change, "alert unacknowledged")
