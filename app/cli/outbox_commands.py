"""``alertrelay worker`` and ``alertrelay dead-letters``: the outbox without the HTTP server."""

import asyncio
import contextlib
import logging
import signal
import sys

from app.bootstrap import assemble, close
from app.cli.preflight import not_migrated_hint
from app.config.model import LoadedConfig
from app.config.settings import Settings
from app.core.domain import NotificationStatus, integration_key
from app.delivery.replay import replay_dead
from app.ops.clock import Clock, SystemClock
from app.store import audit, migrate, outbox, queries
from app.store.engine import Database
from app.store.outbox import ReplayStatus

log = logging.getLogger("alertrelay.worker")


async def run_worker(settings: Settings, loaded: LoadedConfig) -> int:
    """Deliver and sweep until SIGTERM or SIGINT; SIGHUP reloads the config."""
    services = await assemble(settings, loaded)
    stop = asyncio.Event()
    reloads: list[asyncio.Task[None]] = []

    def reload() -> None:
        details: dict[str, object] = {"via": "SIGHUP"}
        try:
            services.holder.reload()
            log.info(
                "config reloaded",
                extra={"config_version": services.holder.current.loaded.version},
            )
            outcome = "ok"
        except Exception as exc:
            log.error("config reload refused", extra={"error": str(exc)[:500]})
            outcome = "refused"
            details["errors"] = len(getattr(exc, "errors", [None]))
        details["config_version"] = services.holder.current.loaded.version
        reloads.append(
            asyncio.ensure_future(_audit_reload(services.db, services.clock, outcome, details))
        )

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    log.info(
        "alertrelay worker started",
        extra={
            "db": services.db.kind,
            "config": loaded.source,
            "config_version": loaded.version,
            "version": services.version.version,
            "worker_id": services.delivery.worker_id,
        },
    )
    # Ingest runs in other processes: on PostgreSQL their commits wake this
    # loop through NOTIFY; the poll is the fallback.
    services.listen_for_other_processes()
    try:
        await asyncio.gather(services.delivery.run(stop), services.sweeper.run(stop))
        await asyncio.gather(*reloads, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await close(services)
        log.info("alertrelay worker stopped", extra={"signal": stop.is_set()})
    return 0


async def _audit_reload(
    db: Database, clock: Clock, outcome: str, details: dict[str, object]
) -> None:
    try:
        async with db.write() as conn:
            await audit.record(
                conn,
                at=clock.now(),
                actor=audit.ACTOR_SIGNAL,
                action=audit.Action.RELOAD,
                target="config",
                outcome=outcome,
                details=details,
            )
    except Exception as exc:
        log.error("audit entry not written", extra={"error": type(exc).__name__})


async def dead_letters(
    database_url: str, loaded: LoadedConfig, *, replay: int | None, replay_all: bool
) -> int:
    """List dead notifications, or replay one or all; 1 when anything asked for was not done."""
    db = Database(database_url, busy_timeout_s=loaded.config.database.busy_timeout.total_seconds())
    clock = SystemClock()
    try:
        problem = await migrate.schema_problem(db)
        if problem is not None:
            print(not_migrated_hint(problem), file=sys.stderr)
            return 1
        if replay is None and not replay_all:
            return await _list_dead(db)
        async with db.read() as conn:
            ids = [replay] if replay is not None else await outbox.dead_ids(conn)
        if not ids:
            print("no dead notifications")
        failed = 0
        for nid in ids:
            result = await replay_dead(db, nid, clock.now(), actor=audit.ACTOR_CLI, via="cli")
            if result.status is ReplayStatus.REQUEUED:
                print(f"{nid}: requeued")
            elif result.status is ReplayStatus.SUPERSEDED:
                # Asked for by id it is a refusal; in --replay-all it is expected.
                print(
                    f"{nid}: not replayed, superseded by notification {result.superseded_by}"
                    " (a later notification for the same alert and destination exists)",
                    file=sys.stderr if replay is not None else sys.stdout,
                )
                failed += replay is not None
            elif result.status is ReplayStatus.NOT_FOUND:
                print(f"notification {nid} not found", file=sys.stderr)
                failed += 1
            else:
                print(
                    f"notification {nid} is not dead (already replayed or delivered)",
                    file=sys.stderr,
                )
                failed += 1
        return 1 if failed else 0
    finally:
        await db.dispose()


_LIST_LIMIT = 1000


async def _list_dead(db: Database) -> int:
    async with db.read() as conn:
        rows, more = await queries.list_notifications(
            conn,
            status=NotificationStatus.DEAD.value,
            fingerprint=None,
            limit=_LIST_LIMIT,
            cursor=None,
        )
    if not rows:
        print("no dead notifications")
    for n in rows:
        where = integration_key(n["receiver"], n["integration"], n["integration_index"])
        print(
            f"{n['id']:>8}  {n['dead_at']}  {where}  {n['kind']:<9} {n['fingerprint']}"
            f"  attempts={n['attempts']}  {n['last_error'] or ''}"
        )
    if more is not None:
        print(
            f"showing the newest {_LIST_LIMIT} dead notifications; more exist "
            "(GET /api/v1/notifications?status=dead pages through all)",
            file=sys.stderr,
        )
    return 0
