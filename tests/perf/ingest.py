"""Ingest benchmark: alertrelay against the bare-Starlette ceiling, in one run.

    python -m tests.perf.ingest [--rounds 3] [--duration 6] [--connections 32]
        [--workloads repeats,mix,new] [--integrations 1,2] [--targets sqlite,postgres]
        [--bulk-runs 3] [--sizes 1,10,100,1000,10000]
        [--postgres postgresql://postgres@127.0.0.1/test]

The matrix (issue "Speed"): three workloads, each posted 1 and 10 alerts per
request over 32 keep-alive connections by ``wrk`` (one thread, so the server
keeps the other core), with 1 and 2 integrations per alert:

- ``repeats``: a pool of 100 firing alerts, posted once before measuring,
  then repeated (Alertmanager's steady state).
- ``mix``: the pool of 100 with 10% resolved whose startsAt is an older
  occurrence than the stored one (so each of them reads as stale).
- ``new``: every alert of every request is new (a transition and outbox rows).

The service runs with bearer auth and flap detection on; critical alerts go
to PagerDuty (plus a webhook with 2 integrations), the rest to one or two
webhooks, all served by an instant sink in a process of its own, so the
delivery worker sends what ingest queues. Each round first measures the bare
endpoint (parse JSON, answer 200) at 1 and 10 alerts per request; every
result is quoted as its share of that ceiling. Medians over the rounds.

Then payload-size scaling: one webhook of 1, 10, 100, 1,000 and 10,000 new
alerts with 2 integrations each, ``--bulk-runs`` times, time per alert, with
``/live`` polled every 10 ms during each payload (max and p99 of its
latency); and the 10,000-alert payload again as duplicates.

Profiling (not a dependency of the project): ``pip install py-spy``, then
``py-spy record -o out.txt -f raw -p PID`` on the ``serve`` process while a
workload runs (``--keep`` leaves the first server of each target running
and prints its PID).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.perf.workload import (
    COUNTER,
    WORKLOADS,
    bench_config,
    bulk_body,
    workload_bodies,
    workload_warmup,
)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token-0123456789"
LUA = """
local bodies = {}
local i = 0
local n = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
end
request = function()
  i = i % #bodies + 1
  n = n + 1
  local body = string.gsub(bodies[i], "COUNTER", tostring(n))
  return wrk.format("POST", "/webhook/alertmanager", headers, body)
end
""".replace("TOKEN", TOKEN).replace("COUNTER", COUNTER)


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def start(
    kind: str,
    port: int,
    db_url: str | None,
    tmp: Path,
    config: Path | None = None,
    root: Path = ROOT,
) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    if kind in ("bare", "sink"):
        module = "tests.perf.bare_app:app" if kind == "bare" else "tests.perf.sink_app:app"
        cmd = [sys.executable, "-m", "uvicorn", module, "--port", str(port)]
        cmd += ["--log-level", "warning", "--no-access-log"]
        probe = None if kind == "bare" else "/count"
    else:
        assert db_url
        env["ALERTRELAY_DATABASE_URL"] = db_url
        env["ALERTRELAY_LOG_LEVEL"] = "warning"
        cmd = [sys.executable, "-m", "app", "serve", "--port", str(port)]
        if config is not None:
            cmd += ["--config", str(config)]
        probe = "/ready"
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{kind}-{port}.log").open("wb"),
    )
    if probe:
        wait_ready(f"http://127.0.0.1:{port}{probe}")
    else:
        time.sleep(1.5)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk_output(port: int, bodies_file: Path, script: Path, duration: int, connections: int) -> str:
    """wrk's report of ``duration`` seconds of the bodies' webhooks on ``connections``."""
    return subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/webhook/alertmanager",
            "--",
            str(bodies_file),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout


def run_wrk(
    port: int, bodies_file: Path, script: Path, duration: int, connections: int
) -> WrkResult:
    out = wrk_output(port, bodies_file, script, duration, connections)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return WrkResult(rps, p50, p99, non2xx, errors)


def post(port: int, body: bytes, timeout: float = 60) -> tuple[int, float, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        data = json.loads(resp.read())
        return resp.status, time.perf_counter() - t, data


class LiveProbe:
    """Polls ``/live`` every 10 ms on its own connection while a payload is processed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            t = time.perf_counter()
            conn.request("GET", "/live")
            conn.getresponse().read()
            self.latencies.append(time.perf_counter() - t)
            self._stop.wait(0.01)
        conn.close()

    def __enter__(self) -> "LiveProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=35)

    def summary(self) -> tuple[float, float]:
        """(max, p99) in ms."""
        lat = sorted(self.latencies) or [0.0]
        return lat[-1] * 1000, lat[max(0, int(len(lat) * 0.99) - 1)] * 1000


