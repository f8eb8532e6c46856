"""``alertrelay ack`` and ``alertrelay unack``: acknowledge from a shell, on the database.

Like ``dead-letters``, they work on the configured database directly (no
running server needed) through the same use case as the API; the actor is
``cli`` unless ``--by`` names someone. The delivery loop of a running
``serve`` or ``worker`` sends what the ack queued (PagerDuty's acknowledge):
on PostgreSQL it is woken at once, on SQLite at its next poll.
"""

import sys
from datetime import timedelta

from app.cli.preflight import not_migrated_hint
from app.config.compiled import compile_config
from app.config.model import LoadedConfig
from app.oncall.acknowledge import AckResult, AckStatus, acknowledge, unacknowledge
from app.ops.clock import SystemClock
from app.store import audit, migrate
from app.store.engine import Database

EXIT_REFUSED = 1


def _describe(result: AckResult) -> str:
    rec = result.record
    assert rec is not None
    if rec.ack_at is None:
        return f"{rec.fingerprint}: acknowledgement taken back"
    parts = [f"{rec.fingerprint}: acknowledged by {rec.ack_by}"]
    if rec.ack_until is not None:
        parts.append(f"until {rec.ack_until.isoformat().replace('+00:00', 'Z')}")
    if rec.ack_comment:
        parts.append(f"({rec.ack_comment})")
    if result.notifications:
        parts.append(f"; {result.notifications} notification(s) queued")
    return " ".join(parts)


def _refusal(result: AckResult, fingerprint: str) -> str:
    return {
        AckStatus.NOT_FOUND: f"no alert with fingerprint {fingerprint!r}",
        AckStatus.NOT_FIRING: f"{fingerprint}: resolved and not flapping, nothing to acknowledge",
        AckStatus.NOT_ACKED: f"{fingerprint}: not acknowledged",
    }.get(result.status, f"{fingerprint}: {result.status.value}")


async def ack_command(
    database_url: str,
    loaded: LoadedConfig,
    fingerprint: str,
    *,
    undo: bool,
    by: str | None = None,
    duration: timedelta | None = None,
    comment: str | None = None,
) -> int:
    db = Database(database_url, busy_timeout_s=loaded.config.database.busy_timeout.total_seconds())
    runtime = compile_config(loaded)
    now = SystemClock().now()
    try:
        problem = await migrate.schema_problem(db)
        if problem is not None:
            print(not_migrated_hint(problem), file=sys.stderr)
            return EXIT_REFUSED
        actor = (by or "").strip() or audit.ACTOR_CLI
        if undo:
            result = await unacknowledge(
                db, runtime, fingerprint, now, actor=actor, via="cli", credential=audit.ACTOR_CLI
            )
        else:
            result = await acknowledge(
                db,
                runtime,
                fingerprint,
                now,
                actor=actor,
                credential=audit.ACTOR_CLI,
                via="cli",
                comment=comment,
                duration=duration,
            )
    finally:
        await db.dispose()
    if result.status is not AckStatus.DONE:
        print(_refusal(result, fingerprint), file=sys.stderr)
        return EXIT_REFUSED
    print(_describe(result))
    return 0
