"""Timestamps from the future: a skewed or hostile startsAt never silences an alert."""

import logging
from datetime import timedelta

import pytest

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, T0, am_alert, am_webhook, body, table_rows

YEAR_9999 = "9999-01-01T00:00:00Z"
LABELS = {"alertname": "SkewedClock", "severity": "critical"}


def _alert(status: str, starts_at: str) -> dict[str, object]:
    alert = am_alert(LABELS, status=status)
    alert["startsAt"] = starts_at
    alert["endsAt"] = "0001-01-01T00:00:00Z" if status == "firing" else starts_at
    return alert


async def test_year_9999_firing_and_resolve_do_not_make_later_real_events_stale(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(T0)
    async with running_app(db_url, LOG_CONFIG, clock=clock) as (app, client):
        with caplog.at_level(logging.WARNING):
            r = await client.post(
                "/webhook/alertmanager",
                content=body(am_webhook([_alert("firing", YEAR_9999)])),
                headers=JSON,
            )
        assert r.status_code == 200 and r.json()["transitions"] == 1
        assert any("clock skew" in rec.getMessage() for rec in caplog.records)
        clock.advance(60)
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([_alert("resolved", YEAR_9999)])),
            headers=JSON,
        )
        assert r.json()["transitions"] == 1
        clock.advance(60)
        now = clock.now().isoformat().replace("+00:00", "Z")
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([_alert("firing", now)])), headers=JSON
        )
        assert r.json()["stale"] == 0, r.json()
        assert r.json()["transitions"] == 1 and r.json()["notifications"] == 1
        fp = am_alert(LABELS)["fingerprint"]
        view = (await client.get(f"/api/v1/alerts/{fp}")).json()
        assert view["status"] == "firing" and view["clock_skew"] is None
        metrics = (await client.get("/metrics")).text
        assert "alertrelay_alerts_clock_skew_total 2.0" in metrics
    rows = table_rows(db_url, "alerts", "fingerprint")
    assert rows[0]["status"] == "firing" and rows[0]["skewed_at"] is None


async def test_a_clock_one_hour_fast_is_flagged_and_superseded(db_url: str) -> None:
    clock = ManualClock(T0)
    fast = T0 + timedelta(hours=1)
    async with running_app(db_url, LOG_CONFIG, clock=clock) as (_, client):
        alert = am_alert(LABELS, starts_at=fast)
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.json()["transitions"] == 1
        # Alertmanager's repeat of the same skewed occurrence is a duplicate, not a new page.
        clock.advance(30)
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.json()["duplicates"] == 1 and r.json()["notifications"] == 0
        view = (await client.get(f"/api/v1/alerts/{alert['fingerprint']}")).json()
        assert view["clock_skew"] == {
            "fields": ["startsAt"],
            "ordered_at": T0.isoformat().replace("+00:00", "Z"),
        }
        clock.advance(30)
        r = await client.post(
            "/webhook/alertmanager",
            content=body(
                am_webhook([am_alert(LABELS, status="resolved", starts_at=fast, ends_at=fast)])
            ),
            headers=JSON,
        )
        assert r.json()["transitions"] == 1 and r.json()["notifications"] == 1
        # The sender's clock is fixed: its next real occurrence pages again.
        clock.advance(60)
        r = await client.post(
            "/webhook/alertmanager",
            content=body(
                am_webhook([am_alert(LABELS, starts_at=clock.now() - timedelta(seconds=10))])
            ),
            headers=JSON,
        )
        assert (
            r.json()["transitions"] == 1
            and r.json()["notifications"] == 1
            and r.json()["stale"] == 0
        )


async def test_within_the_allowed_skew_nothing_is_flagged(db_url: str) -> None:
    clock = ManualClock(T0)
    async with running_app(
        db_url, LOG_CONFIG + "ingest:\n  max_clock_skew: 10m\n", clock=clock
    ) as (_, client):
        alert = am_alert(LABELS, starts_at=T0 + timedelta(minutes=9))
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.json()["transitions"] == 1
        view = (await client.get(f"/api/v1/alerts/{alert['fingerprint']}")).json()
        assert view["clock_skew"] is None
        assert "alertrelay_alerts_clock_skew_total 0.0" in (await client.get("/metrics")).text
