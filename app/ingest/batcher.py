"""Group commit: concurrent submissions share one transaction.

Each webhook must be committed before it is answered, and one fsync per
request caps throughput at the disk's sync rate. The batcher queues work;
its single loop takes everything that queued while the previous batch was
committing, hands it to the handler as one batch, and only then resolves
each submitter's future. Nobody is answered before their batch commits, and
under load batches grow by themselves.

One refinement makes that hold in practice: when a big batch commits, its
submitters all send their next request at once, but the loop takes the first
one or two before the others are read and parsed, and a batch of two costs a
full commit (measured under 32 connections: batches alternated between 1-2
and 31). So before committing, the loop waits (never longer than
``linger``) while work it was told about is still being parsed
(:meth:`announce`), or while the batch is still far smaller than the
previous one, whose submitters are about to come back. An idle service never
waits: nothing is announced and the previous batch was small too.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no more work."""


class Ticket:
    """Announced work: counted until it is submitted or abandoned."""

    def __init__(self, batcher: "Batcher[Any, Any]") -> None:
        self._batcher: Batcher[Any, Any] | None = batcher
        batcher._incoming += 1

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher._incoming -= 1
            self._batcher._arrived.set()
            self._batcher = None


class _Entry(Generic[T, R]):
    __slots__ = ("future", "item", "taken", "weight", "withdrawn")

    def __init__(self, item: T, weight: int, future: "asyncio.Future[R]") -> None:
        self.item = item
        self.weight = weight
        self.future = future
        self.taken = False  # handed to the handler: its outcome will be known
        self.withdrawn = False  # its submitter gave up first: never handed over


def _expire(entry: "_Entry[Any, Any]") -> None:
    """A submitter's deadline passed: withdraw its item unless a transaction has it."""
    if not entry.taken and not entry.future.done():
        entry.withdrawn = True
        entry.future.set_exception(TimeoutError())


# The handler returns one result or exception per item, in order.
Handler = Callable[[list[T]], Awaitable[list[R | Exception]]]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        handler: Handler[T, R],
        *,
        max_weight: int = 5000,
        linger: float = 0.005,
        name: str = "batcher",
    ) -> None:
        self._handler = handler
        self._max_weight = max_weight
        self._linger = linger
        self._incoming = 0
        self._last_size = 0
        self._arrived = asyncio.Event()

        self._queue: asyncio.Queue[_Entry[T, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._name = name
        self.on_batch: Callable[[int], None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    def announce(self) -> Ticket:
        """Say that work is on its way (see the module docstring); close the ticket
        if it never comes."""
        return Ticket(self)

    async def submit(
        self,
        item: T,
        weight: int = 1,
        ticket: Ticket | None = None,
        deadline_s: float | None = None,
    ) -> R:
        """Queue ``item`` and return its result once its batch is done.

        With ``deadline_s``: raises ``TimeoutError`` only if the item was never
        handed to the handler, and then it never will be — so a caller that
        answers "not stored" tells the truth. An item already in a
        transaction when the time runs out waits for that transaction's
        outcome instead (bounded by the database's own lock timeout).
        """
        if self._closed or self._task is None:
            if ticket is not None:
                ticket.close()
            raise BatcherClosed()
        loop = asyncio.get_running_loop()
        entry: _Entry[T, R] = _Entry(item, max(weight, 1), loop.create_future())
        self._queue.put_nowait(entry)
        if ticket is not None:
            ticket.close()
        self._arrived.set()
        # The submitter awaits the entry's own future: a submitter that is
        # cancelled (its client went away) cancels only that future, which the
        # loop then skips, so a batch other callers share goes on. The
        # deadline is one timer that withdraws the entry if it is still
        # queued; this replaced asyncio.timeout and asyncio.shield, a few
        # percent of a small webhook's CPU.
        if deadline_s is None:
            return await entry.future
        expiry = loop.call_later(deadline_s, _expire, entry)
        try:
            return await entry.future
        finally:
            expiry.cancel()

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        if self._task is None:
            return
        while not self._queue.empty():
            await asyncio.sleep(0.01)
            if self._task.done():
                break
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while not self._queue.empty():
            entry = self._queue.get_nowait()
            if not entry.future.done():
                entry.future.set_exception(BatcherClosed())

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            try:
                await self._fill(batch)
            except Exception as exc:  # a bug here must not stop ingest for good
                log.exception("batch collection failed")
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(exc)
                continue
            await self._process(batch)

    async def _fill(self, batch: list[_Entry[T, R]]) -> None:
        """Add queued work to ``batch``, lingering briefly under load (module docstring)."""
        loop = asyncio.get_running_loop()
        weight = sum(e.weight for e in batch)
        deadline = loop.time() + self._linger
        while weight < self._max_weight:
            if self._queue.empty():
                expecting = self._incoming > 0 or len(batch) * 2 < self._last_size
                if not expecting or loop.time() >= deadline:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
                except TimeoutError:
                    break
                continue
            entry = self._queue.get_nowait()
            batch.append(entry)
            weight += entry.weight
        self._last_size = len(batch)

    async def _process(self, batch: list[_Entry[T, R]]) -> None:
        batch = [e for e in batch if not e.withdrawn]
        if not batch:
            return
        for entry in batch:
            entry.taken = True
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = await self._handler([e.item for e in batch])
        except asyncio.CancelledError:
            for e in batch:
                if not e.future.done():
                    e.future.set_exception(BatcherClosed())
            raise
        except Exception as exc:  # the handler should not raise; never strand a caller
            log.exception("batch handler failed")
            results = [exc] * len(batch)
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, Exception):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)
