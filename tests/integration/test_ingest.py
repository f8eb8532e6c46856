"""Webhook ingest against real SQLite and PostgreSQL, through the migrations."""

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.core.fingerprint import fingerprint
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
    count,
    table_rows,
    terminate_backends,
)
from tests.sinks import FakePagerDuty, WebhookSink, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


async def post(
    client: httpx.AsyncClient, payload: object, path: str = "/webhook/alertmanager", **kw: object
) -> httpx.Response:
    headers = dict(JSON)
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return await client.post(
        path, content=body(payload) if not isinstance(payload, bytes) else payload, headers=headers
    )


async def test_real_fixtures_produce_the_expected_transitions(db_url: str) -> None:
    firing = (FIXTURES / "alertmanager-0.25-firing.json").read_bytes()
    resolved = (FIXTURES / "alertmanager-0.25-resolved.json").read_bytes()
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        r = await post(client, firing)
        assert r.status_code == 200, r.text
        assert r.json()["transitions"] == 3 and r.json()["notifications"] == 3
        r = await post(client, firing)  # Alertmanager's repeat: duplicates only
        assert r.json() == {**r.json(), "duplicates": 3, "transitions": 0, "notifications": 0}
        r = await post(client, resolved)
        assert r.json()["transitions"] == 3 and r.json()["notifications"] == 3
        r = await post(client, firing)  # late replay of the firing: stale, state stays resolved
        assert r.json()["stale"] == 3 and r.json()["transitions"] == 0

    alerts = table_rows(db_url, "alerts", "fingerprint")
    assert [a["fingerprint"] for a in alerts] == [
        "345170fb3c8d356f",
        "75532f6c4222b3e7",
        "b1453f84a7ff4a08",
    ]
    assert {a["status"] for a in alerts} == {"resolved"}
    assert [a["duplicate_count"] for a in alerts] == [1, 1, 1]
    assert [a["stale_count"] for a in alerts] == [1, 1, 1]
    # The resolved payload added a runbook_url annotation to the first alert.
    assert {a["runbook_url"] for a in alerts} == {"https://runbooks.example.com/amexp1"}
    transitions = table_rows(db_url, "alert_transitions")
    assert [(t["from_status"], t["to_status"]) for t in transitions] == [(None, "firing")] * 3 + [
        ("firing", "resolved")
    ] * 3
    notes = table_rows(db_url, "notifications")
    assert [n["kind"] for n in notes] == ["firing"] * 3 + ["resolved"] * 3
    assert {n["status"] for n in notes} == {"pending"}
    # A resolve carries the same dedup_key as its trigger.
    by_fp: dict[str, set[str]] = {}
    for n in notes:
        by_fp.setdefault(n["fingerprint"], set()).add(n["dedup_key"])
    assert all(len(keys) == 1 for keys in by_fp.values())
    assert all(len(k) <= 255 for keys in by_fp.values() for k in keys)


