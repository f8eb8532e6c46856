"""The read API, health endpoints, metrics, OpenAPI, status page and reload."""

from datetime import timedelta
from pathlib import Path

import pytest

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import (
    JSON,
    LOG_CONFIG,
    T0,
    TWO_ROUTES_CONFIG,
    am_alert,
    am_webhook,
    body,
    eventually,
)


async def seed(client, n: int = 5, resolved: int = 2, clock: ManualClock | None = None) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        if clock:
            clock.advance(1)
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([am_alert({"alertname": f"A{i}", "severity": "critical"})])),
            headers=JSON,
        )
        assert r.status_code == 200, r.text
    for i in range(resolved):
        if clock:
            clock.advance(1)
        r = await client.post(
            "/webhook/alertmanager",
            content=body(
                am_webhook(
                    [am_alert({"alertname": f"A{i}", "severity": "critical"}, status="resolved")]
                )
            ),
            headers=JSON,
        )
        assert r.status_code == 200, r.text


async def test_alert_list_filter_and_cursor_pagination(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with running_app(db_url, TWO_ROUTES_CONFIG, clock=clock) as (_, client):
        await seed(client, 7, 3, clock)
        page = (await client.get("/api/v1/alerts?limit=3")).json()
        # Most recently changed first: the three resolves, then A6, A5, ...
        names = [a["alertname"] for a in page["alerts"]]
        assert names == ["A2", "A1", "A0"]
        seen = list(names)
        cursor = page["next_cursor"]
        while cursor:
            page = (await client.get(f"/api/v1/alerts?limit=3&cursor={cursor}")).json()
            seen += [a["alertname"] for a in page["alerts"]]
            cursor = page["next_cursor"]
        assert seen == ["A2", "A1", "A0", "A6", "A5", "A4", "A3"]
        firing = (await client.get("/api/v1/alerts?state=firing&limit=100")).json()["alerts"]
        assert sorted(a["alertname"] for a in firing) == ["A3", "A4", "A5", "A6"]
        resolved = (await client.get("/api/v1/alerts?state=resolved")).json()["alerts"]
        assert len(resolved) == 3
        assert (await client.get("/api/v1/alerts?state=flapping")).json()["alerts"] == []
        for bad in ("state=bogus", "limit=0", "limit=x", "limit=5000", "cursor=!!!", "cursor=WzFd"):
            r = await client.get(f"/api/v1/alerts?{bad}")
            assert r.status_code == 400, bad
            assert r.json()["status"] == "error"


async def test_alert_detail_with_transitions_and_notifications(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=6))
    async with running_app(db_url, TWO_ROUTES_CONFIG, clock=clock) as (_, client):
        await seed(client, 1, 1)
        alerts = (await client.get("/api/v1/alerts")).json()["alerts"]
        fp = alerts[0]["fingerprint"]
        detail = (await client.get(f"/api/v1/alerts/{fp}")).json()
        assert detail["status"] == "resolved"
        assert detail["runbook_url"] == "https://runbooks.example.com/a0"
        assert detail["flap"]["score"] > 0 and detail["flap"]["flapping"] is False
        assert [(t["from"], t["to"]) for t in detail["transitions"]] == [
            ("firing", "resolved"),
            (None, "firing"),
        ]
        assert [(n["kind"], n["receiver"], n["integration"]) for n in detail["notifications"]] == [
            ("resolved", "page", "log"),
            ("resolved", "page", "webhook"),
            ("firing", "mail", "webhook"),
            ("firing", "page", "log"),
            ("firing", "page", "webhook"),
        ]
        # Destinations are never exposed: no URL in the API output.
        assert "127.0.0.1:9" not in (await client.get(f"/api/v1/alerts/{fp}")).text
        nid = detail["notifications"][0]["id"]
        one = (await client.get(f"/api/v1/notifications/{nid}")).json()
        assert one["payload"]["kind"] == "resolved" and one["delivery_attempts"] == []
        assert (await client.get("/api/v1/alerts/0000000000000000")).status_code == 404
        assert (await client.get("/api/v1/notifications/999999")).status_code == 404
        assert (await client.get("/api/v1/notifications/abc")).status_code == 404


