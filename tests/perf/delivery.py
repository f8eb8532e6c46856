"""Delivery benchmark: outbox throughput, and webhook-to-sink latency under load.

    python -m tests.perf.delivery [--rounds 3] [--rows 3000] [--rate 100] [--seconds 20] [--baseline DIR]
                                  [--postgres postgresql://postgres@127.0.0.1/test]

Throughput: the outbox is filled with ``--rows`` notifications for a webhook
sink that answers 200 at once (its own process), then one ``alertrelay
worker`` process delivers them; the rate is measured at the sink, from its
first request to its last. Latency: ``alertrelay serve`` takes ``--rate``
new alerts a second for ``--seconds`` (one alert per webhook); each alert's
latency runs from the webhook's 200 to the sink receiving its notification.

Each round first measures the ceiling: the same HTTP client and ``post``
call the notifiers use, eight posts in flight (one destination's default
share) to the same kind of sink, with no database. On a 2-core machine
that client, not the outbox, bounds what one Python process can send; each
throughput is also quoted as its share of that ceiling from the same round.
Medians over ``--rounds``.

CPU is read from ``/proc`` over the steady part of each run (from a tenth
to nine tenths of the rows at the sink, so start-up and the tail are left
out): the worker's event-loop thread and its other threads (SQLite's)
separately, in ms per notification, against the bare sender's own CPU per
request. The bare sender runs in two shapes: eight long-lived lanes (the
ceiling), and a task per post under ``asyncio.timeout`` with eight in
flight, the shape the worker sends in; the gap between them is what that
shape alone costs the HTTP client.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.perf.ingest import (
    drop_pg,
    free_port,
    pg_database,
    sink_state,
    wait_ready,
    write_report,
)
from tests.perf.replicas import cpu_seconds, thread_cpu
from tests.sinks import WebhookSink, serve

ROOT = Path(__file__).resolve().parents[2]
# Sends in flight to one destination by default: half of delivery.concurrency (16).
_DESTINATION_SHARE = 8


def _alert(name: str) -> dict[str, Any]:
    from tests.helpers import am_alert

    return am_alert({"alertname": name, "severity": "critical", "instance": "bench"})


def _webhook(alerts: list[dict[str, Any]]) -> bytes:
    from tests.helpers import am_webhook, body

    return body(am_webhook(alerts))


def fill(db_url: str, config_text: str, rows: int) -> None:
    from tests.conftest import running_app
    from tests.helpers import JSON

    async def run() -> None:
        async with running_app(db_url, config_text) as (_, client):
            r = await client.post(
                "/webhook/alertmanager",
                content=_webhook([_alert(f"Fill{i}") for i in range(rows)]),
                headers=JSON,
            )
            assert r.json()["notifications"] == rows, r.text

    asyncio.run(run())


def _run_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.perf.sink_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/count")
    return sink, port


def _sink_rate(port: int, rows: int, timeout: float = 300) -> float:
    """Requests/s at the sink, from its first request to its last, once ``rows`` arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sink_state(f"http://127.0.0.1:{port}")
        if state["count"] >= rows:
            return float((state["count"] - 1) / (state["last"] - state["first"]))
        time.sleep(0.1)
    raise RuntimeError("the sink did not get every request")


