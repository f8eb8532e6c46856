"""The real Alertmanager posting to a served alertrelay."""

import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.harness import (
    AMTOOL,
    alertmanager,
    alertmanager_config,
    alertrelay,
    am_post_alerts,
    http_json,
    needs_alertmanager,
    wait_until,
)
from tests.helpers import table_rows

ROOT = Path(__file__).resolve().parents[2]

RELAY_CONFIG = """
auth:
  webhook_token: e2e-token
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
receivers:
  - name: page
    log_configs: [{}, {stream: stderr}]
  - name: chat
    log_configs: [{}]
"""


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")
def test_shipped_alertmanager_yml_passes_amtool() -> None:
    result = subprocess.run(
        [AMTOOL, "check-config", str(ROOT / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_alertmanager
def test_alertmanager_to_outbox(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("e2e-token\n")
    db_url = f"sqlite:///{tmp_path}/relay.db"
    with alertrelay(tmp_path, RELAY_CONFIG, db_url) as relay:
        am_yml = alertmanager_config(relay.url + "/webhook/alertmanager", token)
        with alertmanager(tmp_path, am_yml) as am:
            now = datetime.now(UTC)
            labels = [
                {"alertname": "E2EDisk", "instance": "a", "severity": "critical"},
                {"alertname": "E2EDisk", "instance": "b", "severity": "warning"},
                {"alertname": "E2ECpu", "instance": "c", "severity": "critical"},
            ]
            firing = [
                {
                    "labels": lb,
                    "annotations": {"summary": "e2e"},
                    "startsAt": _iso(now),
                    "endsAt": _iso(now + timedelta(hours=1)),
                }
                for lb in labels
            ]
            am_post_alerts(am, firing)

            def all_firing() -> list[dict[str, object]] | None:
                alerts = http_json("GET", relay.url + "/api/v1/alerts?state=firing")["alerts"]
                return alerts if len(alerts) == 3 else None

            wait_until(all_firing, 30, what="3 firing alerts")
            # Alertmanager repeats the groups (repeat_interval 2s): duplicates, no rows.
            wait_until(
                lambda: all(
                    a["duplicates"] >= 1
                    for a in http_json("GET", relay.url + "/api/v1/alerts")["alerts"]
                ),
                30,
                what="repeats counted as duplicates",
            )
            resolved = [dict(a, endsAt=_iso(datetime.now(UTC))) for a in firing]
            am_post_alerts(am, resolved)
            wait_until(
                lambda: (
                    len(http_json("GET", relay.url + "/api/v1/alerts?state=resolved")["alerts"])
                    == 3
                ),
                30,
                what="3 resolved",
            )
            metrics = urllib_get(relay.url + "/metrics")
    rows = table_rows(db_url, "notifications")
    # One row per transition and integration: critical → page (2 integrations), warning → chat (1).
    expected = sorted(
        [("firing", "page")] * 4
        + [("resolved", "page")] * 4
        + [("firing", "chat")]
        + [("resolved", "chat")]
    )
    assert sorted((r["kind"], r["receiver"]) for r in rows) == expected
    assert len(table_rows(db_url, "alert_transitions")) == 6
    assert 'alertrelay_webhooks_total{code="200",source="alertmanager"}' in metrics
    assert 'code="401"' not in metrics


def urllib_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        return resp.read().decode()
