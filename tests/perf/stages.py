"""Where the time of one big webhook goes, stage by stage, in one process.

    python -m tests.perf.stages [--alerts 10000] [--integrations 2] [--runs 3]
                                [--postgres postgresql://postgres@127.0.0.1/test]

Runs the app in-process (no HTTP server, background loops off, so delivery
does not compete) and times each stage of ingest by wrapping the functions
that implement it: parsing, the repeat fast path (duplicates and stale
copies), loading, planning and writing. The stages overlap nothing, so they
add up to the request's time minus the framework's share. The CPU of
SQLite's own thread over the whole request is printed apart (``sqlite
thread``, to 10 ms). Each size is run ``--runs`` times with new
alerts, then once more as duplicates, then once more with every alert
resolved (the end of a storm); medians are printed. The heap is frozen
after start-up, as ``serve`` freezes its own.
"""

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.perf.ingest import TOKEN, drop_pg, pg_database
from tests.perf.replicas import thread_cpu
from tests.perf.workload import bench_config, bulk_body

_times: dict[str, list[float]] = defaultdict(list)
# Process CPU (every thread: the loop's, the planner's, SQLite's) per stage.
# On a shared machine it moves far less than wall time.
_cpu: dict[str, list[float]] = defaultdict(list)


def _driver_cpu() -> float:
    """CPU seconds spent so far by the SQLite driver's threads (aiosqlite's
    ``_connection_worker_thread``): SQLite's own work, apart from the loop's."""
    driver = {t.native_id for t in threading.enumerate() if "_connection_worker_thread" in t.name}
    return sum(s for tid, s in thread_cpu(os.getpid()).items() if tid in driver)


def _timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    if asyncio.iscoroutinefunction(original):

        async def wrapper_async(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                _times[label].append(time.perf_counter() - t)
                _cpu[label].append(time.process_time() - c)

        setattr(owner, name, wrapper_async)
    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                _times[label].append(time.perf_counter() - t)
                _cpu[label].append(time.process_time() - c)

        setattr(owner, name, wrapper)


def _instrument() -> None:
    from app.ingest import service
    from app.store import alerts
    from app.web import webhook

    _timed(webhook, "parse_webhook", "parse")
    _timed(service, "plan_batch", "plan")
    _timed(alerts.AlertUnit, "touch_repeats", "repeats (SQL)")
    _timed(alerts.AlertUnit, "load", "load (SQL)")
    _timed(alerts.AlertUnit, "write", "write (SQL)")


async def _run(db_url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from app.store.migrate import upgrade
    from tests.conftest import running_app

    upgrade(db_url)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    config = bench_config("http://127.0.0.1:9", args.integrations, TOKEN)
    out: dict[str, dict[str, float]] = {}
    async with running_app(db_url, config) as (_, client):
        bodies = [bulk_body(args.alerts, f"r{i}") for i in range(args.runs)]
        # As `serve` does after start-up: without it, every full collection
        # also walked the harness's and the app's start-up objects: the plan
        # read about a third slower and the request a sixth (10,000 alerts,
        # 3 runs each way, docs/performance.md, eighth stop).
        gc.collect()
        gc.freeze()
        for kind in ("new", "duplicates", "resolved"):
            per_run: list[dict[str, float]] = []
            for body in bodies if kind != "resolved" else [_resolved(b) for b in bodies]:
                _times.clear()
                _cpu.clear()
                t, c, d = time.perf_counter(), time.process_time(), _driver_cpu()
                r = await client.post("/webhook/alertmanager", content=body, headers=headers)
                total, cpu = time.perf_counter() - t, time.process_time() - c
                assert r.status_code == 200, r.text
                run = {k: sum(v) for k, v in _times.items()}
                run["total"] = total
                run |= {f"{k} cpu": sum(v) for k, v in _cpu.items()}
                run["total cpu"] = cpu
                run["sqlite thread cpu"] = _driver_cpu() - d
                per_run.append(run)
            out[kind] = {k: statistics.median(r.get(k, 0.0) for r in per_run) for k in per_run[0]}
    return out


def _resolved(body: bytes) -> bytes:
    """``body`` with every alert resolved a minute after it started."""
    data = json.loads(body)
    for alert in data["alerts"]:
        started = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
        alert["status"] = "resolved"
        alert["endsAt"] = (started + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    data["status"] = "resolved"
    return json.dumps(data).encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--integrations", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    _instrument()
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-stages-"))
    targets = ["sqlite"] + (["postgres"] if args.postgres else [])
    for target in targets:
        db_url = f"sqlite:///{tmp}/stages.db" if target == "sqlite" else pg_database(args.postgres)
        try:
            result = asyncio.run(_run(db_url, args))
        finally:
            if target == "postgres":
                drop_pg(db_url)
        for kind, stages in result.items():
            wall = "  ".join(
                f"{k} {v * 1000:.2f}" for k, v in stages.items() if not k.endswith("cpu")
            )
            cpu = "  ".join(
                f"{k[:-4]} {v * 1000:.2f}" for k, v in stages.items() if k.endswith("cpu")
            )
            print(f"{target:8} {args.alerts} {kind:10} wall ms: {wall}")
            print(f"{'':8} {args.alerts} {kind:10} cpu ms:  {cpu}")


if __name__ == "__main__":
    main()
