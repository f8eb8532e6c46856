"""``create_app``: the ASGI application and everything it owns.

Nothing is built at import time. The lifespan opens the database, starts the
ingest batcher and the background loops, and tears them down in reverse;
each test builds a fresh app.
"""

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from app.config.compiled import Runtime, RuntimeHolder, build_runtime
from app.config.model import ConfigError, LoadedConfig
from app.config.settings import Effective, Settings, effective
from app.delivery.worker import DeliveryWorker, default_worker_id
from app.ingest.service import IngestService
from app.notifiers.http import make_client
from app.ops.clock import Clock, SystemClock
from app.ops.metrics import Metrics
from app.ops.tracing import tracer_from_env
from app.ops.version import VersionInfo, version_info
from app.store.audit import ACTOR_SIGNAL, Action
from app.store.engine import Database
from app.store.migrate import head_revision
from app.store.wakeup import OutboxListener
from app.sweeper import Sweeper
from app.web import api, audit, console, health, webhook
from app.web.access import AuthBackoff, ReadGuard, exposure_warnings
from app.web.audit import record_for as record_audit_for
from app.web.middleware import RequestMiddleware

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What request handlers and loops reach through ``request.app.state.services``."""

    settings: Settings
    effective: Effective
    db: Database
    clock: Clock
    metrics: Metrics
    holder: RuntimeHolder
    ingest: IngestService
    sweeper: Sweeper
    delivery: DeliveryWorker
    http: httpx.AsyncClient
    version: VersionInfo
    head_revision: str
    started_at: datetime
    wake_delivery: asyncio.Event = field(default_factory=asyncio.Event)
    auth_backoff: AuthBackoff = field(default_factory=AuthBackoff)
    listener: OutboxListener | None = None  # PostgreSQL: rows queued by other processes
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def runtime(self) -> Runtime:
        return self.holder.current

    def warnings(self) -> list[str]:
        return exposure_warnings(self.effective.host, self.runtime().config.auth)

    def reload(self) -> tuple[bool, str]:
        """Reload the config file; on error the old config stays in force."""
        try:
            runtime = self.holder.reload()
        except ConfigError as exc:
            self.metrics.config_reloads.labels(result="failure").inc()
            log.error("config reload refused", extra={"errors": exc.errors})
            return False, "\n".join(exc.errors)
        self.metrics.config_reloads.labels(result="success").inc()
        log.info("config reloaded", extra={"version": runtime.loaded.version})
        return True, runtime.loaded.summary()

    def reload_details(self, ok: bool, message: str) -> dict[str, Any]:
        """What the audit log keeps about a reload: the version now in force
        and, when refused, how many problems the file had (not their text,
        which may quote the file)."""
        details: dict[str, Any] = {"config_version": self.runtime().loaded.version}
        if not ok:
            details["errors"] = len(message.splitlines())
        return details

    async def reload_on_signal(self) -> None:
        ok, message = self.reload()
        await record_audit_for(
            self,
            ACTOR_SIGNAL,
            Action.RELOAD,
            target="config",
            outcome="ok" if ok else "refused",
            details=self.reload_details(ok, message) | {"via": "SIGHUP"},
        )


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
    eff = effective(settings, loaded.config)
    clock = clock or SystemClock()
    tracer = tracer_from_env(
        os.environ, version_info(settings.git_commit, settings.build_time).version
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        vinfo = version_info(settings.git_commit, settings.build_time)
        metrics = Metrics(vinfo.version, vinfo.git_commit)
        db = Database(
            eff.database_url,
            busy_timeout_s=loaded.config.database.busy_timeout.total_seconds(),
            pool_size=loaded.config.database.pool_size,
        )
        await db.check()
        holder = RuntimeHolder(build_runtime(loaded), settings.config)
        wake = asyncio.Event()
        ingest = IngestService(
            db, lambda: holder.current, clock, metrics, on_notifications=wake.set
        )
        sweeper = Sweeper(db, lambda: holder.current, clock, metrics, on_notifications=wake.set)
        http = make_client(loaded.config.global_.proxy_url)
        delivery = DeliveryWorker(
            db,
            lambda: holder.current,
            clock,
            metrics,
            http,
            worker_id=settings.worker_id or default_worker_id(),
            wake=wake,
            version=vinfo.version,
            tracer=tracer,
        )
        services = Services(
            settings=settings,
            effective=eff,
            db=db,
            clock=clock,
            metrics=metrics,
            holder=holder,
            ingest=ingest,
            sweeper=sweeper,
            delivery=delivery,
            http=http,
            version=vinfo,
            head_revision=head_revision(),
            started_at=clock.now(),
            wake_delivery=wake,
        )
        app.state.services = services
        ingest.start()
        if background:
            services.tasks.append(
                asyncio.create_task(sweeper.run(services.stopping), name="sweeper")
            )
            services.tasks.append(
                asyncio.create_task(delivery.run(services.stopping), name="delivery")
            )
            if db.kind == "postgresql":
                # Other replicas and `alertrelay worker` queue rows too; their
                # commits wake this loop through NOTIFY, not only the poll.
                services.listener = OutboxListener(eff.database_url, wake)
                services.listener.start()
        loop = asyncio.get_running_loop()
        if handle_sighup:
            loop.add_signal_handler(
                signal.SIGHUP,
                lambda: services.tasks.append(asyncio.ensure_future(services.reload_on_signal())),
            )
        for warning in services.warnings():
            log.warning(warning)
        log.info(
            "alertrelay started",
            extra={"config": loaded.source, "config_version": loaded.version, "db": db.kind},
        )
        try:
            yield
        finally:
            if handle_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await ingest.stop()
            services.stopping.set()
            for task in services.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if services.listener is not None:
                await services.listener.stop()
            await http.aclose()
            await db.dispose()
            tracer.shutdown()

    routes = [
        Route("/webhook/alertmanager", webhook.alertmanager, methods=["POST"]),
        Route("/webhook/grafana", webhook.grafana, methods=["POST"]),
        *api.routes,
        *audit.routes,
        *health.routes,
        *console.routes,
    ]
    return Starlette(
        debug=False,
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestMiddleware, tracer=tracer), Middleware(ReadGuard)],
    )
