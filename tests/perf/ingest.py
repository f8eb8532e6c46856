"""Ingest benchmark: alertrelay against the bare-Starlette ceiling, in one run.

    python -m tests.perf.ingest [--rounds 3] [--duration 20] [--connections 32]
                                [--postgres postgresql://postgres@127.0.0.1/test]

Workload (issue "Core"): a pool of 100 distinct alerts, 10% of them
resolved, posted 1 and 10 alerts per request over 32 keep-alive connections
for ``--duration`` seconds by ``wrk`` (one thread, so the server keeps the
other core). Each round measures, in order: the bare endpoint (parse JSON,
answer 200), alertrelay on SQLite, alertrelay on PostgreSQL. The pool is
posted once before measuring, so the run is Alertmanager's steady state of
repeats. Medians over the rounds are reported, with each result's share of
the bare ceiling measured in the same run. Then a 10,000-alert payload
(new alerts, then the same again as duplicates) is timed three times.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.perf.workload import bodies, bulk_body

ROOT = Path(__file__).resolve().parents[2]
LUA = """
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/webhook/alertmanager", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


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


def start(kind: str, port: int, db_url: str | None, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    if kind == "bare":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.perf.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        probe = None
    else:
        assert db_url
        env["ALERTRELAY_DATABASE_URL"] = db_url
        env["ALERTRELAY_LOG_LEVEL"] = "warning"
        cmd = [sys.executable, "-m", "app", "serve", "--port", str(port)]
        probe = "/ready"
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
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


def run_wrk(
    port: int, bodies_file: Path, script: Path, duration: int, connections: int
) -> WrkResult:
    out = subprocess.run(
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
        headers={"Content-Type": "application/json"},
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        data = json.loads(resp.read())
        return resp.status, time.perf_counter() - t, data


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    parser.add_argument("--bulk-runs", type=int, default=3)
    parser.add_argument(
        "--targets",
        default="sqlite,postgres",
        help="which of sqlite,postgres to measure (the bare ceiling always runs)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "perf" / "results")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-bench-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    files = {}
    for n in (1, 10):
        files[n] = tmp / f"bodies-{n}.txt"
        files[n].write_text("\n".join(bodies(n)) + "\n")
    warmup = [line.encode() for line in bodies(1, count=100)]

    wanted = set(args.targets.split(","))
    targets = ["bare"] + [
        t for t in ("sqlite", "postgres") if t in wanted and (t != "postgres" or args.postgres)
    ]
    results: dict[str, dict[int, list[WrkResult]]] = {t: {1: [], 10: []} for t in targets}
    for rnd in range(args.rounds):
        for target in targets:
            port = free_port()
            db_url = None
            if target == "sqlite":
                db_url = f"sqlite:///{tmp}/bench-{rnd}.db"
            elif target == "postgres":
                db_url = pg_database(args.postgres)
            proc = start("bare" if target == "bare" else "alertrelay", port, db_url, tmp)
            try:
                for body in warmup:
                    post(port, body)
                for n in (1, 10):
                    r = run_wrk(port, files[n], script, args.duration, args.connections)
                    results[target][n].append(r)
                    print(
                        f"round {rnd + 1} {target:8} {n:2}/req: {r.requests_per_s * n:9.0f} alerts/s  {r.requests_per_s:8.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  non-2xx {r.non_2xx} errors {r.errors}",
                        flush=True,
                    )
            finally:
                stop(proc)
                if target == "postgres" and db_url:
                    drop_pg(db_url)

    summary: dict[str, Any] = {
        "workload": {
            "pool": 100,
            "resolved_share": 0.1,
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
        },
        "results": {},
    }
    print("\nmedians over rounds (alerts/s, share of the bare ceiling at the same alerts/request):")
    for n in (1, 10):
        ceiling = statistics.median(r.requests_per_s for r in results["bare"][n]) * n
        for target in targets:
            rs = results[target][n]
            aps = statistics.median(r.requests_per_s for r in rs) * n
            p99 = statistics.median(r.p99_ms for r in rs)
            p50 = statistics.median(r.p50_ms for r in rs)
            bad = sum(r.non_2xx + r.errors for r in rs)
            share = aps / ceiling
            summary["results"][f"{target}/{n}"] = {
                "alerts_per_s": round(aps),
                "p50_ms": p50,
                "p99_ms": p99,
                "share_of_ceiling": round(share, 3),
                "non_2xx_or_errors": bad,
                "runs": [asdict(r) for r in rs],
            }
            print(
                f"  {target:8} {n:2} alerts/req: {aps:9.0f} alerts/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {share:6.1%} of ceiling  non-2xx+errors {bad}"
            )

    print("\n10,000-alert payload (seconds to the answer; new alerts, then the same again):")
    for target in [t for t in targets if t != "bare"]:
        port = free_port()
        db_url = f"sqlite:///{tmp}/bulk.db" if target == "sqlite" else pg_database(args.postgres)
        proc = start("alertrelay", port, db_url, tmp)
        new, dup = [], []
        try:
            for i in range(args.bulk_runs):
                body = bulk_body(10_000, f"{target}{i}")
                status, seconds, data = post(port, body)
                assert status == 200 and data["transitions"] == 10_000, data
                new.append(seconds)
                status, seconds, data = post(port, body)
                assert status == 200 and data["duplicates"] == 10_000, data
                dup.append(seconds)
        finally:
            stop(proc)
            if target == "postgres":
                drop_pg(db_url)
        summary["results"][f"{target}/bulk10k"] = {
            "new_s": new,
            "duplicate_s": dup,
            "new_median_s": statistics.median(new),
            "duplicate_median_s": statistics.median(dup),
        }
        print(
            f"  {target:8} new {statistics.median(new):.2f} s (runs {', '.join(f'{x:.2f}' for x in new)}), duplicates {statistics.median(dup):.2f} s"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
