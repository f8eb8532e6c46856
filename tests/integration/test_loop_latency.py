"""A 10,000-alert webhook does not stall the event loop: /live answers within 100 ms."""

import asyncio
import time

from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, am_alert, am_webhook, body


async def _worst_gap_while(client, payload: bytes) -> tuple[int, list[float]]:  # type: ignore[no-untyped-def]
    """Post ``payload`` while probing /live; each probe's delay, in seconds, sorted."""
    done = asyncio.Event()
    gaps: list[float] = []

    async def probe() -> None:
        while not done.is_set():
            # From the moment the probe is due to its answer: a stall of the
            # loop shows whether it falls in the request or in the pause.
            due = time.perf_counter()
            await asyncio.sleep(0.005)
            due += 0.005
            r = await client.get("/live")
            assert r.status_code == 200
            gaps.append(time.perf_counter() - due)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    try:
        r = await client.post("/webhook/alertmanager", content=payload, headers=JSON)
    finally:
        done.set()
        await prober
    return r.status_code, sorted(gaps)


async def test_a_10000_alert_webhook_keeps_the_loop_answering(db_url: str) -> None:
    alerts = [
        am_alert({"alertname": "Bulk", "instance": f"host-{i}", "severity": "warning"})
        for i in range(10_000)
    ]
    payload = body(am_webhook(alerts))
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        for label in ("new", "duplicates"):
            code, gaps = await _worst_gap_while(client, payload)
            assert code == 200
            assert len(gaps) > 10
            p90 = gaps[int(len(gaps) * 0.9)]
            print(
                f"{label}: {len(gaps)} probes, p90 {p90 * 1000:.0f} ms, worst {gaps[-1] * 1000:.0f} ms"
            )
            # The contract is 100 ms. The worst probe also waits for the CPU,
            # which this test shares with everything else on the machine (the
            # whole webhook used to hold the loop for 2-3 s here).
            assert p90 < 0.1, f"{label}: p90 {p90 * 1000:.0f} ms"
            assert gaps[-1] < 0.6, f"{label}: /live waited {gaps[-1] * 1000:.0f} ms"
