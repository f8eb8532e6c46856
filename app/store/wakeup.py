"""Cross-process wake-up for the delivery loop: PostgreSQL LISTEN/NOTIFY.

Inside one process ingest wakes the delivery loop through an asyncio.Event.
A delivery-only ``alertrelay worker`` or another replica on the same
PostgreSQL would only find new rows by its poll, so every transaction that
queues notifications also runs ``pg_notify`` (:func:`notify_outbox`) and each
delivery process keeps one connection listening (:class:`OutboxListener`).
NOTIFY is transactional: it is delivered on commit and dropped on rollback,
so a listener never wakes for rows it cannot see yet.

The listener is only a shortcut. While its connection is down the poll still
finds every row; after each (re)connect it wakes the loop once to pick up
what was committed while nobody listened. SQLite has no counterpart: one
process owns the file and the in-process event is enough.
"""

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.engine import redact_url, sync_url

log = logging.getLogger(__name__)

CHANNEL = "alertrelay_outbox"

_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


async def notify_outbox(conn: AsyncConnection) -> None:
    """Tell every listener, on commit of ``conn``'s transaction, that rows are due.

    PostgreSQL only; PostgreSQL folds repeats within one transaction into one."""
    await conn.execute(_NOTIFY)


def _libpq_url(database_url: str) -> str:
    # The same URL the engines use, minus SQLAlchemy's "+psycopg" driver name.
    parsed = make_url(sync_url(database_url))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxListener:
    """Sets ``wake`` whenever a transaction that queued notifications commits.

    Runs as one task with its own autocommit connection. A connection that
    cannot be opened or drops is retried with a capped backoff (first at
    once after a connection that worked, then 1 s doubling to 30 s); it
    never raises into the caller, and polling covers the gap.
    """

    def __init__(
        self,
        database_url: str,
        wake: asyncio.Event,
        *,
        application_name: str = "alertrelay-wakeup",
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        health_interval_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._conninfo = _libpq_url(database_url)
        self._redacted = redact_url(database_url)
        self._password = make_url(database_url).password
        self._wake = wake
        self._application_name = application_name[:63]
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._health_interval = health_interval_s
        self._connect_timeout = connect_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._up_since = 0.0
        self.listening = asyncio.Event()  # set while LISTEN is active
        self.connections = 0  # LISTENs established so far (tests wait on it)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-listener")

    async def stop(self) -> None:
        """Cancel the task; its connection is closed on the way out."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        delay = self._min_backoff
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                loop = asyncio.get_running_loop()
                was_up = self.listening.is_set()
                self.listening.clear()
                # A connection that worked for a while and dropped (a killed
                # backend, a failover) is retried at once; one that cannot be
                # opened, or dies as soon as it opens, backs off.
                if was_up and loop.time() - self._up_since >= self._min_backoff:
                    delay, wait = self._min_backoff, 0.0
                else:
                    wait, delay = delay, min(delay * 2, self._max_backoff)
                log.warning(
                    "outbox wake-up listener lost its database connection; polling meanwhile"
                    if was_up
                    else "outbox wake-up listener cannot connect; polling meanwhile",
                    extra={"db": self._redacted, "error": self._error(exc), "retry_in_s": wait},
                )
                await asyncio.sleep(wait)

    async def _listen_once(self) -> None:
        """Connect, LISTEN and relay notifications until the connection fails."""
        async with asyncio.timeout(self._connect_timeout + 1):
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                application_name=self._application_name,
                connect_timeout=max(1, int(self._connect_timeout)),
                # A peer that vanished without a FIN is noticed by the
                # health check below; keepalives make the kernel notice too.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            self._up_since = asyncio.get_running_loop().time()
            self.listening.set()
            if self.connections > 1:
                log.info("outbox wake-up listener reconnected", extra={"db": self._redacted})
            # Rows committed while nobody listened: one look now, not at the next poll.
            self._wake.set()
            while True:
                async for _ in conn.notifies(timeout=self._health_interval):
                    self._wake.set()
                # Quiet for a while: prove the connection is still there.
                async with asyncio.timeout(self._connect_timeout):
                    await conn.execute("SELECT 1")
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    def _error(self, exc: BaseException) -> str:
        lines = str(exc).splitlines()
        message = lines[0][:200] if lines and lines[0] else type(exc).__name__
        if self._password:
            # libpq echoes a malformed conninfo back; never let the password out.
            message = message.replace(self._password, "***")
        return message