async def test_routing_fan_out_and_send_resolved(db_url: str) -> None:
    crit = am_alert({"alertname": "DiskFull", "severity": "critical"})
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (_, client):
        r = await post(client, am_webhook([crit]))
        assert r.json()["notifications"] == 3  # page: webhook + log; continue → mail: webhook
        r = await post(
            client,
            am_webhook(
                [am_alert({"alertname": "DiskFull", "severity": "critical"}, status="resolved")]
            ),
        )
        assert r.json()["notifications"] == 2  # mail has send_resolved: false
    notes = table_rows(db_url, "notifications")
    assert [
        (n["kind"], n["receiver"], n["integration"], n["integration_index"]) for n in notes
    ] == [
        ("firing", "page", "webhook", 0),
        ("firing", "page", "log", 0),
        ("firing", "mail", "webhook", 0),
        ("resolved", "page", "webhook", 0),
        ("resolved", "page", "log", 0),
    ]
    payload = notes[0]["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    assert payload["runbook_url"] == "https://wiki.example.com/storage#DiskFull"
    assert payload["labels"]["severity"] == "critical"
    assert len({n["idempotency_key"] for n in notes}) == 5


# Tests of what ingest stores, not of how fast: a deadline far above any CPU
# starvation, so a 503 can only mean a conflict, never a loaded machine (under
# CPU load the default 5 s deadline answered 503 in the concurrent identical posts and the 10,000-alert
# test). The deadline itself is tested in the deadline tests and the benchmarks.
PATIENT = "server: {ingest_timeout: 60s}\n"


async def test_eight_identical_webhooks_at_once_one_transition(db_url: str) -> None:
    """Identical concurrent posts: 0 × 5xx, exactly one set of rows."""
    payload = am_webhook(
        [am_alert({"alertname": f"A{i}", "severity": "critical"}) for i in range(5)]
    )
    async with running_app(db_url, PATIENT + TWO_ROUTES_CONFIG) as (_, client):
        for round_ in range(3):
            if round_ == 1:
                payload = am_webhook(
                    [
                        am_alert({"alertname": f"A{i}", "severity": "critical"}, status="resolved")
                        for i in range(5)
                    ]
                )
            responses = await asyncio.gather(*(post(client, payload) for _ in range(8)))
            assert [r.status_code for r in responses] == [200] * 8
    assert (
        count(db_url, "alert_transitions") == 10
    )  # 5 fired, 5 resolved; round 3 repeats the resolve
    assert count(db_url, "notifications") == 5 * 3 + 5 * 2
    assert count(db_url, "alerts") == 5


async def test_dup_02_thousand_rounds_of_identical_concurrent_posts(db_url: str) -> None:
    """Identical concurrent posts at scale: 1,000 rounds, each 2 to 8 identical
    POSTs at once of a webhook seen for the first time, split between two app
    instances on one database (so copies race in separate transactions as
    well as inside one group commit). 0 × 5xx; one transition and one outbox
    row per key and integration, every round."""
    rounds = 1000
    async with (
        running_app(db_url, PATIENT + TWO_ROUTES_CONFIG) as (_, a),
        running_app(db_url, PATIENT + TWO_ROUTES_CONFIG) as (_, b),
    ):
        for round_ in range(rounds):
            payload = body(
                am_webhook([am_alert({"alertname": f"D{round_}", "severity": "critical"})])
            )
            copies = 2 + round_ % 7
            responses = await asyncio.gather(*(post((a, b)[i % 2], payload) for i in range(copies)))
            codes = [r.status_code for r in responses]
            assert codes == [200] * copies, (round_, codes)
            assert sum(r.json()["transitions"] for r in responses) == 1, round_
    assert count(db_url, "alerts") == rounds
    assert count(db_url, "alert_transitions") == rounds
    assert count(db_url, "notifications") == 3 * rounds  # page + chat + mail for a critical alert


async def test_two_replicas_racing_on_new_alerts(db_url: str) -> None:
    """Two app instances (separate engines and batchers) on one database."""
    payloads = [
        am_webhook([am_alert({"alertname": f"R{i}", "severity": "critical"})]) for i in range(20)
    ]
    async with (
        running_app(db_url, PATIENT + TWO_ROUTES_CONFIG) as (_, a),
        running_app(db_url, PATIENT + TWO_ROUTES_CONFIG) as (_, b),
    ):
        calls = [post(client, p) for p in payloads for client in (a, b, a, b)]
        responses = await asyncio.gather(*calls)
    assert sorted({r.status_code for r in responses}) == [200]
    assert count(db_url, "alerts") == 20
    assert count(db_url, "alert_transitions") == 20
    assert count(db_url, "notifications") == 60


async def test_one_bad_alert_does_not_sink_the_others(db_url: str) -> None:
    payload = am_webhook(
        [
            am_alert({"alertname": "ok1"}),
            {"status": "firing", "labels": None},
            am_alert({"alertname": "ok2"}),
        ]
    )
    async with running_app(db_url, LOG_CONFIG) as (app, client):
        r = await post(client, payload)
        assert r.status_code == 200
        assert r.json()["accepted"] == 2
        assert r.json()["rejected"] == [{"index": 1, "reason": "alerts[1].labels: required"}]
        q = await client.get("/api/v1/quarantine")
        assert q.json()["quarantined"][0]["reason"] == "alerts[1].labels: required"
        metrics = (await client.get("/metrics")).text
    assert count(db_url, "alerts") == 2
    assert count(db_url, "quarantined_alerts") == 1
    assert 'alertrelay_alerts_quarantined_total{source="alertmanager"} 1.0' in metrics


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b"{not json", {}, 400, "malformed JSON"),
        (b"", {}, 400, "empty body"),
        (b'{"version":"4","alerts":[],"x":NaN}', {}, 400, "NaN is not valid JSON"),
        # Refused by the explicit depth cap, before json.loads recurses.
        (b"[" * 1_000 + b"]" * 1_000, {}, 400, "JSON nested too deeply: more than 64 levels"),
        (b"[" * 4_000 + b"]" * 4_000, {}, 400, "JSON nested too deeply: more than 64 levels"),
        # A 10**6-digit fraction (within the body limit of this table).
        (
            b'{"version":"4","alerts":[],"n":0.' + b"1" * 1_000_000 + b"}",
            {},
            400,
            "number too long: 1000002 characters",
        ),
        (body(am_webhook([])), {"Content-Type": "text/plain"}, 415, ""),
        (body(am_webhook([])), {"Content-Type": ""}, 415, ""),
        (body(am_webhook([])), {"Content-Encoding": "gzip"}, 415, ""),
        (body({"version": "4"}), {}, 422, "alerts: required"),
        (body({"version": "3", "alerts": []}), {}, 422, "version: unsupported"),
        (body(am_webhook([am_alert({"alertname": str(i)}) for i in range(11)])), {}, 413, ""),
        (b"x" * 1_100_000, {}, 413, ""),
    ],
)
async def test_rejected_requests_store_nothing(
    sqlite_url: str, content: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    config = LOG_CONFIG + "server: {max_alerts_per_request: 10, max_body_size: 1050000}\n"
    async with running_app(sqlite_url, config) as (_, client):
        r = await client.post("/webhook/alertmanager", content=content, headers={**JSON, **headers})
        assert r.status_code == status, r.text
        assert r.json()["status"] == "error" and "Traceback" not in r.text
        assert error in r.json()["error"]
        metrics = (await client.get("/metrics")).text
    assert count(sqlite_url, "alerts") == 0 and count(sqlite_url, "notifications") == 0
    assert f'alertrelay_webhooks_total{{code="{status}",source="alertmanager"}} 1.0' in metrics


async def test_chunked_body_over_the_limit_is_413(sqlite_url: str) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 1024

    async with running_app(sqlite_url, LOG_CONFIG + "server: {max_body_size: 10240}\n") as (
        _,
        client,
    ):
        r = await client.post("/webhook/alertmanager", content=chunks(), headers=JSON)
        assert r.status_code == 413


AUTH = (
    """
auth:
  webhook_token: s3cret-token
  webhook_tokens: [next-token]
  admin_token: adm1n
"""
    + LOG_CONFIG
)
BASIC = "auth: {basic_auth: {username: am, password: 'pä55'}}\n" + LOG_CONFIG


@pytest.mark.parametrize(
    ("config", "authorization", "status"),
    [
        (AUTH, None, 401),
        (AUTH, "Bearer wrong", 401),
        (AUTH, "Bearer s3cret-tokenX", 401),
        (AUTH, "Basic " + base64.b64encode(b"am:s3cret-token").decode(), 401),
        (AUTH, "Bearer adm1n", 401),  # the admin token is not a webhook credential
        (AUTH, "Bearer s3cret-token", 200),
        (AUTH, "bearer next-token", 200),  # rotation: both accepted
        (BASIC, "Basic " + base64.b64encode("am:pä55".encode()).decode(), 200),
        (BASIC, "Basic " + base64.b64encode(b"am:wrong").decode(), 401),
        (BASIC, "Basic !!!notbase64", 401),
        (BASIC, "Bearer p55", 401),
    ],
)
async def test_webhook_auth(
    sqlite_url: str, config: str, authorization: str | None, status: int
) -> None:
    async with running_app(sqlite_url, config) as (_, client):
        headers = {"Authorization": authorization} if authorization else {}
        r = await post(client, am_webhook([am_alert({"alertname": "A"})]), headers=headers)
        assert r.status_code == status
        if status == 401:
            assert "WWW-Authenticate" in r.headers
            assert r.json() == {"status": "error", "error": "missing or invalid credentials"}
    assert count(sqlite_url, "alerts") == (1 if status == 200 else 0)


async def test_non_ascii_token_bytes_are_401_not_500(sqlite_url: str) -> None:
    async with running_app(sqlite_url, AUTH) as (_, client):
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([])),
            headers=[("Content-Type", "application/json"), ("Authorization", b"Bearer \xe9\xe9")],  # type: ignore[list-item]
        )
        assert r.status_code == 401


