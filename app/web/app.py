"""``create_app``: the ASGI application and everything it owns.

Nothing is built at import time. The lifespan opens the database, starts the
ingest batcher and the background loops, and tears them down in reverse;
each test builds a fresh app.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from app.bootstrap import assemble, close, make_tracer
from app.config.model import LoadedConfig
from app.config.settings import Settings, effective
from app.ops.clock import Clock
from app.web import api, audit, console, health, heartbeats, webhook
from app.web.access import AuthBackoff, ReadGuard, exposure_warnings
from app.web.middleware import DirectPosts, RequestMiddleware

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    loaded: LoadedConfig,
    *,
    clock: Clock | None = None,
    handle_sighup: bool = False,
    background: bool = True,
) -> Starlette:
    """Build the app. ``background=False`` leaves the sweeper and delivery
    loops to be driven by hand (tests with a manual clock)."""
    tracer = make_tracer(settings)
    access_log = effective(settings, loaded.config).access_log

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await assemble(settings, loaded, clock=clock, tracer=tracer)
        app.state.services = services
        services.ingest.start()
        if background:
            services.tasks.append(
                asyncio.create_task(services.sweeper.run(services.stopping), name="sweeper")
            )
            services.tasks.append(
                asyncio.create_task(services.delivery.run(services.stopping), name="delivery")
            )
            # Other replicas and `alertrelay worker` queue rows too; their
            # commits wake this loop through NOTIFY, not only the poll.
            services.listen_for_other_processes()
        loop = asyncio.get_running_loop()
        if handle_sighup:
            loop.add_signal_handler(
                signal.SIGHUP,
                lambda: services.tasks.append(asyncio.ensure_future(services.reload_on_signal())),
            )
        for warning in exposure_warnings(services.effective.host, loaded.config.auth):
            log.warning(warning)
        log.info(
            "alertrelay started",
            extra={
                "config": loaded.source,
                "config_version": loaded.version,
                "db": services.db.kind,
            },
        )
        try:
            yield
        finally:
            if handle_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await services.ingest.stop()
            services.stopping.set()
            for task in services.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close(services)

    webhook_routes = [
        Route("/webhook/alertmanager", webhook.alertmanager, methods=["POST"]),
        Route("/webhook/grafana", webhook.grafana, methods=["POST"]),
    ]
    routes = [
        *webhook_routes,
        *api.routes,
        *audit.routes,
        *heartbeats.routes,
        *health.routes,
        *console.routes,
    ]
    app = Starlette(
        debug=False,
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestMiddleware, tracer=tracer, access_log=access_log),
            Middleware(DirectPosts, routes=webhook_routes),
            Middleware(ReadGuard),
        ],
    )
    # Per process, like the metrics: which clients are backing off.
    app.state.auth_backoff = AuthBackoff()
    return app
