"""The one place alertrelay's services are assembled, for ``serve`` and ``worker`` alike.

:func:`assemble` opens the database and builds the compiled config, the
metrics, the HTTP client and the three loops (ingest, delivery, sweeper)
around one wake-up event; :func:`close` releases what it opened. ``serve``
starts all three loops and answers HTTP; ``worker`` starts delivery and the
sweeper only. Nothing is built at import time.
"""

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from app.config.compiled import CompiledConfig, ConfigHolder, compile_config
from app.config.model import ConfigError, LoadedConfig
from app.config.settings import Effective, Settings, effective
from app.delivery.worker import DeliveryWorker, default_worker_id
from app.ingest.service import IngestService
from app.notifiers.http import make_client
from app.ops.clock import Clock, SystemClock
from app.ops.metrics import Metrics
from app.ops.tracing import Tracer, tracer_from_env
from app.ops.version import VersionInfo, version_info
from app.store import audit
from app.store.engine import Database
from app.store.migrate import head_revision
from app.store.wakeup import OutboxListener
from app.sweeper.loop import Sweeper

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What request handlers and loops share (handlers reach it through
    :func:`app.web.state.services_of`)."""

    settings: Settings
    effective: Effective
    db: Database
    clock: Clock
    metrics: Metrics
    holder: ConfigHolder
    ingest: IngestService
    sweeper: Sweeper
    delivery: DeliveryWorker
    http: httpx.AsyncClient
    version: VersionInfo
    head_revision: str
    started_at: datetime
    tracer: Tracer
    wake_delivery: asyncio.Event = field(default_factory=asyncio.Event)
    listener: OutboxListener | None = None  # PostgreSQL: rows queued by other processes
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def runtime(self) -> CompiledConfig:
        return self.holder.current

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

    async def record_audit(self, actor: str, action: audit.Action, **fields: Any) -> None:
        """Write one audit entry in its own transaction (for actions that are not
        a database change, such as a reload). A database that is down loses the
        entry, not the action: that is logged."""
        try:
            async with self.db.write() as conn:
                await audit.record(conn, at=self.clock.now(), actor=actor, action=action, **fields)
        except Exception as exc:
            log.error(
                "audit entry not written",
                extra={"action": action.value, "actor": actor, "error": type(exc).__name__},
            )

    async def reload_on_signal(self) -> None:
        """What SIGHUP runs in ``serve``: reload, and record it in the audit log."""
        ok, message = self.reload()
        await self.record_audit(
            audit.ACTOR_SIGNAL,
            audit.Action.RELOAD,
            target="config",
            outcome="ok" if ok else "refused",
            details=self.reload_details(ok, message) | {"via": "SIGHUP"},
        )

    def listen_for_other_processes(self) -> None:
        """On PostgreSQL, wake delivery when another process queues rows (NOTIFY);
        the poll stays the fallback."""
        if self.db.kind == "postgresql" and self.listener is None:
            self.listener = OutboxListener(self.effective.database_url, self.wake_delivery)
            self.listener.start()


def make_tracer(settings: Settings) -> Tracer:
    return tracer_from_env(
        os.environ, version_info(settings.git_commit, settings.build_time).version
    )


async def assemble(
    settings: Settings,
    loaded: LoadedConfig,
    *,
    clock: Clock | None = None,
    tracer: Tracer | None = None,
) -> Services:
    """Open the database and build every service; nothing starts running yet."""
    eff = effective(settings, loaded.config)
    clock = clock or SystemClock()
    tracer = tracer or make_tracer(settings)
    vinfo = version_info(settings.git_commit, settings.build_time)
    metrics = Metrics(vinfo.version, vinfo.git_commit)
    db = Database(
        eff.database_url,
        busy_timeout_s=loaded.config.database.busy_timeout.total_seconds(),
        pool_size=loaded.config.database.pool_size,
    )
    await db.check()
    holder = ConfigHolder(compile_config(loaded), settings.config)
    wake = asyncio.Event()
    ingest = IngestService(db, lambda: holder.current, clock, metrics, on_notifications=wake.set)
    sweeper = Sweeper(db, lambda: holder.current, clock, metrics, on_notifications=wake.set)
    ingest.on_heartbeat_back = sweeper.wake
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
    return Services(
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
        tracer=tracer,
        wake_delivery=wake,
    )


async def close(services: Services) -> None:
    """Release what :func:`assemble` opened (the loops must have stopped)."""
    if services.listener is not None:
        await services.listener.stop()
    await services.http.aclose()
    await services.db.dispose()
    services.tracer.shutdown()
