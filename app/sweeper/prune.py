"""Retention: the sweeper's continuous pruning and ``alertrelay prune``.

The sweeper prunes a bounded amount on every sweep: at most ``ROWS`` rows
per statement, ``BATCHES`` statements per rule and ``BUDGET_S`` seconds per
sweep, then gives SQLite's freed pages back (``VACUUM_STEPS`` steps of
``VACUUM_PAGES`` pages per sweep). Every statement and step is followed by
a pause ``PAUSE_RATIO`` times as long as it took, so the writer it shares
with ingest is free most of the time.
A year of backlog therefore drains over hours while ingest and delivery go
on; ``alertrelay prune`` drains it now, batch after batch, with the same
statements.
"""

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config.compiled import CompiledConfig
from app.config.model import LoadedConfig
from app.ops.clock import Clock, SystemClock
from app.ops.metrics import Metrics
from app.store import audit, migrate
from app.store.engine import Database
from app.store.retention import (
    TABLES,
    Cutoffs,
    PruneReport,
    checkpoint,
    count_prunable,
    file_space,
    incremental_vacuum,
    prune,
)

log = logging.getLogger(__name__)

ROWS = 100  # per statement: a few milliseconds of write lock (5-40 ms measured on SQLite)
BATCHES = 50  # per rule and sweep
BUDGET_S = 2.0  # per sweep, all rules together, pauses included
# Pages one incremental vacuum step moves, and steps per sweep (8 MiB at the
# default page size). A step holds the write lock while it moves its pages,
# and a page costs more the further the free list has grown: halfway
# through a year's backlog, steps of 512 / 128 / 32 pages took 246 / 59 / 4
# ms (p50). Eight steps of 512 back to back in the sweeper held the serving
# process's writer for ~300 ms a sweep, which ingest p99 showed (170-330 ms
# windows while a year's backlog was pruned). With 1.9 GB free (a year's
# backlog deleted, nothing given back yet), steps of 32 pages took 11-12 ms
# (p50, up to 30) and ingest p99 stayed at 50-75 ms while `prune` gave the
# pages back; 8 pages took 3-6 ms.
VACUUM_PAGES = 8
VACUUM_STEPS = 256
# Each statement and vacuum step is followed by a pause this many times as
# long as it took, so a running serve holds the write lock most of the time.
# Measured on SQLite at a year's backlog, ingest p99 without -> during
# `alertrelay prune`: 101 -> 347 ms at 100 rows and a pause of 1.0, 87 -> 203
# ms at 100 rows and 3.0, 113 -> 210 ms at 50 rows and 3.0
# (docs/performance.md, "A year of data"); since gc.freeze lowered the
# baseline, 19.6 -> 53 ms at 50 rows and 3.0; with checkpoints between
# batches and 25 rows, 13.6 -> 27.7 ms (median window of a partial drain);
# a whole drain, 13.7 -> 24.3 ms (median of 127 windows).
PAUSE_RATIO = 3.0
CLI_ROWS = 25  # per statement: a quarter of the sweeper's, so each lock is shorter
_PASSES = 3  # at most; another only while the last one deleted something


@dataclass
class Pruner:
    """What the sweeper calls once per sweep."""

    db: Database
    runtime: Callable[[], CompiledConfig]
    clock: Clock
    metrics: Metrics

    async def tick(self) -> PruneReport:
        cutoffs = Cutoffs.at(self.clock.now(), self.runtime().config.retention)
        report = await prune(
            self.db,
            cutoffs,
            rows=ROWS,
            batches_per_rule=BATCHES,
            budget_s=BUDGET_S,
            pause_ratio=PAUSE_RATIO,
            on_batch=self._count,
        )
        if any(report.deleted.values()):
            log.info("pruned", extra={"deleted": report.deleted, "complete": report.complete})
        await give_back(self.db, VACUUM_STEPS)
        return report

    def _count(self, table: str, deleted: int) -> None:
        self.metrics.child(self.metrics.pruned_rows, table).inc(deleted)


async def give_back(db: Database, steps: int) -> None:
    """Return SQLite's free pages to the file system: at most ``steps`` steps
    of ``VACUUM_PAGES`` pages, each followed by a checkpoint and a pause."""
    for _ in range(steps):
        space = await file_space(db)
        if space is None or space.auto_vacuum != "incremental" or not space.free_bytes:
            return
        began = time.monotonic()
        await incremental_vacuum(db, VACUUM_PAGES)
        took = time.monotonic() - began
        await checkpoint(db)
        await asyncio.sleep(took * PAUSE_RATIO)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


async def prune_command(database_url: str, loaded: LoadedConfig, *, dry_run: bool) -> int:
    """Prune everything past retention now; print per table what went (or would go)."""
    db = Database(database_url, busy_timeout_s=loaded.config.database.busy_timeout.total_seconds())
    clock = SystemClock()
    try:
        problem = await migrate.schema_problem(db)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
        now = clock.now()
        cutoffs = Cutoffs.at(now, loaded.config.retention)
        if dry_run:
            async with db.read() as conn:
                counts = await count_prunable(conn, cutoffs)
            for table in TABLES:
                print(f"{table:<20} {counts[table]:>10} would be deleted")
            return 0
        before = await file_space(db)
        # A rule can free rows an earlier rule kept (a dead letter past
        # `dead_letters` goes after the sent rows beside it, which it kept):
        # another pass takes them, so one command leaves nothing past retention.
        report = PruneReport(deleted=dict.fromkeys(TABLES, 0))
        for _ in range(_PASSES):
            # Beside a running serve it must not take the write lock back to
            # back: measured so, a year's backlog pushed ingest p99 past 1 s.
            one = await prune(
                db, cutoffs, rows=CLI_ROWS, batches_per_rule=None, pause_ratio=PAUSE_RATIO
            )
            report.add(one)
            if not one.complete or not any(one.deleted.values()):
                break
        for table in TABLES:
            print(f"{table:<20} {report.deleted[table]:>10} deleted")
        details: dict[str, object] = {"deleted": report.deleted}
        if before is not None:
            # Hand every freed page back, a bounded and paced step at a time.
            space = await file_space(db)
            assert space is not None
            await give_back(db, space.free_bytes // (VACUUM_PAGES * 512) + 1)  # pages >= 512 B
            after = await file_space(db)
            assert after is not None
            print(
                f"SQLite file {_mib(before.size_bytes)} -> {_mib(after.size_bytes)}"
                f" (auto_vacuum={after.auto_vacuum})"
            )
            details["file_bytes"] = {"before": before.size_bytes, "after": after.size_bytes}
        if not report.complete:
            print(
                f"{report.lock_conflicts} batch(es) met a lock conflict; "
                "the sweeper prunes the rest",
                file=sys.stderr,
            )
        async with db.write() as conn:
            await audit.record(
                conn,
                at=clock.now(),
                actor=audit.ACTOR_CLI,
                action=audit.Action.PRUNE,
                target="history",
                outcome="ok" if report.complete else "partial",
                details=details,
            )
        return 0
    finally:
        await db.dispose()
