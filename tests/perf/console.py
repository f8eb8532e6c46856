"""Web console benchmark: page weight, and server render time at 100 and 10,000 firing alerts.

    python -m tests.perf.console [--sizes 100,10000] [--requests 60] [--postgres URL]

For each size, a fresh ``alertrelay serve`` (SQLite, or PostgreSQL with
``--postgres``) is given that many distinct firing alerts (kube-prometheus
shaped, each routed to a ``log`` receiver so every alert has a
notification), waits until delivery is idle, then asks each page
``--requests`` times one after the other. The server's own render time is
read from the ``Server-Timing`` header (database reads, routing and the
template, not the network); the wall time per request is reported beside it.
Pages: the overview, the first page of alerts, the 20th page (keyset paging
keeps it as cheap as the first), a free-text filter, and one alert.
Page weight: the overview's HTML plus the stylesheet and the script, in bytes.
Writes a JSON report to tests/perf/results/ and prints a summary.
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
from pathlib import Path
from typing import Any

from tests.perf.workload import alert_pool, envelope

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
route:
  receiver: ops
  routes:
    - matchers: ['severity="critical"']
      receiver: page
receivers:
  - name: ops
    log_configs: [{stream: stderr}]
  - name: page
    log_configs: [{stream: stderr}]
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310
        return resp.read(), dict(resp.headers)


def post(url: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        assert resp.status == 200, resp.read()


def wait_idle(base: str, want: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = json.loads(get(base + "/health?detailed=true")[0])
        alerts = json.loads(get(base + "/api/v1/alerts?state=firing&limit=1")[0])["alerts"]
        backlog = health.get("delivery", {}).get("backlog", health.get("backlog", 0))
        if alerts and not backlog:
            return
        time.sleep(0.5)
    raise RuntimeError(f"not idle after {timeout}s with {want} alerts")


def render_ms(headers: dict[str, str]) -> float:
    found = re.search(
        r"render;dur=([0-9.]+)", headers.get("Server-Timing", headers.get("server-timing", ""))
    )
    assert found, headers
    return float(found.group(1))


def measure(base: str, path: str, n: int) -> dict[str, float]:
    get(base + path)  # warm
    server, wall = [], []
    for _ in range(n):
        t = time.perf_counter()
        _, headers = get(base + path)
        wall.append((time.perf_counter() - t) * 1000)
        server.append(render_ms(headers))
    q = statistics.quantiles(server, n=20)
    return {
        "server_p50_ms": round(statistics.median(server), 2),
        "server_p95_ms": round(q[18], 2),
        "wall_p50_ms": round(statistics.median(wall), 2),
    }


def deep_page(base: str, pages: int) -> str:
    path = "/alerts?state=firing"
    for _ in range(pages - 1):
        html = get(base + path)[0].decode()
        nxt = re.search(r'<a rel="next" href="([^"]+)"', html)
        if not nxt:
            break
        path = nxt.group(1).replace("&amp;", "&")
    return path


def run_size(size: int, requests: int, db_url: str | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="console-perf-"))
    (tmp / "c.yml").write_text(CONFIG)
    port = free_port()
    env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url or f"sqlite:///{tmp}/a.db"}
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(tmp / "c.yml"), "--port", str(port)],
        stdout=log,
        stderr=log,
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(base + "/ready")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp / "serve.log").read_text()) from None
                time.sleep(0.2)
        pool = alert_pool(size, resolved_share=0.0)
        for i in range(0, size, 1000):
            post(base + "/webhook/alertmanager", envelope(pool[i : i + 1000]))
        wait_idle(base, size)
        alerts = json.loads(get(base + "/api/v1/alerts?state=firing&limit=1")[0])["alerts"]
        pages = {
            "overview": "/",
            "alerts first page": "/alerts?state=firing",
            "alerts page 20": deep_page(base, 20) if size > 1000 else "/alerts?state=firing",
            "alerts q=team-3": "/alerts?q=team-3",
            "one alert": f"/alerts/{alerts[0]['fingerprint']}",
        }
        html, _ = get(base + "/")
        css, _ = get(base + "/static/console.css")
        js, _ = get(base + "/static/console.js")
        return {
            "alerts": size,
            "database": "postgresql" if db_url else "sqlite",
            "overview_bytes": {
                "html": len(html),
                "css": len(css),
                "js": len(js),
                "total": len(html) + len(css) + len(js),
            },
            "pages": {
                name: {"path": path, **measure(base, path, requests)}
                for name, path in pages.items()
            },
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL URL of an empty, scratch database"
    )
    args = parser.parse_args()
    report = [run_size(int(s), args.requests, args.postgres) for s in args.sizes.split(",")]
    out = ROOT / "tests" / "perf" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"console-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    for r in report:
        b = r["overview_bytes"]
        print(
            f"{r['alerts']} firing alerts ({r['database']}): overview {b['total']} bytes (HTML {b['html']}, CSS {b['css']}, JS {b['js']})"
        )
        for name, m in r["pages"].items():
            print(
                f"  {name:20} server p50 {m['server_p50_ms']:7.2f} ms  p95 {m['server_p95_ms']:7.2f} ms  wall p50 {m['wall_p50_ms']:7.2f} ms"
            )
    print(f"report: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
