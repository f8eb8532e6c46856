"""CPU per webhook request with no HTTP: requests sent straight into the ASGI app.

    python -m tests.perf.requests [--workloads repeats,mix,new] [--sizes 1,10] [--callers 32]
                                  [--requests 6400] [--runs 3] [--baseline DIR]
                                  [--postgres postgresql://postgres@127.0.0.1/test]

Builds the app as ``serve`` does (the benchmark config of ``tests/perf/ingest.py``:
bearer auth, flap detection, two integrations per alert; uvloop; start-up
objects frozen out of the collector's reach), warms it with the workload's
first webhooks, then ``--callers`` concurrent callers send ``--requests``
webhooks of ``--sizes`` alerts each, twice; the second pass is measured.
Prints the CPU per request of the event loop's thread and of the whole
process (the SQLite connection thread included), and the batches' size.

What it leaves out is uvicorn's share (HTTP parsing, the socket), which is
the same for every version of alertrelay: a change to our request path
shows here without the load generator and the server competing for the
same two cores. ``--baseline`` runs another checkout's app in the same
rounds, each run in a process of its own; medians over ``--runs``.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token-0123456789"


async def _measure(
    db_url: str, workload: str, size: int, callers: int, total: int
) -> dict[str, float]:
    import gc

    from app.config.model import parse_config
    from app.config.settings import Settings
    from app.web.app import create_app
    from tests.perf.workload import COUNTER, bench_config, workload_bodies, workload_warmup

    loaded = parse_config(bench_config("http://127.0.0.1:9", 2, TOKEN), "bench.yml", {})
    # No background loops: the outbox rows are written, nothing sends them.
    app = create_app(Settings(database_url=db_url), loaded, background=False)
    headers = [
        (b"host", b"alertrelay"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {TOKEN}".encode()),
    ]

    async def call(body: bytes) -> int:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = 0

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhook/alertmanager",
            "raw_path": b"/webhook/alertmanager",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
        return status

    async with app.router.lifespan_context(app):
        services = app.state.services
        batches: list[int] = []
        batcher = services.ingest._batcher
        observe = batcher.on_batch  # the batch-size histogram, kept

        def on_batch(size: int) -> None:
            batches.append(size)
            if observe is not None:
                observe(size)

        batcher.on_batch = on_batch
        for body in workload_warmup(workload):
            assert await call(body) == 200
        bodies = [b.encode() for b in workload_bodies(workload, size)]
        each = total // callers
        sent = 0

        def body_for(i: int) -> bytes:
            # The "new" workload's one template gets a counter, as wrk's
            # script does: every request brings alerts never seen before.
            nonlocal sent
            sent += 1
            body = bodies[i % len(bodies)]
            return body.replace(COUNTER.encode(), str(sent).encode()) if workload == "new" else body

        async def caller(k: int) -> None:
            for i in range(each):
                status = await call(body_for(k * each + i))
                assert status == 200, status

        gc.collect()
        gc.freeze()  # as `serve` does after start-up
        await asyncio.gather(*(caller(k) for k in range(callers)))  # warm
        batches.clear()
        cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(callers)))
        cpu1, loop1, wall1 = time.process_time(), time.thread_time(), time.perf_counter()
    n = each * callers
    return {
        "loop_us": (loop1 - loop0) / n * 1e6,
        "process_us": (cpu1 - cpu0) / n * 1e6,
        "wall_us": (wall1 - wall0) / n * 1e6,
        "batch": statistics.mean(batches) if batches else 0.0,
    }


def run_one(db_url: str, workload: str, size: int, callers: int, total: int) -> dict[str, float]:
    """Migrate ``db_url`` and measure this checkout's app on it, on uvloop."""
    import uvloop

    from app.store.migrate import upgrade

    upgrade(db_url)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_measure(db_url, workload, size, callers, total))


def main() -> None:
    from tests.perf.ingest import drop_pg, pg_database, run_in_checkout, write_report

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="repeats,mix")
    parser.add_argument("--sizes", default="1,10")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--baseline", type=Path, help="another checkout (git worktree)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "perf" / "results")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-requests-"))
    codes = [("before", args.baseline)] if args.baseline else []
    codes.append(("this", ROOT))
    databases = ["sqlite"] + (["postgres"] if args.postgres else [])
    got: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for database in databases:
            for workload in args.workloads.split(","):
                for size in (int(s) for s in args.sizes.split(",")):
                    for name, root in codes:
                        db_url = (
                            f"sqlite:///{tmp}/{name}-{run}-{workload}-{size}.db"
                            if database == "sqlite"
                            else pg_database(args.postgres)
                        )
                        try:
                            result = run_in_checkout(
                                __file__,
                                root,
                                db_url,
                                workload,
                                size,
                                args.callers,
                                args.requests // size if size > 1 else args.requests,
                                env={"ALERTRELAY_LOG_LEVEL": "warning"},
                            )
                        finally:
                            if database == "postgres":
                                drop_pg(db_url)
                        key = f"{database} {workload} {size}/req {name}"
                        got.setdefault(key, []).append(result)
                        print(
                            f"run {run + 1} {key:32} loop {result['loop_us']:6.0f} µs,"
                            f" process {result['process_us']:6.0f} µs a request,"
                            f" batches of {result['batch']:.1f}",
                            flush=True,
                        )
    print(f"\nmedians over {args.runs} runs, CPU per request ({args.callers} callers):")
    summary: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items() if k != "postgres"}
    }
    for key, results in got.items():
        loop = statistics.median(r["loop_us"] for r in results)
        process = statistics.median(r["process_us"] for r in results)
        summary[key] = {"loop_us": loop, "process_us": process, "runs": results}
        print(f"{key:32} loop {loop:6.0f} µs  process {process:6.0f} µs")
    path = write_report(args.out, "requests", summary)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
