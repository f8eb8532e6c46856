"""Delivery benchmark: outbox throughput, and webhook-to-sink latency under load.

    python -m tests.perf.delivery [--rounds 3] [--rows 3000] [--rate 100] [--seconds 20]
                                  [--postgres postgresql://postgres@127.0.0.1/test]

Throughput: the outbox is filled with ``--rows`` notifications for a webhook
sink that answers 200 at once (its own process), then one ``alertrelay
worker`` process delivers them; the rate is measured at the sink, from its
first request to its last. Latency: ``alertrelay serve`` takes ``--rate``
new alerts a second for ``--seconds`` (one alert per webhook); each alert's
latency runs from the webhook's 200 to the sink receiving its notification.
Medians over ``--rounds``.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from tests.perf.ingest import drop_pg, free_port, pg_database, wait_ready
from tests.sinks import WebhookSink, serve

ROOT = Path(__file__).resolve().parents[2]


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
            r = await client.post("/webhook/alertmanager", content=_webhook([_alert(f"Fill{i}") for i in range(rows)]), headers=JSON)
            assert r.json()["notifications"] == rows, r.text

    asyncio.run(run())


def throughput(db_url: str, rows: int, tmp: Path) -> float:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.perf.sink_app:app", "--port", str(port), "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/count")
        config = f"route: {{receiver: r}}\nreceivers: [{{name: r, {os.environ.get('EXP_RECV', '')} webhook_configs: [{{url: 'http://127.0.0.1:{port}/hook'}}]}}]\n"
        from app.store.migrate import upgrade

        upgrade(db_url)
        fill(db_url, config, rows)
        path = tmp / "worker.yml"
        path.write_text(config)
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--config", str(path)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "worker.log").open("wb"))
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:  # noqa: S310
                    state = json.loads(resp.read())
                if state["count"] >= rows:
                    return (state["count"] - 1) / (state["last"] - state["first"])
                time.sleep(0.1)
            raise RuntimeError("delivery did not finish")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    finally:
        sink.terminate()
        sink.wait(timeout=10)


async def latency(db_url: str, rate: float, seconds: float, tmp: Path) -> list[float]:
    sink = WebhookSink()
    with serve(sink) as sink_url:
        port = free_port()
        config = tmp / "serve.yml"
        config.write_text(f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{sink_url}/hook'}}]}}]\n")
        env = {**os.environ, "ALERTRELAY_DATABASE_URL": db_url, "ALERTRELAY_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("wb"))
        try:
            wait_ready(f"http://127.0.0.1:{port}/ready")
            accepted: dict[str, float] = {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                total = int(rate * seconds)
                start = time.monotonic()

                async def one(i: int) -> None:
                    name = f"Lat{i}"
                    r = await client.post("/webhook/alertmanager", content=_webhook([_alert(name)]), headers={"Content-Type": "application/json"})
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", default=os.environ.get("ALERTRELAY_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alertrelay-delivery-"))
    targets = ["sqlite"] + (["postgres"] if args.postgres else [])
    out: dict[str, Any] = {}
    for target in targets:
        rates, p50s, p99s = [], [], []
        for rnd in range(args.rounds):
            for kind in ("throughput", "latency"):
                db_url = f"sqlite:///{tmp}/{target}-{kind}-{rnd}.db" if target == "sqlite" else pg_database(args.postgres)
                try:
                    if kind == "throughput":
                        rates.append(throughput(db_url, args.rows, tmp))
                        print(f"round {rnd + 1} {target:8} throughput {rates[-1]:7.0f} notifications/s", flush=True)
                    else:
                        if target == "postgres":
                            from app.store.migrate import upgrade

                            upgrade(db_url)
                        lat = asyncio.run(latency(db_url, args.rate, args.seconds, tmp))
                        p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
                        p50s.append(p50)
                        p99s.append(p99)
                        print(f"round {rnd + 1} {target:8} latency at {args.rate:g}/s: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {lat[-1] * 1000:6.1f} ms", flush=True)
                finally:
                    if target == "postgres":
                        drop_pg(db_url)
        out[target] = {"throughput_per_s": statistics.median(rates), "latency_p50_ms": statistics.median(p50s), "latency_p99_ms": statistics.median(p99s), "runs": {"throughput": rates, "p50": p50s, "p99": p99s}}
        print(f"{target:8} median: {out[target]['throughput_per_s']:.0f} notifications/s; at {args.rate:g} alerts/s p50 {out[target]['latency_p50_ms']:.1f} ms, p99 {out[target]['latency_p99_ms']:.1f} ms", flush=True)
    results = ROOT / "tests" / "perf" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"delivery-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
