"""A year of data, measured: alertrelay on an empty database and on a year of a busy site.

    python -m tests.perf.year [--alerts 100000] [--occurrences 5] [--targets sqlite,postgres]
                              [--rounds 3] [--duration 10] [--samples 300] [--delivery-rows 2000]
                              [--postgres postgresql://postgres@127.0.0.1/test]

A benchmark, not a test. For each database it measures the same things on
an empty database and on one filled with a year (tests/perf/yearfill.py: a
bulk loader that writes the rows the store writes; ``--alerts`` alerts with
``--occurrences`` fire/resolve cycles each, so ``2 * alerts * occurrences``
transitions, as many notifications and about as many delivery attempts):

* ingest throughput: the ingest benchmark's workloads (tests/perf/ingest.py,
  a pool of 100 alerts, 1 and 10 alerts per request, 32 connections, wrk),
  medians over ``--rounds``;
* ``GET /api/v1/alerts?state=firing``, one alert's detail (an alert with a
  full year of history), the console's overview ``/``, its alert list of
  resolved alerts and a filtered one (severity and label text), that alert's
  page, and a ``/metrics`` scrape:
  ``--samples`` sequential requests each, p50 and p99;
* the delivery benchmark's throughput (tests/perf/delivery.py: one
  ``alertrelay worker`` delivering ``--delivery-rows`` queued notifications
  to a local sink);
* the serving process's RSS (now and peak) after all of that.

The measured servers run with retention set far out, so their own sweeper
prunes nothing while they are measured. Then, on the year database:
``alertrelay prune`` (the default retention) runs while the ingest
workload (1 alert per request) keeps going in windows of ``--duration``
seconds; each window's p99 is reported beside the p99 without pruning,
with the prune's time, what it deleted and the SQLite file's size before
and after.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.perf.delivery import _run_sink, _sink_rate
from tests.perf.ingest import LUA, drop_pg, free_port, pg_database, post, run_wrk, stop, wait_ready
from tests.perf.workload import bodies

ROOT = Path(__file__).resolve().parents[2]
FAR = "retention: {resolved_alerts: 100y, transitions: 100y, notifications: 100y, dead_letters: 100y, delivery_attempts: 100y, quarantine: 100y, audit: 100y}\n"
SERVE_CONFIG = "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n" + FAR


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def serve(db_url: str, config: Path, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{name.replace('/', '-')}.log").open("wb"),
    )
    wait_ready(f"http://127.0.0.1:{port}/ready", timeout=600)
    return proc, port


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def latencies(port: int, path: str, samples: int) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(5):
            client.get(path)
        for _ in range(samples):
            t = time.perf_counter()
            r = client.get(path)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2)}


def queue(db_url: str, config_text: str, rows: int) -> None:
    """``rows`` new alerts, 200 per webhook (one big webhook can time out on a busy disk)."""
    import asyncio

    from tests.conftest import running_app
    from tests.helpers import JSON, am_alert, am_webhook, body

    # New alert names on every run: a year database measured before (reused
    # with --sqlite-year-db/--postgres-year-db) already has the last run's
    # alerts firing, and their repeats would queue nothing.
    run_id = time.strftime("%Y%m%dT%H%M%S")

    async def run() -> None:
        async with running_app(db_url, config_text) as (_, client):
            for start in range(0, rows, 200):
                alerts = [
                    am_alert({"alertname": f"Fill{i}", "severity": "critical", "instance": run_id})
                    for i in range(start, min(rows, start + 200))
                ]
                for _ in range(5):
                    r = await client.post(
                        "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
                    )
                    if r.status_code == 200:
                        break
                assert r.status_code == 200, r.text

    asyncio.run(run())


def delivery_rate(db_url: str, rows: int, tmp: Path) -> float:
    sink, port = _run_sink()
    try:
        config = (
            f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: 'http://127.0.0.1:{port}/hook'}}]}}]\n"
            + FAR
        )
        queue(db_url, config, rows)
        path = tmp / "worker.yml"
        path.write_text(config)
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--config", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "worker.log").open("wb"),
        )
        try:
            return _sink_rate(port, rows, timeout=900)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def sqlite_bytes(db_url: str) -> int:
    path = Path(db_url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def measure(
    db_url: str,
    args: argparse.Namespace,
    tmp: Path,
    files: dict[int, Path],
    script: Path,
    detail_fp: str,
    label: str,
) -> dict[str, Any]:
    config = tmp / "serve.yml"
    config.write_text(SERVE_CONFIG)
    proc, port = serve(db_url, config, tmp, label)
    out: dict[str, Any] = {}
    try:
        for body in bodies(1, count=100):
            post(port, body.encode())
        for n in (1, 10):
            runs = [run_wrk(port, files[n], script, args.duration, 32) for _ in range(args.rounds)]
            out[f"ingest_{n}_per_request"] = {
                "alerts_per_s": round(statistics.median(r.requests_per_s for r in runs) * n),
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p99_ms": statistics.median(r.p99_ms for r in runs),
                "non_2xx_or_errors": sum(r.non_2xx + r.errors for r in runs),
            }
            print(f"  {label}: ingest {n}/req {out[f'ingest_{n}_per_request']}", flush=True)
        paths = {
            "alerts_firing": "/api/v1/alerts?state=firing",
            "alert_detail": f"/api/v1/alerts/{detail_fp}",
            "overview": "/",
            "console_resolved": "/alerts?state=resolved",
            "console_filtered": "/alerts?severity=critical&q=team-3",
            "console_alert": f"/alerts/{detail_fp}",
            "metrics": "/metrics",
        }
        for name, path in paths.items():
            out[name] = latencies(port, path, args.samples)
            print(f"  {label}: {name} {out[name]}", flush=True)
        rss, peak = rss_mb(proc.pid)
        out["rss_mb"] = round(rss, 1)
        out["rss_peak_mb"] = round(peak, 1)
        print(f"  {label}: RSS {rss:.0f} MB (peak {peak:.0f} MB)", flush=True)
    finally:
        stop(proc)
    try:
        out["delivery_per_s"] = round(delivery_rate(db_url, args.delivery_rows, tmp), 1)
    except Exception as exc:  # report it and go on to the pruning run
        out["delivery_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    print(f"  {label}: delivery {out.get('delivery_per_s', out.get('delivery_error'))}", flush=True)
    return out


def prune_under_load(
    db_url: str, args: argparse.Namespace, tmp: Path, files: dict[int, Path], script: Path
) -> dict[str, Any]:
    config = tmp / "serve.yml"
    config.write_text(SERVE_CONFIG)
    prune_config = tmp / "prune.yml"
    prune_config.write_text(
        "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n"
    )  # default retention
    before = sqlite_bytes(db_url) if db_url.startswith("sqlite") else None
    proc, port = serve(db_url, config, tmp, "prune-serve")
    try:
        for body in bodies(1, count=100):
            post(port, body.encode())
        baseline = [run_wrk(port, files[1], script, args.duration, 32) for _ in range(3)]
        # Printed now: a whole drain takes most of an hour, and the ratio of
        # each window to this is what one watches while it runs.
        print(
            "  ingest without pruning: p99 "
            f"{[r.p99_ms for r in baseline]} ms, "
            f"{[round(r.requests_per_s) for r in baseline]} alerts/s",
            flush=True,
        )
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url}
        start = time.monotonic()
        pruner = subprocess.Popen(
            [sys.executable, "-m", "app", "prune", "--config", str(prune_config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        windows = []
        while pruner.poll() is None:
            began = time.monotonic()
            r = run_wrk(port, files[1], script, args.duration, 32)
            windows.append(
                {
                    "alerts_per_s": round(r.requests_per_s),
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "non_2xx_or_errors": r.non_2xx + r.errors,
                }
            )
            print(
                f"  prune running {time.monotonic() - start:6.0f} s: ingest window {windows[-1]}",
                flush=True,
            )
            # Sampled windows leave the machine to the prune in between (a
            # whole backlog's drain takes hours); 0 keeps ingest going throughout.
            deadline = began + args.prune_window_every
            while pruner.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
        stdout, stderr = pruner.communicate()
        seconds = time.monotonic() - start
        after_window = run_wrk(port, files[1], script, args.duration, 32)
    finally:
        stop(proc)
    assert pruner.returncode == 0, stderr
    deleted = {
        line.split()[0]: int(line.split()[1])
        for line in stdout.splitlines()
        if line.endswith(" deleted")
    }
    out: dict[str, Any] = {
        "prune_seconds": round(seconds, 1),
        "deleted": deleted,
        "prune_output": stdout.strip().splitlines(),
        "ingest_p99_without_prune_ms": [r.p99_ms for r in baseline],
        "ingest_p99_without_prune_median_ms": statistics.median(r.p99_ms for r in baseline),
        "ingest_alerts_per_s_without_prune": [round(r.requests_per_s) for r in baseline],
        "ingest_windows_during_prune": windows,
        "ingest_p99_during_prune_median_ms": statistics.median(w["p99_ms"] for w in windows)
        if windows
        else None,
        "ingest_p99_during_prune_max_ms": max(w["p99_ms"] for w in windows) if windows else None,
        "ingest_after_prune": {
            "alerts_per_s": round(after_window.requests_per_s),
            "p99_ms": after_window.p99_ms,
        },
    }
    if before is not None:
        out["sqlite_bytes_before"] = before
        out["sqlite_bytes_after"] = sqlite_bytes(db_url)
    print(
        f"  prune: {json.dumps({k: v for k, v in out.items() if k != 'ingest_windows_during_prune'})}",
        flush=True,
    )
    return out


def existing(db_url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from app.store.engine import sync_url

    engine = sa.create_engine(sync_url(db_url))
    with engine.connect() as conn:
        out: dict[str, Any] = {
            t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
            for t in (
                "alerts",
                "alert_transitions",
                "notifications",
                "delivery_attempts",
                "alert_acks",
                "message_refs",
            )
        }
        out["firing"] = conn.exec_driver_sql(
            "SELECT count(*) FROM alerts WHERE status = 'firing'"
        ).scalar()
        out["busiest"] = conn.exec_driver_sql(
            "SELECT fingerprint FROM alerts WHERE status = 'firing' ORDER BY fingerprint LIMIT 1"
        ).scalar()
    engine.dispose()
    out["sqlite_bytes"] = sqlite_bytes(db_url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--occurrences", type=int, default=5)
    parser.add_argument("--targets", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--delivery-rows", type=int, default=2000)
    parser.add_argument("--skip-empty", action="store_true", help="measure only the year database")
    parser.add_argument("--skip-prune", action="store_true", help="leave the year database as is")
    parser.add_argument(
        "--skip-measure",
        action="store_true",
        help="on the year database, go straight to the prune under load",
    )
    parser.add_argument(
        "--prune-window-every",
        type=float,
        default=0.0,
        help="seconds from one ingest window's start to the next while the prune runs"
        " (0: back to back)",
    )
    parser.add_argument(
        "--sqlite-year-db",
        type=Path,
        help="a SQLite file this loader filled before: measured (and pruned) instead of filling anew",
    )
    parser.add_argument(
        "--postgres-year-db",
        help="a PostgreSQL database this loader filled before (URL): measured and pruned"
        " instead of filling anew, and kept afterwards",
    )
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "perf" / "results")
    args = parser.parse_args()

    from app.core.fingerprint import fingerprint
    from app.store.migrate import upgrade
    from tests.perf.yearfill import fill

    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-year-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    files = {}
    for n in (1, 10):
        files[n] = tmp / f"bodies-{n}.txt"
        files[n].write_text("\n".join(bodies(n)) + "\n")
    summary: dict[str, Any] = {
        "alerts": args.alerts,
        "occurrences": args.occurrences,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "samples": args.samples,
        "results": {},
    }
    for target in args.targets.split(","):
        if target == "postgres" and not args.postgres:
            print("postgres: skipped (no --postgres URL)")
            continue
        result: dict[str, Any] = {}
        for state in ["year"] if args.skip_empty else ["empty", "year"]:
            db_url = (
                f"sqlite:///{tmp}/{state}.db" if target == "sqlite" else pg_database(args.postgres)
            )
            reuse = state == "year" and (
                (target == "sqlite" and args.sqlite_year_db is not None)
                or (target == "postgres" and args.postgres_year_db is not None)
            )
            if reuse and target == "sqlite":
                db_url = f"sqlite:///{args.sqlite_year_db}"
            elif reuse:
                db_url = args.postgres_year_db
            try:
                upgrade(db_url)
                detail_fp = fingerprint({"alertname": "Nothing"})
                if reuse:
                    result["fill"] = existing(db_url)
                    print(f"{target}: reusing {result['fill']}", flush=True)
                    detail_fp = result["fill"].pop("busiest")
                elif state == "year":
                    t = time.monotonic()
                    filled = fill(db_url, alerts_count=args.alerts, occurrences=args.occurrences)
                    result["fill"] = {
                        "seconds": round(time.monotonic() - t),
                        "alerts": filled.alerts,
                        "transitions": filled.transitions,
                        "notifications": filled.notifications,
                        "delivery_attempts": filled.delivery_attempts,
                        "acks": filled.acks,
                        "message_refs": filled.message_refs,
                        "firing": len(filled.firing or []),
                    }
                    if target == "sqlite":
                        result["fill"]["sqlite_bytes"] = sqlite_bytes(db_url)
                    print(f"{target}: filled {result['fill']}", flush=True)
                    detail_fp = filled.busiest
                else:
                    # An empty database has no alert with history: measure the same
                    # read on one alert ingested by the warm-up instead.
                    detail_fp = json.loads(bodies(1, count=1)[0])["alerts"][0]["fingerprint"]
                if not (state == "year" and args.skip_measure):
                    result[state] = measure(
                        db_url, args, tmp, files, script, detail_fp, f"{target}/{state}"
                    )
                if state == "year" and not args.skip_prune:
                    result["prune"] = prune_under_load(db_url, args, tmp, files, script)
            finally:
                if target == "postgres" and not reuse:
                    drop_pg(db_url)
        summary["results"][target] = result
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"year-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(summary, indent=2))
        print(f"written to {path}", flush=True)


if __name__ == "__main__":
    main()