async def test_notification_list(db_url: str) -> None:
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (_, client):
        await seed(client, 3, 0)
        page = (await client.get("/api/v1/notifications?status=pending&limit=4")).json()
        assert len(page["notifications"]) == 4 and page["next_cursor"]
        rest = (
            await client.get(f"/api/v1/notifications?status=pending&cursor={page['next_cursor']}")
        ).json()
        ids = [n["id"] for n in page["notifications"] + rest["notifications"]]
        assert ids == sorted(ids, reverse=True) and len(ids) == 9
        assert (await client.get("/api/v1/notifications?status=dead")).json()["notifications"] == []
        assert (await client.get("/api/v1/notifications?status=nope")).status_code == 400


async def test_runbook_resolve_endpoint(sqlite_url: str) -> None:
    async with running_app(sqlite_url, TWO_ROUTES_CONFIG) as (_, client):
        r = (
            await client.get("/api/v1/runbooks/resolve?alertname=DiskFull&severity=critical")
        ).json()
        assert r == {
            "url": "https://wiki.example.com/storage#DiskFull",
            "source": "runbooks.rules[0]",
            "labels": {"alertname": "DiskFull", "severity": "critical"},
        }
        r = (await client.get("/api/v1/runbooks/resolve?alertname=CPU")).json()
        assert r["source"] == "runbooks.default"


async def test_health_ready_live_version(db_url: str) -> None:
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await seed(client, 2, 0)
        assert (await client.get("/health")).json() == {"status": "healthy"}

        async def answered() -> dict | None:  # type: ignore[type-arg]
            # The database check has 2 s; on a loaded machine one can miss it.
            r = await client.get("/health?detailed=true")
            return r.json() if r.status_code == 200 else None

        detailed = await eventually(answered, 20, "a healthy detailed answer")
        assert detailed["status"] == "healthy"
        assert detailed["database"]["ok"] is True and detailed["database"]["at_head"] is True
        assert detailed["delivery"] == {
            "backlog": 2,
            "pending": 2,
            "in_flight": 0,
            "dead_letters": 0,
        }
        assert (
            detailed["config"]["source"] == "test.yml" and len(detailed["config"]["version"]) == 12
        )
        assert (await client.get("/ready")).json() == {"status": "ready"}
        assert (await client.get("/live")).json() == {"status": "alive"}
        version = (await client.get("/version")).json()
        assert set(version) == {"version", "git_commit", "build_time"}
        assert version["version"] == "0.1.0"


async def test_health_unhealthy_when_database_is_gone(
    tmp_path: Path, sqlite_template: Path
) -> None:
    import shutil

    db = tmp_path / "gone.db"
    shutil.copy(sqlite_template, db)
    async with running_app(f"sqlite:///{db}", LOG_CONFIG) as (app, client):
        # Swap the directory away under the open app: new connections fail.
        await app.state.services.db.dispose()
        shutil.move(str(tmp_path), str(tmp_path) + ".moved")
        try:
            r = await client.get("/health")
            assert r.status_code == 503 and r.json() == {"status": "unhealthy"}
            assert (await client.get("/ready")).status_code == 503
            r = await client.get("/api/v1/alerts")
            assert r.status_code == 503 and "Traceback" not in r.text
            r = await client.post(
                "/webhook/alertmanager",
                content=body(am_webhook([am_alert({"alertname": "X"})])),
                headers=JSON,
            )
            assert r.status_code == 503
        finally:
            shutil.move(str(tmp_path) + ".moved", str(tmp_path))


async def test_metrics_names_are_the_contract(db_url: str) -> None:
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await seed(client, 2, 1)

        async def counted() -> str | None:
            # /metrics keeps the last known outbox counts when its 2 s database
            # read times out (a loaded machine): wait for a scrape that counted.
            text = (await client.get("/metrics")).text
            return text if "alertrelay_outbox_pending 3.0" in text else None

        text = await eventually(counted, 20, "a scrape that counted the outbox")
    for name in (
        "alertrelay_webhooks_total",
        "alertrelay_alerts_received_total",
        "alertrelay_alerts_deduplicated_total",
        "alertrelay_alert_transitions_total",
        "alertrelay_alerts_flapping",
        "alertrelay_notifications_total",
        "alertrelay_notification_duration_seconds",
        "alertrelay_outbox_pending",
        "alertrelay_outbox_dead",
        "alertrelay_webhook_duration_seconds",
        "alertrelay_build_info",
    ):
        assert f"# TYPE {name} " in text, name
    assert 'alertrelay_webhooks_total{code="200",source="alertmanager"} 3.0' in text
    assert 'alertrelay_alerts_received_total{status="resolved"} 1.0' in text
    assert 'alertrelay_alert_transitions_total{to="firing"} 2.0' in text
    assert "alertrelay_outbox_pending 3.0" in text


