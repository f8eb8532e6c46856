"""``alertrelay worker`` and ``alertrelay dead-letters``: the outbox without the HTTP server."""

import asyncio
import contextlib
import logging
import os
import signal
import sys

from app.clock import SystemClock
from app.config import LoadedConfig
from app.delivery import DeliveryWorker, default_worker_id
from app.domain import NotificationStatus
from app.metrics import Metrics
from app.notifiers.http import make_client
from app.runtime import RuntimeHolder, build_runtime
from app.settings import Settings, effective
from app.store import outbox, queries
from app.store.engine import Database
from app.store.outbox import ReplayStatus
from app.sweeper import Sweeper
from app.tracing import tracer_from_env
from app.version import version_info

log = logging.getLogger("alertrelay.worker")


async def run_worker(settings: Settings, loaded: LoadedConfig) -> int:
    """Deliver and sweep until SIGTERM or SIGINT; SIGHUP reloads the config."""
    eff = effective(settings, loaded.config)
    config = loaded.config
    db = Database(
        eff.database_url,
        busy_timeout_s=config.database.busy_timeout.total_seconds(),
        pool_size=config.database.pool_size,
    )
    await db.check()
    vinfo = version_info(settings.git_commit, settings.build_time)
    metrics = Metrics(vinfo.version, vinfo.git_commit)
    holder = RuntimeHolder(build_runtime(loaded), settings.config)
    clock = SystemClock()
    wake = asyncio.Event()
    stop = asyncio.Event()
    http = make_client(config.global_.proxy_url)
    tracer = tracer_from_env(os.environ, vinfo.version)
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
    sweeper = Sweeper(db, lambda: holder.current, clock, metrics, on_notifications=wake.set)

    def reload() -> None:
        try:
            holder.reload()
            log.info("config reloaded")
        except Exception as exc:
            log.error("config reload refused", extra={"error": str(exc)[:500]})

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    log.info("alertrelay worker started", extra={"db": db.kind, "config": loaded.source})
    try:
        await asyncio.gather(delivery.run(stop), sweeper.run(stop))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await http.aclose()
        await db.dispose()
        tracer.shutdown()
    return 0


async def dead_letters(
    database_url: str, loaded: LoadedConfig, *, replay: int | None, replay_all: bool
) -> int:
    db = Database(database_url, busy_timeout_s=loaded.config.database.busy_timeout.total_seconds())
    clock = SystemClock()
    try:
        if replay is None and not replay_all:
            async with db.read() as conn:
                rows, _ = await queries.list_notifications(
                    conn,
                    status=NotificationStatus.DEAD.value,
                    fingerprint=None,
                    limit=1000,
                    cursor=None,
                )
            if not rows:
                print("no dead notifications")
            for n in rows:
                where = f"{n['receiver']}/{n['integration']}/{n['integration_index']}"
                print(
                    f"{n['id']:>8}  {n['dead_at']}  {where}  {n['kind']:<9} {n['fingerprint']}"
                    f"  attempts={n['attempts']}  {n['last_error'] or ''}"
                )
            return 0
        async with db.read() as conn:
            ids = [replay] if replay is not None else await outbox.dead_ids(conn)
        failed = 0
        for nid in ids:
            async with db.write() as conn:
                result = await outbox.replay(conn, db.kind, nid, clock.now())
            if result.status is ReplayStatus.REQUEUED:
                print(f"{nid}: requeued")
            elif result.status is ReplayStatus.SUPERSEDED:
                print(f"{nid}: not replayed, superseded by notification {result.superseded_by}")
                failed += replay is not None
            else:
                print(
                    f"{nid}: not replayed ({result.status.value.replace('_', ' ')})",
                    file=sys.stderr,
                )
                failed += 1
        return 1 if failed else 0
    finally:
        await db.dispose()