def bare_sender(rows: int, concurrency: int, *, tasks: bool = False) -> tuple[float, float]:
    """The ceiling: the same HTTP client and call alertrelay uses, with no database at all.

    ``concurrency`` posts in flight (a destination's default share), a
    notification-sized JSON body each, through ``app.notifiers.http.post``
    on uvloop, as the worker runs: from long-lived lanes, or (``tasks``)
    each in a task of its own under ``asyncio.timeout``, as the worker
    starts its sends. Returns requests/s at the sink and this process's
    CPU ms per request (the warm-up left out).
    """
    import uvloop

    from app.notifiers.http import make_client, post

    sink, port = _run_sink()
    cpu = 0.0
    try:
        url = f"http://127.0.0.1:{port}/hook"
        body = {"status": "firing", "alert": _alert("Bare"), "receiver": "r", "padding": "x" * 400}

        async def run() -> None:
            nonlocal cpu
            client = make_client()
            warm = 20
            for _ in range(warm):
                await post(client, url, what="bare", json_body=body)
            started = time.process_time()
            if tasks:
                slots = asyncio.Semaphore(concurrency)
                running: set[asyncio.Task[None]] = set()

                async def one() -> None:
                    try:
                        async with asyncio.timeout(10):
                            await post(client, url, what="bare", json_body=body)
                    finally:
                        slots.release()

                for _ in range(rows - warm):
                    await slots.acquire()
                    task = asyncio.create_task(one())
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.gather(*running)
            else:
                todo = iter(range(rows - warm))

                async def lane() -> None:
                    for _ in todo:
                        await post(client, url, what="bare", json_body=body)

                await asyncio.gather(*(lane() for _ in range(concurrency)))
            cpu = (time.process_time() - started) / (rows - warm) * 1000
            await client.aclose()

        uvloop.run(run())
        return _sink_rate(port, rows), cpu
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def _steady_cpu(pid: int, sink_port: int, rows: int, timeout: float = 300) -> tuple[float, float]:
    """The worker's loop-thread and other-thread CPU ms per notification, from a
    tenth to nine tenths of ``rows`` at the sink."""
    url = f"http://127.0.0.1:{sink_port}"
    deadline = time.monotonic() + timeout
    marks: list[tuple[int, dict[int, float]]] = []
    for share in (0.1, 0.9):
        while (count := sink_state(url)["count"]) < rows * share:
            if time.monotonic() > deadline:
                raise RuntimeError("the sink did not get the rows in time")
            time.sleep(0.02)
        marks.append((count, thread_cpu(pid)))
    (c0, t0), (c1, t1) = marks
    loop = t1.get(pid, 0.0) - t0.get(pid, 0.0)
    others = sum(v - t0.get(tid, 0.0) for tid, v in t1.items() if tid != pid)
    sent = max(c1 - c0, 1)
    return loop / sent * 1000, others / sent * 1000


def _fill_from(root: Path, db_url: str, config: str, rows: int) -> None:
    """Migrate and fill with the code of ``root`` (a baseline's schema may differ)."""
    code = (
        "import sys; from app.store.migrate import upgrade; from tests.perf.delivery import fill; "
        "upgrade(sys.argv[1]); fill(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, db_url, config, str(rows)],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def throughput(
    db_url: str, rows: int, tmp: Path, root: Path = ROOT
) -> tuple[float, float, float, float]:
    """Notifications/s at the sink; the worker's CPU ms per notification (start-up
    included: the same in every run); and over the steady part, its loop
    thread's and its other threads' CPU ms per notification."""
    sink, port = _run_sink()
    try:
        config = f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: 'http://127.0.0.1:{port}/hook'}}]}}]\n"
        if root == ROOT:
            from app.store.migrate import upgrade

            upgrade(db_url)
            fill(db_url, config, rows)
        else:
            _fill_from(root, db_url, config, rows)
        path = tmp / "worker.yml"
        path.write_text(config)
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--config", str(path)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "worker.log").open("wb"),
        )
        try:
            loop_ms, others_ms = _steady_cpu(worker.pid, port, rows)
            rate = _sink_rate(port, rows)
            return rate, cpu_seconds(worker.pid) / rows * 1000, loop_ms, others_ms
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    finally:
        sink.terminate()
        sink.wait(timeout=10)