def pg_database(admin_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"alertrelay_bench_{uuid.uuid4().hex[:8]}"
    plain = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return plain.set(database=name).render_as_string(hide_password=False)


def drop_pg(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(
        u.set(database="postgres").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')


def run_in_checkout(
    script: str, root: Path, *args: Any, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``script``'s ``run_one(*args)`` in a process of its own, with ``root``'s
    app first on the path: a benchmark's own code measures another checkout
    (``--baseline``), even one that predates the benchmark. ``args`` go as
    JSON, the result comes back as the last line of output."""
    code = (
        "import json, runpy, sys; run_one = runpy.run_path(sys.argv[1])['run_one']; "
        "print(json.dumps(run_one(*json.loads(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, script, json.dumps(args)],
        cwd=root,
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def write_report(out: Path, name: str, report: Any) -> Path:
    """``report`` as ``out/NAME-<time>.json``; returns the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def _code(args: argparse.Namespace, target: str) -> Path:
    """Which checkout serves ``target``: ``sqlite@before`` runs ``--baseline``."""
    return Path(args.baseline) if target.endswith("@before") else ROOT


def _db_url(target: str, tmp: Path, name: str, admin: str | None) -> str:
    if target.startswith("sqlite"):
        return f"sqlite:///{tmp}/{name}.db"
    assert admin
    return pg_database(admin)


def _drop(target: str, db_url: str) -> None:
    if target.startswith("postgres"):
        drop_pg(db_url)


def measure_matrix(
    args: argparse.Namespace, targets: list[str], tmp: Path, sink_url: str
) -> dict[str, list[WrkResult]]:
    """Every (target, workload, integrations, alerts/request) cell, ``--rounds`` times."""
    script = tmp / "post.lua"
    script.write_text(LUA)
    cells: dict[str, list[WrkResult]] = {}
    for rnd in range(args.rounds):
        port = free_port()
        proc = start("bare", port, None, tmp)
        try:
            for n in (1, 10):
                path = tmp / f"bare-{n}.txt"
                path.write_text("\n".join(workload_bodies("repeats", n)) + "\n")
                r = run_wrk(port, path, script, args.duration, args.connections)
                cells.setdefault(f"bare/{n}", []).append(r)
                print(
                    f"round {rnd + 1} bare              {n:2}/req: {r.requests_per_s * n:9.0f} alerts/s  p99 {r.p99_ms:6.1f} ms",
                    flush=True,
                )
        finally:
            stop(proc)
        for target in targets:
            for workload in args.workloads:
                for integrations in args.integrations:
                    config = tmp / f"config-{integrations}.yml"
                    config.write_text(bench_config(sink_url, integrations, TOKEN))
                    # Each server its own database: a checkout measured after
                    # another must not inherit its alerts and outbox backlog.
                    name = f"m-{target.replace('@', '-')}-{rnd}-{workload}-{integrations}"
                    db_url = _db_url(target, tmp, name, args.postgres)
                    port = free_port()
                    proc = start("alertrelay", port, db_url, tmp, config, _code(args, target))
                    try:
                        for body in workload_warmup(workload):
                            post(port, body)
                        for n in (1, 10):
                            path = tmp / f"{workload}-{n}.txt"
                            path.write_text("\n".join(workload_bodies(workload, n)) + "\n")
                            r = run_wrk(port, path, script, args.duration, args.connections)
                            key = f"{target}/{workload}/{integrations}/{n}"
                            cells.setdefault(key, []).append(r)
                            print(
                                f"round {rnd + 1} {target:15} {workload:7} i={integrations} {n:2}/req: {r.requests_per_s * n:9.0f} alerts/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  non-2xx {r.non_2xx} errors {r.errors}",
                                flush=True,
                            )
                    finally:
                        stop(proc)
                        _drop(target, db_url)
    return cells


def matrix_table(
    args: argparse.Namespace, targets: list[str], cells: dict[str, list[WrkResult]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ceiling = {
        n: statistics.median(r.requests_per_s for r in cells[f"bare/{n}"]) * n for n in (1, 10)
    }
    for n in (1, 10):
        out[f"bare/{n}"] = {"alerts_per_s": round(ceiling[n])}
    for target in targets:
        print(
            f"\n{target}: medians of {args.rounds} (bare ceiling {ceiling[1]:.0f} alerts/s at 1/req, {ceiling[10]:.0f} at 10/req)"
        )
        print("  workload integr. alerts/req   alerts/s  share   p50 ms   p99 ms  bad")
        for workload in args.workloads:
            for integrations in args.integrations:
                for n in (1, 10):
                    key = f"{target}/{workload}/{integrations}/{n}"
                    rs = cells[key]
                    aps = statistics.median(r.requests_per_s for r in rs) * n
                    p50 = statistics.median(r.p50_ms for r in rs)
                    p99 = statistics.median(r.p99_ms for r in rs)
                    bad = sum(r.non_2xx + r.errors for r in rs)
                    share = aps / ceiling[n]
                    out[key] = {
                        "alerts_per_s": round(aps),
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "share_of_ceiling": round(share, 3),
                        "non_2xx_or_errors": bad,
                        "runs": [asdict(r) for r in rs],
                    }
                    print(
                        f"  {workload:8} {integrations:7} {n:10} {aps:10.0f} {share:6.1%} {p50:8.1f} {p99:8.1f} {bad:4}"
                    )
    for target in [t for t in targets if f"{t}@before" in targets]:
        print(f"\n{target}, before -> after (share of the ceiling; p99 ms):")
        for workload in args.workloads:
            for integrations in args.integrations:
                for n in (1, 10):
                    a = out[f"{target}@before/{workload}/{integrations}/{n}"]
                    b = out[f"{target}/{workload}/{integrations}/{n}"]
                    print(
                        f"  {workload:8} i={integrations} {n:2}/req: {a['share_of_ceiling']:6.1%} -> {b['share_of_ceiling']:6.1%}"
                        f"   p99 {a['p99_ms']:6.1f} -> {b['p99_ms']:6.1f}"
                    )
    return out


def sink_state(sink_url: str) -> dict[str, Any]:
    """``tests/perf/sink_app.py``'s count of requests, and when its first and last came."""
    with urllib.request.urlopen(f"{sink_url}/count", timeout=5) as r:  # noqa: S310
        state: dict[str, Any] = json.loads(r.read())
        return state


def sink_count(sink_url: str) -> int:
    return int(sink_state(sink_url)["count"])


def wait_delivered(sink_url: str, expected: int, timeout: float = 180.0) -> None:
    """Wait (bounded) until the sink has received ``expected`` requests in all."""
    deadline = time.monotonic() + timeout
    while (got := sink_count(sink_url)) < expected:
        if time.monotonic() > deadline:
            print(f"  (delivery not drained after {timeout:.0f} s: {got} of {expected} sent)")
            return
        time.sleep(0.2)


def measure_scaling(
    args: argparse.Namespace, targets: list[str], tmp: Path, sink_url: str
) -> dict[str, Any]:
    """One payload of each size, 2 integrations per alert, ``/live`` polled meanwhile."""
    out: dict[str, Any] = {}
    config = tmp / "config-2.yml"
    config.write_text(bench_config(sink_url, 2, TOKEN))
    for target in targets:
        db_url = _db_url(target, tmp, f"bulk-{target}", args.postgres)
        port = free_port()
        proc = start("alertrelay", port, db_url, tmp, config, _code(args, target))
        try:
            print(
                f"\n{target}: one webhook of N new alerts, 2 integrations each (medians of {args.bulk_runs})"
            )
            print("       N   seconds  ms/alert  /live max ms  /live p99 ms")
            sent: dict[int, list[bytes]] = {}
            expected = sink_count(sink_url)
            for size in args.sizes:
                secs, lives = [], []
                for i in range(args.bulk_runs):
                    body = bulk_body(size, f"{target}{size}r{i}")
                    sent.setdefault(size, []).append(body)
                    with LiveProbe(port) as probe:
                        status, seconds, data = post(port, body)
                    assert status == 200 and data["transitions"] == size, data
                    assert data["notifications"] == 2 * size, data
                    secs.append(seconds)
                    lives.append(probe.summary())
                    # Delivery (same process) drains the outbox before the
                    # next run, so no run is measured against the previous
                    # one's sends (a fixed pause left 20,000 sends of a
                    # 10,000-alert run still going into the next).
                    expected += data["notifications"]
                    wait_delivered(sink_url, expected)
                s = statistics.median(secs)
                live_max = statistics.median(x[0] for x in lives)
                live_p99 = statistics.median(x[1] for x in lives)
                out[f"{target}/{size}"] = {
                    "seconds": s,
                    "ms_per_alert": s * 1000 / size,
                    "runs_s": secs,
                    "live_max_ms": live_max,
                    "live_p99_ms": live_p99,
                    "live_runs_ms": lives,
                }
                print(
                    f"  {size:6} {s:9.3f} {s * 1000 / size:9.3f} {live_max:13.1f} {live_p99:13.1f}"
                )
            if 10_000 in args.sizes:
                dup = []
                for body in sent[10_000]:  # the same bodies again: every alert a repeat
                    status, seconds, data = post(port, body)
                    assert status == 200 and data["duplicates"] == 10_000, data
                    dup.append(seconds)
                out[f"{target}/dup10k"] = {"seconds": statistics.median(dup), "runs_s": dup}
                print(f"  10,000 duplicates again: {statistics.median(dup):.3f} s")
        finally:
            stop(proc)
            _drop(target, db_url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--bulk-runs", type=int, default=3, help="0 skips payload scaling")
    parser.add_argument("--sizes", default="1,10,100,1000,10000")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="empty skips the matrix")
    parser.add_argument("--integrations", default="1,2")
    parser.add_argument(
        "--targets",
        default="sqlite,postgres",
        help="which of sqlite,postgres to measure (the bare ceiling always runs)",
    )
    parser.add_argument(
        "--baseline",
        help="a checkout of the code to compare with (git worktree or git archive of a commit): "
        "each database is then measured twice per round, as DB@before from there and as DB from here",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "perf" / "results")
    args = parser.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.integrations = [int(x) for x in args.integrations.split(",")]
    args.sizes = [int(x) for x in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-bench-"))
    wanted = set(args.targets.split(","))
    targets = [
        t for t in ("sqlite", "postgres") if t in wanted and (t != "postgres" or args.postgres)
    ]
    if args.baseline:
        targets = [x for t in targets for x in (f"{t}@before", t)]
    load = os.getloadavg()
    summary: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "postgres")},
        "loadavg_at_start": load,
        "results": {},
    }
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    sink_port = free_port()
    sink = start("sink", sink_port, None, tmp)
    sink_url = f"http://127.0.0.1:{sink_port}"
    try:
        if args.workloads:
            cells = measure_matrix(args, targets, tmp, sink_url)
            summary["results"].update(matrix_table(args, targets, cells))
        if args.bulk_runs:
            summary["scaling"] = measure_scaling(args, targets, tmp, sink_url)
    finally:
        stop(sink)
    summary["loadavg_at_end"] = os.getloadavg()
    path = write_report(args.out, "ingest", summary)
    print(f"\nload average at end: {summary['loadavg_at_end'][0]:.2f}; written to {path}")


if __name__ == "__main__":
    main()
