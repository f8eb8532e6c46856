"""Replaying a dead notification: the one use case behind the API and the CLI.

``POST /api/v1/notifications/{id}/replay`` and ``alertrelay dead-letters
--replay`` both call :func:`replay_dead`; they differ only in how they
report its :class:`~app.store.outbox.Replay` answer.
"""

from datetime import datetime

from app.store import outbox
from app.store.engine import Database
from app.store.outbox import Replay


async def replay_dead(db: Database, notification_id: int, now: datetime) -> Replay:
    """Put one dead notification back in line, in its own transaction.

    Replaying twice sends once; a dead firing notice that a later notice for
    the same alert and destination has settled is refused (superseded).
    """
    async with db.write() as conn:
        return await outbox.replay(conn, db.kind, notification_id, now)
