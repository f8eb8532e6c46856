"""Replaying a dead notification: the one use case behind the API, the CLI and the console.

``POST /api/v1/notifications/{id}/replay``, ``alertrelay dead-letters
--replay`` and the console's replay buttons call :func:`replay_dead`; they
differ only in who they name as the actor and in how they report its
:class:`~app.store.outbox.Replay`.
"""

from datetime import datetime

from app.store import audit, outbox
from app.store.engine import Database
from app.store.outbox import Replay


async def replay_dead(
    db: Database, notification_id: int, now: datetime, *, actor: str, via: str
) -> Replay:
    """Put one dead notification back in line, with its audit entry.

    Replaying twice sends once; a dead firing notice that a later notice for
    the same alert and destination has settled is refused (superseded).
    """
    async with db.write() as conn:
        result = await outbox.replay(conn, db.kind, notification_id, now)
        # In the replay's own transaction: no replay without its entry.
        await audit.record(
            conn,
            at=now,
            actor=actor,
            action=audit.Action.REPLAY,
            target=f"notification/{notification_id}",
            outcome=result.status.value,
            details={"via": via}
            | ({"superseded_by": result.superseded_by} if result.superseded_by else {}),
        )
    return result