async def test_busy_database_answers_503_and_stores_nothing(db_url: str) -> None:
    """A writer holding the lock past the timeout: 503 (Alertmanager retries), never 200."""
    import sqlalchemy as sa

    from app.store.engine import sync_url

    config = LOG_CONFIG + "database: {busy_timeout: 500ms}\nserver: {ingest_timeout: 2s}\n"
    engine = sa.create_engine(sync_url(db_url), isolation_level="AUTOCOMMIT")
    async with running_app(db_url, config) as (_, client):
        with engine.connect() as blocker:
            if db_url.startswith("sqlite"):
                blocker.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                blocker.exec_driver_sql("BEGIN")
                blocker.exec_driver_sql("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
            r = await post(client, am_webhook([am_alert({"alertname": "Locked"})]))
            assert r.status_code == 503, r.text
            assert r.json()["status"] == "error" and "Traceback" not in r.text
            blocker.exec_driver_sql("ROLLBACK")
        assert count(db_url, "alerts") == 0
        r = await post(client, am_webhook([am_alert({"alertname": "Locked"})]))
        assert r.status_code == 200
    engine.dispose()
    assert count(db_url, "alerts") == 1


@pytest.mark.postgres
async def test_dropped_postgres_connections_recover(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(db_url).database
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        assert (await post(client, am_webhook([am_alert({"alertname": "A"})]))).status_code == 200
        with psycopg.connect(_admin(db_url), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        # No 5xx for the next webhook: the pool replaces a connection it sees
        # closed, and ingest retries on a new one if the server closed it
        # only after the pool's check.
        r = await post(client, am_webhook([am_alert({"alertname": "B"})]))
        assert r.status_code == 200
    assert count(db_url, "alerts") == 2


def _admin(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    return (
        make_url(db_url)
        .set(database="postgres", drivername="postgresql")
        .render_as_string(hide_password=False)
    )


@pytest.mark.postgres
async def test_the_pool_hands_out_no_connection_the_server_closed(db_url: str) -> None:
    """Once the server has closed the pool's idle connections (a restart, an
    idle timeout), the next transaction gets a new one: checked by polling
    the socket at checkout, not by a round trip per transaction. Database.write
    does not retry, so a dead connection handed out would fail here."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    from sqlalchemy import text

    from app.store.engine import Database

    db = Database(db_url)
    try:
        # Two connections in the pool, both idle.
        async with db.write() as a, db.write() as b:
            pids = {
                (await a.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
            }
        await terminate_backends(db_url, pids)
        for _ in range(2):
            async with db.write() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                assert pid not in pids
    finally:
        await db.write_engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("event", "answer"),
    [("INSERT", "transitions"), ("UPDATE", "duplicates")],
    ids=["new alert", "repeat"],
)
async def test_a_connection_closed_under_a_webhook_is_retried_on_a_new_one(
    db_url: str, event: str, answer: str
) -> None:
    """The server closes the connection in the middle of the webhook's
    transaction (here its backend terminates itself from a trigger, once):
    ingest retries on a new connection, and the webhook is stored once. Both
    ways a webhook writes alerts: a new alert's insert, and the repeat fast
    path's update (sent to psycopg directly)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    import psycopg

    from app.store.engine import sync_url

    plain = sync_url(db_url).replace("+psycopg", "")
    webhook = am_webhook([am_alert({"alertname": "Cut"})])
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        if event == "UPDATE":
            assert (await post(client, webhook)).status_code == 200  # stored; next a repeat
        with psycopg.connect(plain, autocommit=True) as conn:
            # A sequence is not rolled back with the aborted transaction: the
            # trigger fires its termination the first time only.
            conn.execute("CREATE SEQUENCE tripwire")
            conn.execute(
                "CREATE FUNCTION trip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF nextval('tripwire') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
                "PERFORM pg_sleep(5); END IF; RETURN NEW; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER trip BEFORE {event} ON alerts FOR EACH ROW EXECUTE FUNCTION trip()"
            )
        try:
            r = await post(client, webhook)
            assert r.status_code == 200, r.text
            assert r.json()[answer] == 1, r.json()
        finally:
            with psycopg.connect(plain, autocommit=True) as conn:
                assert conn.execute("SELECT last_value FROM tripwire").fetchone() == (2,)
                conn.execute("DROP TRIGGER trip ON alerts")
                conn.execute("DROP FUNCTION trip()")
                conn.execute("DROP SEQUENCE tripwire")
    assert count(db_url, "alerts") == 1


async def test_ten_thousand_alerts_in_one_payload(db_url: str) -> None:
    alerts = [
        am_alert({"alertname": "Bulk", "instance": f"host-{i}", "severity": "warning"})
        for i in range(10_000)
    ]
    async with running_app(db_url, PATIENT + LOG_CONFIG) as (_, client):
        r = await post(client, am_webhook(alerts))
        assert r.status_code == 200
        assert r.json()["transitions"] == 10_000
        # The same group again with one alert resolved: exactly one new row.
        alerts[17] = am_alert(
            {"alertname": "Bulk", "instance": "host-17", "severity": "warning"}, status="resolved"
        )
        r = await post(client, am_webhook(alerts))
        assert r.json()["duplicates"] == 9_999 and r.json()["notifications"] == 1
    assert count(db_url, "alerts") == 10_000
    assert count(db_url, "notifications") == 10_001


async def test_grafana_endpoint(db_url: str) -> None:
    payload = am_webhook(
        [am_alert({"alertname": "G", "grafana_folder": "ops"}, valueString="[ var='A' value=1 ]")],
        version="1",
        orgId=1,
        state="alerting",
    )
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        r = await post(client, payload, path="/webhook/grafana")
        assert r.status_code == 200 and r.json()["transitions"] == 1
    assert [a["source"] for a in table_rows(db_url, "alerts", "fingerprint")] == ["grafana"]


async def test_fingerprint_mismatch_is_counted_and_the_computed_one_used(db_url: str) -> None:
    a = am_alert({"severity": "warning", "job": "foo"})
    a["fingerprint"] = "ffffffffffffffff"
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        assert (await post(client, am_webhook([a]))).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'alertrelay_fingerprint_mismatches_total{source="alertmanager"} 1.0' in metrics
    # The one row carries the fingerprint recomputed from the labels
    # (one of Alertmanager's own vectors), not the one that was sent.
    assert [r["fingerprint"] for r in table_rows(db_url, "alerts", "fingerprint")] == [
        "9266ef3da838ad95"
    ]


async def test_nul_and_surrogates_stored_identically(db_url: str) -> None:
    raw = body(am_webhook([am_alert({"alertname": "U", "v": "P"})])).replace(
        b'"P"', b'"a\\u0000b\\udc00"'
    )
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        assert (await post(client, raw)).status_code == 200
        alerts = (await client.get("/api/v1/alerts")).json()["alerts"]
    assert alerts[0]["labels"]["v"] == "a\ufffdb\ufffd"


async def test_renotify_reminder_for_a_still_firing_alert(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=1))
    config = "dedup: {renotify_interval: 1h}\n" + LOG_CONFIG
    async with running_app(db_url, config, clock=clock) as (app, client):
        await post(client, am_webhook([am_alert({"alertname": "Long"})]))
        sweeper = app.state.services.sweeper
        clock.advance(1800)
        assert (await sweeper.sweep_once()).reminders == 0
        clock.advance(1801)
        assert (await sweeper.sweep_once()).reminders == 1
        assert (await sweeper.sweep_once()).reminders == 0  # once per interval
        clock.advance(3601)
        assert (await sweeper.sweep_once()).reminders == 1
        await post(client, am_webhook([am_alert({"alertname": "Long"}, status="resolved")]))
        clock.advance(7200)
        assert (await sweeper.sweep_once()).reminders == 0  # resolved: no reminders
    kinds = [n["kind"] for n in table_rows(db_url, "notifications")]
    assert kinds == ["firing", "reminder", "reminder", "resolved"]
    keys = {n["dedup_key"] for n in table_rows(db_url, "notifications")}
    assert len(keys) == 1  # reminders add to the open incident


async def test_duplicate_with_new_annotations_updates_them_without_notifying(db_url: str) -> None:
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (_, client):
        labels = {"alertname": "Disk", "severity": "critical", "instance": "a"}
        await post(client, am_webhook([am_alert(labels, annotations={"summary": "90% full"})]))
        r = await post(
            client,
            am_webhook(
                [
                    am_alert(
                        labels,
                        annotations={
                            "summary": "95% full",
                            "runbook_url": "https://own.example/disk",
                        },
                    )
                ]
            ),
        )
        assert r.json()["duplicates"] == 1 and r.json()["notifications"] == 0
        alert = (await client.get("/api/v1/alerts")).json()["alerts"][0]
    assert alert["annotations"]["summary"] == "95% full"
    assert alert["runbook_url"] == "https://own.example/disk" and alert["duplicates"] == 1


async def test_same_alert_many_times_in_one_batch_counts_exactly(db_url: str) -> None:
    labels = {"alertname": "Repeat", "severity": "warning"}
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await post(client, am_webhook([am_alert(labels)]))
        # One webhook carrying the alert three times, and five such webhooks at once.
        payload = am_webhook([am_alert(labels), am_alert(labels), am_alert(labels)])
        responses = await asyncio.gather(*(post(client, payload) for _ in range(5)))
        assert sum(r.json()["duplicates"] for r in responses) == 15
        alert = (await client.get("/api/v1/alerts")).json()["alerts"][0]
    assert alert["duplicates"] == 15
    assert count(db_url, "alert_transitions") == 1


async def test_mixed_states_of_one_alert_in_one_batch_apply_in_order(db_url: str) -> None:
    labels = {"alertname": "Mixed", "severity": "warning"}
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await post(client, am_webhook([am_alert(labels)]))
        firing = am_webhook([am_alert(labels)])
        resolved = am_webhook([am_alert(labels, status="resolved")])
        # Concurrent: likely one batch holding a repeat and the resolve.
        responses = await asyncio.gather(
            post(client, firing), post(client, resolved), post(client, firing)
        )
        assert [r.status_code for r in responses] == [200, 200, 200]
        alert = (await client.get("/api/v1/alerts")).json()["alerts"][0]
    assert alert["status"] == "resolved"
    assert [t["to_status"] for t in table_rows(db_url, "alert_transitions")] == [
        "firing",
        "resolved",
    ]
    # Applied in arrival order: firing (duplicate), resolved (transition), firing (stale).
    assert alert["duplicates"] + alert["stale"] == 2


# Parseable timestamps at the edges of datetime's range.
# 0001-01-02T00:00:00+14:00 is in year 1, so it reads as Go's zero time;
# 0002-01-01T00:00:00+14:00 is a real far-past instant (0001-12-31T10:00Z).
FAR_TIMES = [
    "9999-12-31T23:59:59Z",
    "0001-01-02T00:00:00+14:00",
    "0002-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999Z",
]
# Parseable, but past 9999-12-31 once converted to UTC: the alert's own error.
OVERFLOWING = "9999-12-31T23:59:59-01:00"
FAR_KEY = "R0UT1NGKEY0123456789abcdef012345"


def far_alerts(status: str) -> list[dict[str, object]]:
    alerts = [am_alert({"alertname": "Ok"}, status=status)]
    bad_start = am_alert({"alertname": "Overflow", "at": "start"}, status=status)
    bad_start["startsAt"] = OVERFLOWING
    bad_end = am_alert({"alertname": "Overflow", "at": "end"}, status=status)
    bad_end["endsAt"] = OVERFLOWING
    alerts += [bad_start, bad_end]
    for i, far in enumerate(FAR_TIMES):
        start = am_alert({"alertname": "FarStart", "i": str(i)}, status=status)
        start["startsAt"] = far
        end = am_alert({"alertname": "FarEnd", "i": str(i)}, status=status)
        end["endsAt"] = far  # ignored while firing; the resolve time once resolved
        both = am_alert({"alertname": "FarBoth", "i": str(i)}, status=status)
        both["startsAt"] = both["endsAt"] = far
        alerts += [start, end, both]
    return alerts


async def test_far_timestamps_never_5xx_through_ingest_sweeps_and_delivery(db_url: str) -> None:
    """Firing, repeated, reminded, resolved, flapping, calmed, replayed, rendered
    to PagerDuty and a webhook, read back through the API: never a 5xx."""
    accepted = 1 + 3 * len(FAR_TIMES)
    clock = ManualClock(T0 + timedelta(hours=1))
    pd, chat = FakePagerDuty(), WebhookSink()
    with serve(pd) as pd_url, serve(chat) as chat_url:
        config = f"""
dedup: {{renotify_interval: 1h}}
flapping: {{half_life: 5m, enter_score: 2, exit_score: 1}}
delivery: {{timeout: 2s}}
route: {{receiver: page}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {FAR_KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
    webhook_configs: [{{url: "{chat_url}/chat"}}]
"""
        async with running_app(db_url, config, clock=clock) as (app, client):
            services = app.state.services

            async def deliver() -> None:
                async with asyncio.timeout(30):
                    await services.delivery.drain()

            async def post_all(status: str) -> dict[str, object]:
                r = await post(client, am_webhook(far_alerts(status)))
                assert r.status_code == 200, r.text
                result = r.json()
                assert result["accepted"] == accepted
                # A firing alert's endsAt is ignored, but it must still parse.
                assert result["rejected"] == [
                    {
                        "index": 1,
                        "reason": f"alerts[1].startsAt: timestamp {OVERFLOWING!r} is out of range (after 9999-12-31 in UTC)",
                    },
                    {
                        "index": 2,
                        "reason": f"alerts[2].endsAt: timestamp {OVERFLOWING!r} is out of range (after 9999-12-31 in UTC)",
                    },
                ]
                await deliver()
                return result  # type: ignore[no-any-return]

            first = await post_all("firing")
            assert first["transitions"] == accepted
            assert (await post_all("firing"))["duplicates"] == accepted
            clock.advance(3601)
            assert (await services.sweeper.sweep_once()).reminders == accepted
            await deliver()
            resolved = await post_all("resolved")
            assert resolved["transitions"] == accepted
            assert (await post_all("resolved"))["duplicates"] == accepted
            for _ in range(60):  # flap scores decay; the flapping ones calm down
                clock.advance(30)
                await services.sweeper.sweep_once()
                await deliver()
            assert (await post_all("firing"))["stale"] == accepted  # a late replay
            clock.advance(7200)
            assert (await services.sweeper.sweep_once()).reminders == 0
            await deliver()

            listed = (await client.get("/api/v1/alerts?limit=100")).json()["alerts"]
            assert len(listed) == accepted and {a["status"] for a in listed} == {"resolved"}
            for a in listed:
                detail = await client.get(f"/api/v1/alerts/{a['fingerprint']}")
                assert detail.status_code == 200, detail.text
            for path in (
                "/api/v1/alerts?state=firing",
                "/api/v1/alerts?state=flapping",
                "/api/v1/quarantine",
                "/metrics",
                "/health?detailed=true",
            ):
                r = await client.get(path)
                assert r.status_code == 200, (path, r.text)

    assert count(db_url, "alerts") == accepted
    assert count(db_url, "alerts", "status = 'resolved'") == accepted
    assert count(db_url, "notifications", "status <> 'sent'") == 0
    # Every trigger was closed by its resolve: nothing is left open for a resolved alert.
    assert pd.open_incidents() == [] and pd.dropped == []
    # The far times reach the sinks as they were sent, not clamped or shifted.
    far = [
        b
        for b in chat.bodies()
        if b["fingerprint"] == fingerprint({"alertname": "FarBoth", "i": "3"})
    ]
    assert [b["kind"] for b in far][:1] == ["firing"] and far[-1]["status"] == "resolved"
    assert {b["alert"]["starts_at"] for b in far} == {"9999-12-31T23:59:59.999999Z"}


@pytest.mark.postgres
async def test_far_timestamps_on_a_postgres_server_outside_utc() -> None:
    """psycopg refuses a timestamptz whose *local* rendering leaves years 1..9999
    (year 1 in UTC is year 0 in any zone west of it; 9999-12-31 is 10000 east of
    it), so the app's sessions must not inherit a server's non-UTC TimeZone."""
    from app.store.migrate import upgrade
    from tests.conftest import PG_URL, create_pg_database, drop_pg_database, pg_admin_conn

    if not PG_URL:
        pytest.skip("ALERTRELAY_TEST_POSTGRES_URL is not set")
    url = create_pg_database("alertrelay_tz")
    try:
        from sqlalchemy.engine import make_url

        with pg_admin_conn() as conn:
            conn.execute(
                f"ALTER DATABASE \"{make_url(url).database}\" SET timezone = 'Pacific/Kiritimati'"
            )
        upgrade(url)
        async with running_app(url, LOG_CONFIG) as (_, client):
            r = await post(client, am_webhook(far_alerts("resolved")))
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 1 + 3 * len(FAR_TIMES)
            r = await post(client, am_webhook(far_alerts("resolved")))  # reads the stored rows back
            assert r.status_code == 200, r.text
            assert r.json()["duplicates"] == 1 + 3 * len(FAR_TIMES)
            listed = await client.get("/api/v1/alerts?limit=100")
            assert listed.status_code == 200, listed.text
            starts = {
                a["labels"].get("i"): a["starts_at"]
                for a in listed.json()["alerts"]
                if a["labels"]["alertname"] == "FarBoth"
            }
        assert starts["0"] == "9999-12-31T23:59:59Z" and starts["2"] == "0001-12-31T10:00:00Z"
    finally:
        drop_pg_database(url)


async def test_the_answer_and_the_routing_of_a_webhook_post(sqlite_url: str) -> None:
    # Webhook POSTs skip the router (app/web/middleware.py DirectPosts) and the
    # usual answer is formatted directly: both must look exactly as before.
    async with running_app(sqlite_url, LOG_CONFIG) as (_, client):
        payload = am_webhook([am_alert({"alertname": "A"}), am_alert({"alertname": "B"})])
        first = await post(client, payload)
        again = await post(client, payload)
        grafana = await post(client, payload, path="/webhook/grafana")
        for r in (first, again, grafana):
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert r.headers["x-request-id"]
            # Byte for byte what Starlette's JSONResponse renders.
            assert (
                r.content
                == json.dumps(r.json(), ensure_ascii=False, separators=(",", ":")).encode()
            )
        assert first.json() == {
            "status": "ok",
            "accepted": 2,
            "duplicates": 0,
            "stale": 0,
            "transitions": 2,
            "notifications": 2,  # LOG_CONFIG routes every alert to one log destination
            "rejected": [],
            "rejected_total": 0,
        }
        assert again.json()["duplicates"] == 2 and again.json()["transitions"] == 0
        # Other methods and paths still go through the router.
        assert (await client.get("/webhook/alertmanager")).status_code == 405
        slash = await client.post(
            "/webhook/alertmanager/", content=body(payload), headers=JSON, follow_redirects=False
        )
        assert slash.status_code == 307
        assert slash.headers["location"].endswith("/webhook/alertmanager")
        metrics = (await client.get("/metrics")).text
    assert 'alertrelay_webhooks_total{code="200",source="alertmanager"} 2.0' in metrics
