"""Health, readiness, liveness, version, metrics and the OpenAPI document."""

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.store import queries
from app.store.migrate import current_revision
from app.web.access import exposure_warnings
from app.web.openapi import OPENAPI
from app.web.state import services_of

log = logging.getLogger(__name__)

_CHECK_TIMEOUT_S = 2.0


async def _database_state(request: Request) -> dict[str, Any]:
    services = services_of(request)
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            latency = await services.db.ping()
            async with services.db.read() as conn:
                revision = await current_revision(conn)
                counts = await queries.outbox_counts(conn)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {
        "ok": True,
        "latency_ms": round(latency * 1000, 2),
        "revision": revision,
        "at_head": revision == services.head_revision,
        "outbox": counts,
    }


def _write_problem(request: Request) -> str | None:
    failure = services_of(request).db.write_failure
    if failure is None:
        return None
    since = failure.at.isoformat(timespec="seconds")
    return f"database writes failing (last at {since}): {failure.error}"


async def health(request: Request) -> Response:
    services = services_of(request)
    db = await _database_state(request)
    status = "healthy" if db["ok"] else "unhealthy"
    code = 200 if db["ok"] else 503
    write_problem = _write_problem(request)
    if write_problem is not None and db["ok"]:
        # Reads work, writes do not (a full disk): webhooks are being refused.
        status, code = "degraded", 503
        db["writes"] = write_problem
    if request.query_params.get("detailed") not in ("true", "1", "yes"):
        short: dict[str, str] = {"status": status}
        if write_problem is not None:
            short["reason"] = write_problem
        return JSONResponse(short, status_code=code)
    runtime = services.runtime()
    outbox = db.pop("outbox", {})
    body = {
        "status": status,
        "database": {"kind": services.db.kind, **db},
        "delivery": {
            "backlog": outbox.get("pending", 0) + outbox.get("in_flight", 0),
            "pending": outbox.get("pending", 0),
            "in_flight": outbox.get("in_flight", 0),
            "dead_letters": outbox.get("dead", 0),
        },
        "config": {"source": runtime.loaded.source, "version": runtime.loaded.version},
        "warnings": exposure_warnings(services.effective.host, runtime.config.auth),
        "version": services.version.as_dict(),
        "started_at": services.started_at.isoformat(),
    }
    return JSONResponse(body, status_code=code)


async def live(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    db = await _database_state(request)
    problems = []
    if not db["ok"]:
        problems.append("database unreachable")
    elif (write_problem := _write_problem(request)) is not None:
        problems.append(write_problem)
    elif not db["at_head"]:
        problems.append(f"database schema at {db['revision']}, not at head")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


async def version(request: Request) -> Response:
    return JSONResponse(services_of(request).version.as_dict())


async def metrics(request: Request) -> Response:
    services = services_of(request)
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            async with services.db.read() as conn:
                counts = await queries.outbox_counts(conn)
                flapping = await queries.flapping_count(conn)
        services.metrics.outbox_pending.set(counts["pending"] + counts["in_flight"])
        services.metrics.outbox_dead.set(counts["dead"])
        services.metrics.flapping.set(flapping)
    except Exception as exc:  # keep serving the last known values
        log.warning("metrics: database counts unavailable", extra={"error": type(exc).__name__})
    return Response(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/live", live, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    # Alertmanager's and Prometheus's own paths, so probes written for them work.
    Route("/-/healthy", live, methods=["GET"]),
    Route("/-/ready", ready, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