async def latency(
    db_url: str, rate: float, seconds: float, tmp: Path, root: Path = ROOT
) -> list[float]:
    sink = WebhookSink()
    with serve(sink) as sink_url:
        port = free_port()
        config = tmp / "serve.yml"
        config.write_text(
            f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{sink_url}/hook'}}]}}]\n"
        )
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "serve.log").open("wb"),
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/ready")
            accepted: dict[str, float] = {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                total = int(rate * seconds)
                start = time.monotonic()

                async def one(i: int) -> None:
                    name = f"Lat{i}"
                    r = await client.post(
                        "/webhook/alertmanager",
                        content=_webhook([_alert(name)]),
                        headers={"Content-Type": "application/json"},
                    )
                    assert r.status_code == 200
                    accepted[name] = time.monotonic()

                tasks = []
                for i in range(total):
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                    tasks.append(asyncio.create_task(one(i)))
                await asyncio.gather(*tasks)
            deadline = time.monotonic() + 30
            while len(sink.requests()) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            arrived = {r.json()["alertname"]: r.at for r in sink.requests()}
            assert len(arrived) == total, f"{len(arrived)} of {total} delivered"
            return sorted(arrived[name] - accepted[name] for name in accepted)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of other code (git worktree): each database is also measured as"
        " DB@before with the worker and server of that checkout, in the same rounds",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-delivery-"))
    databases = ["sqlite"] + (["postgres"] if args.postgres else [])
    targets = [t for db in databases for t in ([f"{db}@before", db] if args.baseline else [db])]
    bare: list[float] = []
    bare_runs: dict[str, list[float]] = {"cpu_ms": [], "tasks": [], "tasks_cpu_ms": []}
    runs: dict[str, dict[str, list[float]]] = {
        t: {
            "throughput": [],
            "share": [],
            "cpu_ms": [],
            "loop_ms": [],
            "others_ms": [],
            "p50": [],
            "p99": [],
        }
        for t in targets
    }
    for rnd in range(args.rounds):
        rate, cpu_ms = bare_sender(args.rows, _DESTINATION_SHARE)
        bare.append(rate)
        bare_runs["cpu_ms"].append(cpu_ms)
        print(
            f"round {rnd + 1} bare sender {rate:7.0f} requests/s (the ceiling), {cpu_ms:.2f} ms CPU per request",
            flush=True,
        )
        rate, cpu_ms = bare_sender(args.rows, _DESTINATION_SHARE, tasks=True)
        bare_runs["tasks"].append(rate)
        bare_runs["tasks_cpu_ms"].append(cpu_ms)
        print(
            f"round {rnd + 1} bare sender, a task per post {rate:7.0f} requests/s, {cpu_ms:.2f} ms CPU per request",
            flush=True,
        )
        for target in targets:
            got = runs[target]
            database, _, before = target.partition("@")
            root = args.baseline if before else ROOT
            for kind in ("throughput", "latency"):
                db_url = (
                    f"sqlite:///{tmp}/{target}-{kind}-{rnd}.db"
                    if database == "sqlite"
                    else pg_database(args.postgres)
                )
                try:
                    if kind == "throughput":
                        rate, cpu_ms, loop_ms, others_ms = throughput(db_url, args.rows, tmp, root)
                        got["throughput"].append(rate)
                        got["cpu_ms"].append(cpu_ms)
                        got["loop_ms"].append(loop_ms)
                        got["others_ms"].append(others_ms)
                        got["share"].append(got["throughput"][-1] / bare[-1])
                        print(
                            f"round {rnd + 1} {target:8} throughput {got['throughput'][-1]:7.0f} notifications/s ({got['share'][-1]:.0%} of the bare sender), worker CPU {got['cpu_ms'][-1]:.2f} ms per notification; steady: loop thread {loop_ms:.2f} ms, other threads {others_ms:.2f} ms",
                            flush=True,
                        )
                    else:
                        # The server migrates its own database as it starts.
                        lat = asyncio.run(latency(db_url, args.rate, args.seconds, tmp, root))
                        p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
                        got["p50"].append(p50)
                        got["p99"].append(p99)
                        print(
                            f"round {rnd + 1} {target:8} latency at {args.rate:g}/s: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {lat[-1] * 1000:6.1f} ms",
                            flush=True,
                        )
                finally:
                    if database == "postgres":
                        drop_pg(db_url)
    out: dict[str, Any] = {
        "bare_sender_per_s": statistics.median(bare),
        "bare_sender_cpu_ms": statistics.median(bare_runs["cpu_ms"]),
        "bare_tasks_per_s": statistics.median(bare_runs["tasks"]),
        "bare_tasks_cpu_ms": statistics.median(bare_runs["tasks_cpu_ms"]),
        "runs": {"bare": bare, **{f"bare_{k}": v for k, v in bare_runs.items()}},
    }
    print(
        f"\nmedians over {args.rounds} rounds: bare sender {out['bare_sender_per_s']:.0f} requests/s,"
        f" {out['bare_sender_cpu_ms']:.2f} ms CPU each; a task per post {out['bare_tasks_per_s']:.0f}/s,"
        f" {out['bare_tasks_cpu_ms']:.2f} ms CPU each"
    )
    for target in targets:
        got = runs[target]
        out[target] = {
            "throughput_per_s": statistics.median(got["throughput"]),
            "share_of_bare": statistics.median(got["share"]),
            "worker_cpu_ms_per_notification": statistics.median(got["cpu_ms"]),
            "steady_loop_cpu_ms": statistics.median(got["loop_ms"]),
            "steady_other_threads_cpu_ms": statistics.median(got["others_ms"]),
            "latency_p50_ms": statistics.median(got["p50"]),
            "latency_p99_ms": statistics.median(got["p99"]),
        }
        out["runs"][target] = got
        m = out[target]
        print(
            f"{target:8} {m['throughput_per_s']:.0f} notifications/s ({m['share_of_bare']:.0%} of the bare sender, worker CPU {m['worker_cpu_ms_per_notification']:.2f} ms each, steady loop {m['steady_loop_cpu_ms']:.2f} + other threads {m['steady_other_threads_cpu_ms']:.2f} ms); at {args.rate:g} alerts/s p50 {m['latency_p50_ms']:.1f} ms, p99 {m['latency_p99_ms']:.1f} ms",
            flush=True,
        )
    path = write_report(ROOT / "tests" / "perf" / "results", "delivery", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