async def test_openapi_describes_every_route(sqlite_url: str) -> None:
    async with running_app(sqlite_url, LOG_CONFIG) as (app, client):
        spec = (await client.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        paths = {getattr(r, "path", None) for r in app.routes}
        documented = {p.replace("{fingerprint}", "{fingerprint}") for p in spec["paths"]}
        assert paths - {"/openapi.json"} <= documented


async def test_status_page(sqlite_url: str) -> None:
    async with running_app(sqlite_url, TWO_ROUTES_CONFIG) as (_, client):
        await client.post(
            "/webhook/alertmanager",
            content=body(
                am_webhook(
                    [
                        am_alert(
                            {"alertname": "<script>x</script>", "severity": "critical"},
                            annotations={"summary": "disk <b>full</b>"},
                        )
                    ]
                )
            ),
            headers=JSON,
        )
        r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;x&lt;/script&gt;" in r.text and "<script>x" not in r.text  # autoescaped
    assert "disk &lt;b&gt;full&lt;/b&gt;" in r.text
    assert "https://runbooks.example.com/" in r.text


async def test_reload_needs_admin_and_keeps_old_config_on_error(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "alertrelay.yml"
    config = "auth: {admin_token: adm1n}\n" + LOG_CONFIG
    path.write_text(config)
    async with running_app(sqlite_url, config, config_path=str(path)) as (app, client):
        services = app.state.services
        old = services.runtime().loaded.version
        assert (await client.post("/-/reload")).status_code == 401
        assert (
            await client.post("/-/reload", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        path.write_text(config + "bogus: 1\n")
        r = await client.post("/-/reload", headers={"Authorization": "Bearer adm1n"})
        assert r.status_code == 400 and "bogus: unknown key" in r.json()["error"]
        assert services.runtime().loaded.version == old
        path.write_text(config.replace("log_configs: [{}]", "log_configs: [{}, {stream: stderr}]"))
        r = await client.post("/-/reload", headers={"Authorization": "Bearer adm1n"})
        assert r.status_code == 200, r.text
        assert services.runtime().loaded.version != old
        assert len(services.runtime().receivers["default"]) == 2
        metrics = (await client.get("/metrics")).text
    assert 'alertrelay_config_reloads_total{result="failure"} 1.0' in metrics
    assert 'alertrelay_config_reloads_total{result="success"} 1.0' in metrics


async def test_admin_endpoints_closed_when_auth_has_no_admin_token(sqlite_url: str) -> None:
    async with running_app(sqlite_url, "auth: {webhook_token: t}\n" + LOG_CONFIG) as (_, client):
        r = await client.post("/-/reload", headers={"Authorization": "Bearer t"})
        assert r.status_code == 403


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/health", "/metrics", "/", "/openapi.json"])
async def test_responses_carry_a_request_id(sqlite_url: str, path: str) -> None:
    async with running_app(sqlite_url, LOG_CONFIG) as (_, client):
        r = await client.get(path, headers={"X-Request-Id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r = await client.get(path, headers={"X-Request-Id": "bad id\nwith newline"})
        assert (
            r.headers["x-request-id"] != "bad id\nwith newline"
            and len(r.headers["x-request-id"]) == 16
        )


async def test_alertmanager_paths_and_standard_collectors(sqlite_url: str) -> None:
    """/-/healthy and /-/ready answer as /live and /ready; /metrics has process_* and python_*."""
    async with running_app(sqlite_url, LOG_CONFIG) as (_, client):
        healthy = await client.get("/-/healthy")
        assert healthy.status_code == 200 and healthy.json() == (await client.get("/live")).json()
        ready = await client.get("/-/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        text = (await client.get("/metrics")).text
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert f"# TYPE {name} " in text, name
