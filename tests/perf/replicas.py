"""Scale-out efficiency: 1 and then 2 ``serve`` replicas on one PostgreSQL.

    python -m tests.perf.replicas [--rounds 3] [--duration 10] [--workload mix]
                                  [--per-request 1] [--connections 32] [--baseline DIR]
                                  [--postgres postgresql://postgres@127.0.0.1/test]

A machine with 2 cores cannot show scale-out as throughput (one replica,
PostgreSQL and the load generator already fill it), so this measures what a
replica costs instead. For 1 and then 2 replicas (the load split evenly:
one ``wrk`` per replica, ``--connections`` in all) on a fresh database, with
the workload of tests/perf/ingest.py (bearer auth, flap detection, 2
integrations per alert, an instant sink), it reports:

- alerts/s and requests/s, and non-2xx answers (5xx: none expected);
- CPU-seconds per 1,000 alerts of the alertrelay processes and of the
  PostgreSQL backends serving this database (utime+stime from /proc; the
  server's shared background processes are reported apart, as WAL writer and
  checkpointer serve every database on the server);
- lock waits: the peak and mean of ungranted locks in pg_locks for this
  database, sampled every 50 ms, and the deltas of pg_stat_database's
  deadlocks and rolled-back transactions (a serialization failure or deadlock
  aborts a transaction, which ingest then retries).

Medians over ``--rounds``. PostgreSQL must run on this machine (/proc).
``--baseline`` names another checkout (a git worktree of the code before a
change): each round then runs both cases from there first, then from here,
so the two versions alternate minutes apart on the same machine.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.perf.ingest import (
    LUA,
    TOKEN,
    drop_pg,
    free_port,
    pg_database,
    post,
    start,
    stop,
    write_report,
    wrk_output,
)
from tests.perf.workload import bench_config, workload_bodies, workload_warmup

ROOT = Path(__file__).resolve().parents[2]
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(stat: Path) -> float | None:
    """utime + stime from a /proc ``stat`` file, in seconds (None once it is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), from /proc."""
    return _stat_cpu(Path(f"/proc/{pid}/stat")) or 0.0


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of each of ``pid``'s threads, from /proc."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        seconds = _stat_cpu(task / "stat")
        if seconds is not None:  # else the thread ended
            out[int(task.name)] = seconds
    return out


class PgWatch:
    """Samples this database's backends and lock waits while the load runs."""

    def __init__(self, db_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(db_url)
        self.db = u.database
        self.conn = psycopg.connect(
            u.set(database="postgres").render_as_string(hide_password=False), autocommit=True
        )
        self.waiting: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def backends(self) -> dict[int, float]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.db,),
        ).fetchall()
        return {pid: cpu_seconds(pid) for (pid,) in rows}

    def shared(self) -> dict[int, float]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type IN "
            "('walwriter', 'checkpointer', 'background writer')"
        ).fetchall()
        return {pid: cpu_seconds(pid) for (pid,) in rows}

    def stats(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT deadlocks, xact_rollback, xact_commit, conflicts FROM pg_stat_database "
            "WHERE datname = %s",
            (self.db,),
        ).fetchone()
        assert row is not None
        return dict(zip(("deadlocks", "xact_rollback", "xact_commit", "conflicts"), row))

    def _run(self) -> None:
        while not self._stop.is_set():
            (n,) = self.conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE NOT l.granted AND d.datname = %s",
                (self.db,),
            ).fetchone() or (0,)
            self.waiting.append(int(n))
            self._stop.wait(0.05)

    def __enter__(self) -> "PgWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _migrate(db_url: str, root: Path) -> None:
    """The schema of the checkout under test, before its replicas start (they
    would each migrate at start-up, at the same time)."""
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=root,
        env={**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"},
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )


def run_case(
    replicas: int, args: argparse.Namespace, tmp: Path, sink_url: str, root: Path = ROOT
) -> dict[str, Any]:
    db_url = pg_database(args.postgres)
    config = tmp / "replicas.yml"
    config.write_text(bench_config(sink_url, 2, TOKEN))
    script = tmp / "post.lua"
    script.write_text(LUA)
    bodies = tmp / "bodies.txt"
    bodies.write_text("\n".join(workload_bodies(args.workload, args.per_request)) + "\n")
    procs: list[tuple[int, Any]] = []
    try:
        _migrate(db_url, root)
        for _ in range(replicas):
            port = free_port()
            procs.append((port, start("alertrelay", port, db_url, tmp, config, root)))
        for body in workload_warmup(args.workload):
            post(procs[0][0], body)
        time.sleep(1)
        watch = PgWatch(db_url)
        try:
            before_app = {p.pid: cpu_seconds(p.pid) for _, p in procs}
            before_pg = watch.backends()
            before_shared = watch.shared()
            before_stats = watch.stats()
            share = args.connections // replicas
            outs: list[str] = [""] * replicas
            with watch:

                def load(i: int, port: int) -> None:
                    outs[i] = wrk_output(port, bodies, script, args.duration, share)

                threads = [
                    threading.Thread(target=load, args=(i, port))
                    for i, (port, _) in enumerate(procs)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            app_cpu = sum(cpu_seconds(p.pid) - before_app[p.pid] for _, p in procs)
            after_pg = watch.backends()
            pg_cpu = sum(c - before_pg.get(pid, 0.0) for pid, c in after_pg.items())
            after_shared = watch.shared()
            shared_cpu = sum(c - before_shared.get(pid, 0.0) for pid, c in after_shared.items())
            after_stats = watch.stats()
            waiting = watch.waiting
        finally:
            watch.conn.close()
    finally:
        for _, p in procs:
            stop(p)
        drop_pg(db_url)
    requests = sum(int(re.search(r"(\d+) requests in", o).group(1)) for o in outs)  # type: ignore[union-attr]
    non2xx = sum(
        int(m.group(1)) for o in outs if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", o))
    )
    alerts = requests * args.per_request
    per_k = 1000 / alerts if alerts else float("nan")
    return {
        "replicas": replicas,
        "requests_per_s": requests / args.duration,
        "alerts_per_s": alerts / args.duration,
        "non_2xx": non2xx,
        "alertrelay_cpu_s_per_1k_alerts": app_cpu * per_k,
        "postgres_cpu_s_per_1k_alerts": pg_cpu * per_k,
        "postgres_shared_cpu_s_per_1k_alerts": shared_cpu * per_k,
        "lock_waits_peak": max(waiting, default=0),
        "lock_waits_mean": statistics.fmean(waiting) if waiting else 0.0,
        "deadlocks": after_stats["deadlocks"] - before_stats["deadlocks"],
        "rollbacks": after_stats["xact_rollback"] - before_stats["xact_rollback"],
        "commits": after_stats["xact_commit"] - before_stats["xact_commit"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workload", default="mix")
    parser.add_argument("--per-request", type=int, default=1)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--baseline", type=Path, help="another checkout (git worktree)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "perf" / "results")
    args = parser.parse_args()
    if not args.postgres:
        parser.error("needs PostgreSQL: --postgres or ALERTRELAY_TEST_POSTGRES_URL")
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-replicas-"))
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    sink_port = free_port()
    sink = start("sink", sink_port, None, tmp)
    versions = {"this": ROOT} if args.baseline is None else {"before": args.baseline, "this": ROOT}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {v: {1: [], 2: []} for v in versions}
    try:
        for rnd in range(args.rounds):
            for version, root in versions.items():
                for replicas in (1, 2):
                    r = run_case(replicas, args, tmp, f"http://127.0.0.1:{sink_port}", root)
                    runs[version][replicas].append(r)
                    label = f"{version:6} " if args.baseline is not None else ""
                    print(
                        f"round {rnd + 1} {label}replicas={replicas}: {r['alerts_per_s']:7.0f} alerts/s "
                        f"{r['requests_per_s']:7.0f} req/s  alertrelay {r['alertrelay_cpu_s_per_1k_alerts']:.3f} "
                        f"PG {r['postgres_cpu_s_per_1k_alerts']:.3f} (+shared {r['postgres_shared_cpu_s_per_1k_alerts']:.3f}) "
                        f"CPU-s/1k alerts  lock waits peak {r['lock_waits_peak']} mean {r['lock_waits_mean']:.2f}  "
                        f"deadlocks {r['deadlocks']} rollbacks {r['rollbacks']} non-2xx {r['non_2xx']}",
                        flush=True,
                    )
    finally:
        stop(sink)
    summary: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "postgres", "baseline")}
    }
    ratios: dict[str, float] = {}
    for version in versions:
        print(
            f"\n{version if args.baseline is not None else 'medians'}: medians of {args.rounds} "
            f"({args.workload}, {args.per_request} alert(s)/request):"
        )
        cpu: dict[int, float] = {}
        for replicas in (1, 2):
            cases = runs[version][replicas]
            med = {k: statistics.median(r[k] for r in cases) for k in cases[0] if k != "replicas"}
            cpu[replicas] = med["alertrelay_cpu_s_per_1k_alerts"]
            key = str(replicas) if args.baseline is None else f"{version}/{replicas}"
            summary[key] = {"median": med, "runs": cases}
            print(
                f"  {replicas} replica(s): {med['alerts_per_s']:7.0f} alerts/s {med['requests_per_s']:7.0f} req/s  "
                f"CPU-s per 1,000 alerts: alertrelay {med['alertrelay_cpu_s_per_1k_alerts']:.3f}, "
                f"PostgreSQL backends {med['postgres_cpu_s_per_1k_alerts']:.3f}, shared {med['postgres_shared_cpu_s_per_1k_alerts']:.3f}; "
                f"lock waits peak {med['lock_waits_peak']:.0f} mean {med['lock_waits_mean']:.2f}; "
                f"deadlocks {med['deadlocks']:.0f}, rollbacks {med['rollbacks']:.0f}, non-2xx {med['non_2xx']:.0f}"
            )
        ratios[version] = cpu[2] / cpu[1] - 1
        print(f"  alertrelay CPU per alert, 2 replicas vs 1: {ratios[version]:+.1%}")
    if args.baseline is not None:
        print(
            f"\nbefore -> this, 2 replicas vs 1: {ratios['before']:+.1%} -> {ratios['this']:+.1%}"
        )
    path = write_report(args.out, "replicas", summary)
    print(f"load average at end: {os.getloadavg()[0]:.2f}; written to {path}")


if __name__ == "__main__":
    main()
