"""Realistic Alertmanager payloads for the benchmarks."""

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.fingerprint import fingerprint

# One start time per run: every body of the pool must describe the same
# occurrences, or later-built bodies would look like new (or stale) events.
_START = datetime.now(UTC) - timedelta(hours=1)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_pool(size: int = 100, resolved_share: float = 0.1, seed: int = 7) -> list[dict[str, Any]]:
    """``size`` distinct alerts shaped like kube-prometheus output; a share of them resolved."""
    rng = random.Random(seed)
    start = _START
    names = [
        "KubePodCrashLooping",
        "NodeFilesystemSpaceFillingUp",
        "TargetDown",
        "KubeDeploymentReplicasMismatch",
        "HighErrorRate",
    ]
    pool = []
    for i in range(size):
        labels = {
            "alertname": names[i % len(names)],
            "namespace": f"team-{i % 7}",
            "pod": f"api-{i:04d}-{rng.randrange(16**5):05x}",
            "instance": f"10.0.{i // 250}.{i % 250}:9100",
            "job": "kubernetes-pods",
            "severity": ["critical", "warning", "warning", "info"][i % 4],
            "prometheus": "monitoring/k8s",
        }
        resolved = i < int(size * resolved_share)
        starts = start + timedelta(seconds=i)
        pool.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"{labels['alertname']} on {labels['pod']}",
                    "description": f"Pod {labels['namespace']}/{labels['pod']} has been restarting 3 times in the last 10 minutes.",
                    "runbook_url": f"https://runbooks.prometheus-operator.dev/runbooks/kubernetes/{labels['alertname'].lower()}",
                },
                "startsAt": _iso(starts),
                "endsAt": _iso(starts + timedelta(minutes=30))
                if resolved
                else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-k8s-0:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
                "fingerprint": fingerprint(labels),
            }
        )
    return pool


def envelope(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    name = alerts[0]["labels"]["alertname"]
    return {
        "receiver": "alertrelay",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-main-0:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
    }


def bodies(per_request: int, count: int = 200, seed: int = 11) -> list[str]:
    """``count`` webhook bodies of ``per_request`` alerts each, drawn from the pool."""
    rng = random.Random(seed)
    pool = alert_pool()
    out = []
    for i in range(count):
        if per_request == 1:
            chosen = [pool[i % len(pool)]]
        else:
            chosen = rng.sample(pool, per_request)
        out.append(json.dumps(envelope(chosen), separators=(",", ":")))
    return out


def bulk_body(n: int, tag: str) -> bytes:
    """One group of ``n`` new alerts (the 10,000-alert case)."""
    now = datetime.now(UTC)
    alerts = []
    for i in range(n):
        labels = {
            "alertname": "BulkDown",
            "instance": f"host-{tag}-{i}",
            "job": "node",
            "severity": "warning",
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"host-{i} is down",
                    "description": "Target has been unreachable for 5 minutes.",
                },
                "startsAt": _iso(now),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint(labels),
            }
        )
    return json.dumps(envelope(alerts)).encode()


# ---------------------------------------------------------------- the workloads of the matrix

WORKLOADS = ("repeats", "mix", "new")
# The placeholder the load generator replaces with its request counter, so
# every request of the "new" workload carries alerts never seen before.
COUNTER = "@@N@@"


def _stale_pool() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The "mix" pool and its warm-up.

    Ten of the hundred are resolved copies of an occurrence that a later
    one has already superseded (Alertmanager still sending the old
    occurrence's resolve): the warm-up stores each as firing at a later
    startsAt, so every resolve that follows reads as stale.
    """
    pool = alert_pool(resolved_share=0.1)
    warm = []
    for alert in pool:
        if alert["status"] == "resolved":
            later = dict(alert, status="firing", endsAt="0001-01-01T00:00:00Z")
            later["startsAt"] = _iso(_START + timedelta(minutes=45))
            warm.append(later)
        else:
            warm.append(alert)
    return pool, warm


def workload_bodies(workload: str, per_request: int, count: int = 200) -> list[str]:
    """The bodies the load generator cycles through for ``workload``."""
    if workload == "new":
        return [new_alerts_template(per_request)]
    rng = random.Random(11)
    if workload == "repeats":
        pool = alert_pool(resolved_share=0.0)
    else:
        pool, _ = _stale_pool()
    out = []
    for i in range(count):
        chosen = [pool[i % len(pool)]] if per_request == 1 else rng.sample(pool, per_request)
        out.append(json.dumps(envelope(chosen), separators=(",", ":")))
    return out


def workload_warmup(workload: str) -> list[bytes]:
    """What is posted once before measuring: the steady state the workload repeats."""
    if workload == "new":
        return []
    pool = alert_pool(resolved_share=0.0) if workload == "repeats" else _stale_pool()[1]
    return [json.dumps(envelope([a])).encode() for a in pool]


def new_alerts_template(per_request: int) -> str:
    """One body of ``per_request`` alerts whose labels carry :data:`COUNTER`.

    A quarter are critical (paged), the rest warnings; no fingerprint is
    sent (Alertmanager's is optional and the server computes its own).
    """
    now = datetime.now(UTC) - timedelta(minutes=1)
    alerts = []
    for i in range(per_request):
        labels = {
            "alertname": "NewDown",
            "instance": f"host-{COUNTER}-{i}",
            "job": "node",
            "severity": "critical" if i % 4 == 0 else "warning",
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "host down", "description": "Target unreachable."},
                "startsAt": _iso(now),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
            }
        )
    return json.dumps(envelope(alerts), separators=(",", ":"))


def bench_config(sink_url: str, integrations: int, token: str) -> str:
    """The service's config for the matrix: bearer auth, flap detection, and
    ``integrations`` notifications per alert (critical alerts page)."""
    hook = f"{{url: '{sink_url}/hook'}}"
    if integrations == 1:
        page = "pagerduty_configs: [{routing_key: benchkey0000000000000000000000000}]"
        rest = f"webhook_configs: [{hook}]"
    else:
        page = f"pagerduty_configs: [{{routing_key: benchkey0000000000000000000000000}}], webhook_configs: [{hook}]"
        rest = f"webhook_configs: [{hook}, {{url: '{sink_url}/hook?second=1'}}]"
    return f"""\
auth: {{webhook_token: {token}}}
flapping: {{enabled: true}}
global: {{pagerduty_url: '{sink_url}/hook'}}
route:
  receiver: rest
  routes:
    - matchers: ['severity="critical"']
      receiver: page
receivers:
  - {{name: page, {page}}}
  - {{name: rest, {rest}}}
"""
