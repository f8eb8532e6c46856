"""A bare sweeper in a process of its own, for the tests that run several at once.

``python -m tests.integration.sweeper_process DB_URL CONFIG START SECONDS``
waits until the wall clock reaches START (a Unix time, so that every process
begins together), then sweeps as fast as it can for SECONDS and prints what
its sweeps did as one JSON line. ``ALERTRELAY_FAILPOINT`` may kill it midway.
"""

import asyncio
import json
import sys
import time

from app.config.compiled import compile_config
from app.config.model import load_config
from app.ops.clock import SystemClock
from app.ops.metrics import Metrics
from app.store.engine import Database
from app.sweeper.loop import Sweeper


async def main(db_url: str, config: str, start: float, seconds: float) -> None:
    runtime = compile_config(load_config(config))
    db = Database(db_url, busy_timeout_s=10)
    sweeper = Sweeper(db, lambda: runtime, SystemClock(), Metrics())
    totals = {"sweeps": 0, "escalations": 0, "notifications": 0, "heartbeats": 0}
    await asyncio.sleep(max(start - time.time(), 0))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            result = await sweeper.sweep_once()
            totals["sweeps"] += 1
            totals["escalations"] += result.escalations
            totals["notifications"] += result.notifications
            totals["heartbeats"] += getattr(result, "heartbeats", 0)
    finally:
        await db.dispose()
    print(json.dumps(totals), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
