"""CPU of the delivery loop's transaction: claim due rows, record the last ones sent.

    python -m tests.perf.claims [--rows 3000] [--batch 16] [--runs 3] [--baseline DIR]
                                [--postgres postgresql://postgres@127.0.0.1/test]

Fills a fresh database with ``--rows`` queued notifications, then drains it
the way the worker's transaction does, with no HTTP at all: each transaction
records the previous ``--batch`` rows as sent (``outbox.finish``) and claims
the next ``--batch`` (``outbox.claim``). Prints the process's CPU (every
thread: the SQLite connection thread included) per transaction, for each
call. ``--baseline`` runs another checkout's code in the same rounds, each
run in a process of its own; medians over ``--runs``.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_CONFIG = (
    "route: {receiver: r}\n"
    "receivers: [{name: r, webhook_configs: [{url: 'http://127.0.0.1:9/hook'}]}]\n"
)


async def _drain(db_url: str, batch: int) -> dict[str, float]:
    from app.ops.clock import SystemClock
    from app.store import outbox
    from app.store.engine import Database
    from app.store.outbox import Outcome, Result

    db = Database(db_url)
    clock = SystemClock()
    claim_s = finish_s = 0.0
    transactions = 0
    pending: list[Outcome] = []
    try:
        while True:
            now = clock.now()
            async with db.write() as conn:
                t0 = time.process_time()
                await outbox.finish(conn, pending, "bench")
                t1 = time.process_time()
                claimed = await outbox.claim(
                    conn,
                    db.kind,
                    worker="bench",
                    token=uuid.uuid4().hex,
                    now=now,
                    lease_until=now + timedelta(seconds=60),
                    limit=batch,
                    room=lambda *_: batch,
                    expired_leases=True,
                    by_reference=lambda *_: False,
                )
                t2 = time.process_time()
            claim_s += t2 - t1
            finish_s += t1 - t0
            transactions += 1
            pending = [
                Outcome(
                    c.id,
                    c.lease_token,
                    c.attempt,
                    Result.SENT,
                    clock.now(),
                    1.0,
                    c.integration,
                    started_at=c.claimed_at,
                )
                for c in claimed
            ]
            if not claimed:
                break
    finally:
        await db.dispose()
    return {
        "transactions": transactions,
        "claim_ms": claim_s / transactions * 1000,
        "finish_ms": finish_s / transactions * 1000,
    }


def run_one(db_url: str, rows: int, batch: int) -> dict[str, float]:
    """Migrate, fill and drain ``db_url`` with this checkout's code."""
    from app.store.migrate import upgrade
    from tests.perf.delivery import fill

    upgrade(db_url)
    fill(db_url, _CONFIG, rows)
    return asyncio.run(_drain(db_url, batch))


def main() -> None:
    from tests.perf.ingest import drop_pg, pg_database, run_in_checkout

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--baseline", type=Path, help="another checkout (git worktree)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-claims-"))
    codes = [("before", args.baseline)] if args.baseline else []
    codes.append(("this", ROOT))
    databases = ["sqlite"] + (["postgres"] if args.postgres else [])
    got: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for database in databases:
            for name, root in codes:
                db_url = (
                    f"sqlite:///{tmp}/{name}-{run}.db"
                    if database == "sqlite"
                    else pg_database(args.postgres)
                )
                try:
                    result = run_in_checkout(__file__, root, db_url, args.rows, args.batch)
                finally:
                    if database == "postgres":
                        drop_pg(db_url)
                key = f"{database} {name}"
                got.setdefault(key, []).append(result)
                print(
                    f"run {run + 1} {key:16} {result['transactions']:.0f} transactions:"
                    f" claim {result['claim_ms']:.2f} ms, finish {result['finish_ms']:.2f} ms CPU each",
                    flush=True,
                )
    print(f"\nmedians over {args.runs} runs ({args.rows} rows, {args.batch} a transaction):")
    for key, results in got.items():
        claim = statistics.median(r["claim_ms"] for r in results)
        finish = statistics.median(r["finish_ms"] for r in results)
        print(f"{key:16} claim {claim:.2f} ms, finish {finish:.2f} ms CPU per transaction")


if __name__ == "__main__":
    main()
