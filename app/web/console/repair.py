"""Dead letters and replay, and signing in with the admin token.

Actions answer with a redirect to the page that shows their result
(post/redirect/get), so reloading that page never repeats the action.
"""

import logging
import re
from datetime import timedelta
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.config.fields import parse_duration
from app.delivery.replay import replay_dead
from app.oncall.acknowledge import AckStatus, acknowledge, unacknowledge
from app.store import console_reads, outbox
from app.store.outbox import ReplayStatus
from app.web.audit import actor_of
from app.web.console import access
from app.web.console.pages import page
from app.web.console.view import render
from app.web.guards import HTTPError
from app.web.state import services_of

log = logging.getLogger(__name__)

DEAD_PAGE = 50
SHOWN_RESULTS = 50  # replayed ids listed on the result page; the rest are counted
SHOWN_SKIPPED = 10


def _count(raw: str) -> int:
    return int(raw) if raw.isdigit() and len(raw) < 10 else 0


def _ids(raw: str) -> list[int]:
    return [int(p) for p in raw.split(",")[:SHOWN_RESULTS] if p.isdigit() and len(p) < 19]


@page
async def dead_letters(request: Request, started: float) -> Response:
    services = services_of(request)
    cursor = request.query_params.get("cursor") or None
    replayed = _ids(request.query_params.get("replayed", ""))
    async with services.db.read() as conn:
        items, next_cursor = await console_reads.dead_letters(conn, limit=DEAD_PAGE, cursor=cursor)
        watched = await console_reads.notifications_by_id(conn, replayed)
    params = request.query_params
    return render(
        request,
        "dead_letters.html",
        started,
        title="Dead letters",
        items=items,
        next_cursor=next_cursor,
        paged=cursor is not None,
        watched=watched,
        requeued=_count(params.get("requeued", "")),
        skipped="; ".join(
            skipped_text(params.get("skipped", ""), _count(params.get("more_skipped", "")))
        ),
        admin=access.admin_state(request, services.runtime().config.auth),
    )


async def _replay(request: Request, ids: list[int]) -> tuple[list[int], list[str]]:
    services = services_of(request)
    requeued: list[int] = []
    skipped: list[str] = []
    actor = _actor(request)
    for nid in ids:
        result = await replay_dead(
            services.db, nid, services.clock.now(), actor=actor, via="console"
        )
        if result.status is ReplayStatus.REQUEUED:
            requeued.append(nid)
        elif result.status is ReplayStatus.SUPERSEDED:
            skipped.append(f"{nid}:superseded:{result.superseded_by}")
        else:
            skipped.append(f"{nid}:{result.status.value}")
    if requeued:
        services.wake_delivery.set()
    log.info("console replay", extra={"requeued": len(requeued), "skipped": len(skipped)})
    return requeued, skipped


def _result(requeued: list[int], skipped: list[str]) -> RedirectResponse:
    # The result page reads ids and status codes back, never free text, so a
    # crafted link cannot make the page say anything else.
    query = urlencode(
        {
            "replayed": ",".join(str(i) for i in requeued[:SHOWN_RESULTS]),
            "requeued": str(len(requeued)),
            "skipped": ",".join(skipped[:SHOWN_SKIPPED]),
            "more_skipped": str(max(0, len(skipped) - SHOWN_SKIPPED)),
        }
    )
    return RedirectResponse(f"/dead-letters?{query}", status_code=303)


_SKIP = re.compile(r"^(\d{1,18}):(superseded|not_found|not_dead)(?::(\d{1,18}))?$")


def skipped_text(raw: str, more: int) -> list[str]:
    """``7:superseded:9,8:not_dead`` as sentences."""
    out = []
    for item in raw.split(",")[:SHOWN_SKIPPED]:
        m = _SKIP.match(item)
        if m is None:
            continue
        nid, status, by = m.groups()
        if status == "superseded" and by:
            out.append(f"#{nid} is superseded by #{by} (a later notification for the same alert)")
        elif status == "not_found":
            out.append(f"#{nid} was not found")
        else:
            out.append(f"#{nid} is not dead (already replayed or delivered)")
    if more > 0:
        out.append(f"and {more} more")
    return out


def _actor(request: Request) -> str:
    auth = services_of(request).runtime().config.auth
    return access.acting_admin(request, auth) or actor_of(request)


async def _action(request: Request) -> None:
    await access.check_csrf(request)
    access.require_admin(request, services_of(request).runtime().config.auth)


@page
async def replay_one(request: Request, started: float) -> Response:
    await _action(request)
    raw = request.path_params["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise HTTPError(404, "No such notification.")
    requeued, skipped = await _replay(request, [int(raw)])
    return _result(requeued, skipped)


@page
async def replay_all(request: Request, started: float) -> Response:
    await _action(request)
    services = services_of(request)
    async with services.db.read() as conn:
        ids = await outbox.dead_ids(conn)
    requeued, skipped = await _replay(request, ids)
    return _result(requeued, skipped)


@page
async def sign_in(request: Request, started: float) -> Response:
    fields = await access.check_csrf(request)
    auth = services_of(request).runtime().config.auth
    target = access.safe_next(fields.get("next"))
    response: Response = RedirectResponse(target, status_code=303)
    if not access.sign_in(request, auth, fields.get("admin_token", ""), response):
        log.warning("console sign-in refused")
        return render(
            request,
            "error.html",
            started,
            status_code=401,
            message="That is not the admin token.",
            back=target,
        )
    return response


@page
async def sign_out(request: Request, started: float) -> Response:
    fields = await access.check_csrf(request)
    response = RedirectResponse(access.safe_next(fields.get("next")), status_code=303)
    access.sign_out(response)
    return response


async def _ack_action(request: Request, undo: bool) -> Response:
    """The alert page's ack and un-ack forms; the answer redirects back to the page."""
    fields = await access.check_csrf(request)
    services = services_of(request)
    runtime = services.runtime()
    access.require_admin(request, runtime.config.auth)
    fingerprint = request.path_params["fingerprint"]
    back = f"/alerts/{quote(fingerprint, safe='')}"
    actor = _actor(request)
    now = services.clock.now()
    if undo:
        result = await unacknowledge(
            services.db, runtime, fingerprint, now, actor=actor, via="console"
        )
    else:
        try:
            duration = _ack_for(fields.get("for", ""))
        except ValueError:
            return RedirectResponse(f"{back}?ack=bad_for#ack-h", status_code=303)
        result = await acknowledge(
            services.db,
            runtime,
            fingerprint,
            now,
            actor=actor,
            via="console",
            comment=fields.get("comment"),
            duration=duration,
            metrics=services.metrics,
        )
    if result.status is AckStatus.NOT_FOUND:
        raise HTTPError(404, f"No alert with fingerprint {fingerprint[:32]!r}.")
    if result.status is AckStatus.DONE:
        services.wake_delivery.set()
        code = "undone" if undo else "done"
    else:
        code = result.status.value
    return RedirectResponse(f"{back}?ack={code}#ack-h", status_code=303)


def _ack_for(raw: str) -> timedelta | None:
    if not raw.strip():
        return None
    value = parse_duration(raw.strip())
    if value <= timedelta(0) or value > timedelta(days=365):
        raise ValueError("out of range")
    return value


@page
async def ack(request: Request, started: float) -> Response:
    return await _ack_action(request, undo=False)


@page
async def unack(request: Request, started: float) -> Response:
    return await _ack_action(request, undo=True)
