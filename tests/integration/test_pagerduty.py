"""pagerduty_configs against FakePagerDuty served by uvicorn.

The exact Events API v2 body for trigger and resolve, the severity mapping, the 1,024-character summary and 512 KB event limits with their
markers, the dedup_key (per occurrence by default, sha256 of the groupKey
with ``dedup_by: group``, never over 255 characters), and, through the app on
SQLite and PostgreSQL, fire then resolve ending with every incident resolved.
The fake validates events as PagerDuty does, so "accepted" below means the
real service would have taken the event too.
"""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config.globals import GlobalConfig
from app.core.message import Message, build_message
from app.delivery.worker import DeliveryWorker
from app.notifiers import build_notifier
from app.notifiers.base import BuildContext, DeliveryError, Notifier
from app.notifiers.http import make_client
from app.notifiers.pagerduty import _TOO_LARGE, PagerDutyConfig
from app.ops.clock import ManualClock, SystemClock
from tests.conformance import CANARY_KEY, Case
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import FakePagerDuty, Reply, pd_invalid, serve

KEY = "R0UT1NGKEY0123456789abcdef012345"
DEDUP = "alertrelay/0123456789abcdef/20261122T100000.000000Z"
RUNBOOK = "https://runbooks.example.com/diskfull"
GENERATOR = "http://prometheus:9090/graph?g0.expr=up"
LABELS = {
    "alertname": "DiskFull",
    "severity": "critical",
    "instance": "db-1",
    "job": "node",
    "namespace": "prod",
}
ANNOTATIONS = {"summary": "disk almost full", "description": "92% used on /var"}
GROUP_KEY_1 = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"  # sha256("1")


def message(kind: str = "firing", drop: tuple[str, ...] = (), **changes: Any) -> Message:
    payload: dict[str, Any] = {
        "kind": kind,
        "status": "resolved" if kind == "resolved" else "firing",
        "fingerprint": "0123456789abcdef",
        "alertname": "DiskFull",
        "labels": dict(LABELS),
        "annotations": dict(ANNOTATIONS),
        "severity": "critical",
        "starts_at": "2026-11-22T10:00:00Z",
        "ends_at": None,
        "generator_url": GENERATOR,
        "runbook_url": RUNBOOK,
        "dedup_key": DEDUP,
        "group_key": '{}:{alertname="DiskFull"}',
        "group_firing": 0 if kind == "resolved" else 1,
        "duplicates": 2,
        "flap": {"score": 1.0, "flapping": False, "transitions": 1},
    }
    payload.update(changes)
    for key in drop:
        del payload[key]
    return build_message(
        payload, notification_id=1, idempotency_key="k" * 64, receiver="page", attempt=1
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakePagerDuty, str]]:
    sink = FakePagerDuty()
    with serve(sink) as url:
        yield sink, url


@asynccontextmanager
async def notifier(
    fake: tuple[FakePagerDuty, str], global_config: GlobalConfig | None = None, **config: Any
) -> AsyncIterator[tuple[Notifier, FakePagerDuty]]:
    sink, url = fake
    sink.reset()
    http = make_client()
    try:
        cfg = PagerDutyConfig.model_validate(
            {"routing_key": KEY, "url": f"{url}/v2/enqueue", **config}
        )
        ctx = BuildContext(
            global_config=global_config or GlobalConfig(), http=http, clock=SystemClock()
        )
        yield build_notifier("pagerduty", cfg, ctx), sink
    finally:
        await http.aclose()


def only_event(sink: FakePagerDuty) -> dict[str, Any]:
    """The one request the fake got; it must have been accepted."""
    (request,) = sink.requests()
    assert request.status == 202 and sink.rejected == [], sink.rejected
    return request.json()  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the body


async def test_exact_trigger_and_resolve_bodies(fake: tuple[FakePagerDuty, str]) -> None:
    async with notifier(fake, client="relay-prod", client_url="https://relay.example.com/ui") as (
        n,
        sink,
    ):
        assert await n.send(message()) is None
        trigger = only_event(sink)
        assert trigger == {
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": DEDUP,
            "payload": {
                "summary": "[FIRING] DiskFull (critical): disk almost full",
                "source": "db-1",
                "severity": "critical",
                "timestamp": "2026-11-22T10:00:00Z",
                "component": "node",
                "group": "prod",
                "class": "DiskFull",
                "custom_details": {
                    "text": "92% used on /var\nLabels: instance=db-1, job=node, namespace=prod, severity=critical\nRunbook: "
                    + RUNBOOK,
                    "kind": "firing",
                    "status": "firing",
                    "fingerprint": "0123456789abcdef",
                    "labels": LABELS,
                    "annotations": ANNOTATIONS,
                    "starts_at": "2026-11-22T10:00:00Z",
                    "duplicates": 2,
                },
            },
            "links": [{"href": RUNBOOK, "text": "Runbook"}, {"href": GENERATOR, "text": "Source"}],
            "client": "relay-prod",
            "client_url": "https://relay.example.com/ui",
        }
        assert sink.requests()[0].headers["content-type"] == "application/json"
        assert sink.requests()[0].path == "/v2/enqueue"
        assert [i["open"] for i in sink.all_incidents()] == [True]

        sink.received.clear()
        assert await n.send(message("resolved")) is None
        # A resolve needs only the key: PagerDuty ignores the rest.
        assert only_event(sink) == {
            "routing_key": KEY,
            "event_action": "resolve",
            "dedup_key": DEDUP,
        }
    assert [i["open"] for i in sink.all_incidents()] == [False] and sink.dropped == []


async def test_client_url_defaults_to_the_external_url(fake: tuple[FakePagerDuty, str]) -> None:
    async with notifier(fake, GlobalConfig(external_url="https://alertrelay.example.com")) as (
        n,
        sink,
    ):
        await n.send(message())
        event = only_event(sink)
    assert (event["client"], event["client_url"]) == (
        "alertrelay",
        "https://alertrelay.example.com",
    )
    async with notifier(fake) as (n, sink):
        await n.send(message())
        assert "client_url" not in only_event(sink)


async def test_the_runbook_is_in_links_and_absent_links_are_omitted(
    fake: tuple[FakePagerDuty, str],
) -> None:
    async with notifier(fake) as (n, sink):
        await n.send(message(generator_url=""))
        assert only_event(sink)["links"] == [{"href": RUNBOOK, "text": "Runbook"}]
    async with notifier(fake) as (n, sink):
        await n.send(message(generator_url="", runbook_url=None))
        assert "links" not in only_event(sink)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "critical"),
        ("page", "critical"),
        ("PAGE", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("none", "info"),
        ("low", "info"),
        ("", "info"),
        (None, "info"),  # no severity label at all
    ],
)
async def test_severity_mapping(
    fake: tuple[FakePagerDuty, str], severity: str | None, expected: str
) -> None:
    labels = {k: v for k, v in LABELS.items() if k != "severity"}
    if severity is None:
        m = message(labels=labels, drop=("severity",))
    else:
        m = message(labels={**labels, "severity": severity}, severity=severity)
    async with notifier(fake) as (n, sink):
        await n.send(m)
        assert only_event(sink)["payload"]["severity"] == expected


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize("char", ["x", "é"])
async def test_a_long_summary_is_cut_to_1024_characters_with_a_marker(
    fake: tuple[FakePagerDuty, str], char: str
) -> None:
    async with notifier(fake) as (n, sink):
        await n.send(message(annotations={"summary": char * 3000}))
        summary = only_event(sink)["payload"]["summary"]
    assert len(summary) == 1024  # characters, not bytes
    assert summary.startswith("[FIRING] DiskFull (critical): " + char * 10)
    assert summary.endswith(char + "…")


async def test_a_summary_of_exactly_1024_characters_is_not_cut(
    fake: tuple[FakePagerDuty, str],
) -> None:
    prefix = "[FIRING] DiskFull (critical): "
    async with notifier(fake) as (n, sink):
        await n.send(message(annotations={"summary": "s" * (1024 - len(prefix))}))
        summary = only_event(sink)["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("ss")


@pytest.mark.parametrize("char", ["x", "é"])  # "é" is two bytes: the limit is in bytes
async def test_an_event_over_512_kb_loses_its_custom_details_with_a_marker(
    fake: tuple[FakePagerDuty, str], char: str
) -> None:
    huge = {"summary": "disk almost full", "description": char * 600_000}
    async with notifier(fake) as (n, sink):
        assert len(json.dumps({"d": huge["description"]}, ensure_ascii=False).encode()) > 512_000
        assert await n.send(message(annotations=huge)) is None
        (request,) = sink.requests()
        event = only_event(sink)
    assert len(request.body) < 512_000
    assert event["payload"]["custom_details"] == {
        "error": _TOO_LARGE,
        "fingerprint": "0123456789abcdef",
    }
    assert "512 KB" in _TOO_LARGE
    # Everything else of the event is still there.
    assert event["payload"]["summary"] == "[FIRING] DiskFull (critical): disk almost full"
    assert event["links"][0] == {"href": RUNBOOK, "text": "Runbook"}
    assert [i["open"] for i in sink.all_incidents()] == [True]


async def test_huge_labels_in_payload_fields_are_cut_too(fake: tuple[FakePagerDuty, str]) -> None:
    """A 600 KB job or namespace label reaches component and group, not only custom_details."""
    labels = {**LABELS, "job": "j" * 600_000, "namespace": "n" * 600_000}
    async with notifier(fake) as (n, sink):
        await n.send(message(labels=labels))
        (request,) = sink.requests()
        event = only_event(sink)
    assert len(request.body) < 512_000
    assert event["payload"]["custom_details"]["error"] == _TOO_LARGE
    for field_ in ("component", "group"):
        value = event["payload"][field_]
        assert len(value) == 1024 and value.endswith("…")
    assert event["payload"]["source"] == "db-1" and event["payload"]["class"] == "DiskFull"


# ------------------------------------------------------------------ dedup_key


async def test_dedup_key_is_the_occurrence_key_and_at_most_255_characters(
    fake: tuple[FakePagerDuty, str],
) -> None:
    async with notifier(fake) as (n, sink):
        await n.send(message())
        assert only_event(sink)["dedup_key"] == DEDUP
    long_key = "alertrelay/" + "f" * 400
    async with notifier(fake) as (n, sink):
        await n.send(message(dedup_key=long_key))
        key = only_event(sink)["dedup_key"]  # the fake refuses a key over 255
    assert key == long_key[:255]


@pytest.mark.parametrize(
    ("group_key", "expected"),
    [
        ("1", GROUP_KEY_1),
        (
            '{}:{alertname="HighLatency"}',
            "d4061866bc333de2350285b0452a21f78349e3d63b4f06b6c956f64f95d7be36",
        ),
    ],
)
async def test_dedup_by_group_is_sha256_of_the_group_key(
    fake: tuple[FakePagerDuty, str], group_key: str, expected: str
) -> None:
    assert hashlib.sha256(group_key.encode()).hexdigest() == expected
    async with notifier(fake, dedup_by="group") as (n, sink):
        await n.send(message(group_key=group_key))
        assert only_event(sink)["dedup_key"] == expected
        sink.received.clear()
        await n.send(message("resolved", group_key=group_key))
        assert only_event(sink) == {
            "routing_key": KEY,
            "event_action": "resolve",
            "dedup_key": expected,
        }
    assert [i["open"] for i in sink.all_incidents()] == [False]


async def test_dedup_by_group_does_not_resolve_while_the_group_still_fires(
    fake: tuple[FakePagerDuty, str],
) -> None:
    async with notifier(fake, dedup_by="group") as (n, sink):
        note = await n.send(message("resolved", group_key="1", group_firing=2))
        assert note == "not resolved: 2 alert(s) of its group still firing"
        assert sink.requests() == []


async def test_pagerduty_400_is_dead_and_quotes_its_errors(fake: tuple[FakePagerDuty, str]) -> None:
    async with notifier(fake) as (n, sink):
        sink.script(pd_invalid("Service key is the wrong length (should be 32 characters)"))
        with pytest.raises(DeliveryError) as info:
            await n.send(message())
    assert info.value.retryable is False and info.value.status_code == 400
    assert info.value.message == (
        "pagerduty: HTTP 400: Event object is invalid: Service key is the wrong length (should be 32 characters)"
    )


# ------------------------------------------------------------------ the fake is as strict as PagerDuty


async def test_the_fake_rejects_what_pagerduty_rejects(fake: tuple[FakePagerDuty, str]) -> None:
    sink, url = fake
    sink.reset()
    good = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "k1",
        "payload": {"summary": "s", "source": "h", "severity": "critical"},
    }
    bad = [
        {**good, "payload": {**good["payload"], "severity": "page"}},
        {**good, "payload": {**good["payload"], "severity": None}},
        {**good, "payload": {"source": "h", "severity": "info"}},  # no summary
        {**good, "payload": {**good["payload"], "summary": "s" * 1025}},
        {**good, "dedup_key": "k" * 256},
        {"routing_key": KEY, "event_action": "resolve"},  # a resolve needs its key
    ]
    async with httpx.AsyncClient() as client:
        for event in bad:
            r = await client.post(f"{url}/v2/enqueue", json=event)
            assert r.status_code == 400, event
            answer = r.json()
            assert (
                answer["status"] == "invalid event"
                and answer["message"] == "Event object is invalid"
            )
            assert answer["errors"]
        assert len(sink.rejected) == len(bad) and sink.all_incidents() == []

        # 1,024 characters is still fine; a trigger without a key gets one, and a new incident each time.
        ok = await client.post(
            f"{url}/v2/enqueue",
            json={**good, "payload": {**good["payload"], "summary": "s" * 1024}},
        )
        assert ok.status_code == 202 and ok.json()["dedup_key"] == "k1"
        keyless = {k: v for k, v in good.items() if k != "dedup_key"}
        first = await client.post(f"{url}/v2/enqueue", json=keyless)
        second = await client.post(f"{url}/v2/enqueue", json=keyless)
    assert first.status_code == second.status_code == 202
    generated = {first.json()["dedup_key"], second.json()["dedup_key"]}
    assert len(generated) == 2 and "k1" not in generated
    assert len(sink.open_incidents()) == 3


# ------------------------------------------------------------------ through the app


def app_config(pd_url: str, **pagerduty: str) -> str:
    extra = "".join(f", {k}: {v}" for k, v in pagerduty.items())
    return f"""
delivery: {{initial_backoff: 1s, max_backoff: 1s, timeout: 2s, lease: 10s}}
flapping: {{enabled: false}}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route: {{receiver: page}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue"{extra}}}]
"""


@asynccontextmanager
async def app_with_fake(
    db_url: str, **pagerduty: str
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakePagerDuty, ManualClock]]:
    pd = FakePagerDuty()
    clock = ManualClock(T0 + timedelta(minutes=1))
    with serve(pd) as pd_url:
        async with running_app(db_url, app_config(pd_url, **pagerduty), clock=clock) as (
            app,
            client,
        ):
            yield app, client, pd, clock


async def post(
    client: httpx.AsyncClient,
    status: str,
    *,
    starts_at: Any = T0,
    group_key: str = '{}:{alertname="DiskFull"}',
) -> None:
    alert = am_alert(
        {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
        status=status,
        starts_at=starts_at,
    )
    r = await client.post(
        "/webhook/alertmanager",
        content=body(am_webhook([alert], group_key=group_key)),
        headers=JSON,
    )
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    worker: DeliveryWorker = app.state.services.delivery
    async with asyncio.timeout(30):
        await worker.drain()


def accepted(pd: FakePagerDuty) -> list[dict[str, Any]]:
    assert pd.rejected == [], pd.rejected
    return [r.json() for r in pd.requests() if r.status == 202]


async def test_default_dedup_key_is_stable_per_occurrence_and_new_for_a_new_one(
    db_url: str,
) -> None:
    async with app_with_fake(db_url) as (app, client, pd, clock):
        pd.script(Reply(500, "try again"))
        await post(client, "firing")
        await drain(app)
        clock.advance(5)  # past the 1 s backoff: the retry goes out
        await drain(app)
        await post(client, "resolved")
        await drain(app)

        # A new occurrence of the same alert, an hour later.
        clock.advance(3600)
        later = T0 + timedelta(hours=1)
        await post(client, "firing", starts_at=later)
        await drain(app)
        await post(client, "resolved", starts_at=later)
        await drain(app)

    events = accepted(pd)
    actions = [(e["event_action"], e["dedup_key"]) for e in events]
    first, second = actions[0][1], actions[2][1]
    assert actions == [
        ("trigger", first),
        ("resolve", first),
        ("trigger", second),
        ("resolve", second),
    ]
    assert first != second and all(len(k) <= 255 for _, k in actions)
    # The failed attempt and its retry carried the same key.
    assert [(r.status, r.json()["dedup_key"]) for r in pd.requests()[:2]] == [
        (500, first),
        (202, first),
    ]
    incidents = pd.all_incidents()
    assert [(i["dedup_key"], i["open"]) for i in incidents] == [(first, False), (second, False)]
    assert pd.dropped == [] and pd.open_incidents() == []
    for event in (events[0], events[2]):
        assert {"href": "https://runbooks.example.com/diskfull", "text": "Runbook"} in event[
            "links"
        ]
        assert event["payload"]["severity"] == "critical"
    # The key the app stored for each notification is the key PagerDuty got.
    stored = {r["dedup_key"] for r in table_rows(db_url, "notifications")}
    assert stored == {first, second}
    assert {r["status"] for r in table_rows(db_url, "notifications")} == {"sent"}


async def test_dedup_by_group_through_the_app(db_url: str) -> None:
    async with app_with_fake(db_url, dedup_by="group") as (app, client, pd, clock):
        await post(client, "firing", group_key="1")
        await drain(app)
        assert [i["open"] for i in pd.open_incidents()] == [True]
        await post(client, "resolved", group_key="1")
        await drain(app)
    assert [(e["event_action"], e["dedup_key"]) for e in accepted(pd)] == [
        ("trigger", GROUP_KEY_1),
        ("resolve", GROUP_KEY_1),
    ]
    assert [(i["dedup_key"], i["open"]) for i in pd.all_incidents()] == [(GROUP_KEY_1, False)]
    assert pd.dropped == []
    assert accepted(pd)[0]["links"][0] == {
        "href": "https://runbooks.example.com/diskfull",
        "text": "Runbook",
    }


# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    FakePagerDuty,
    lambda url: {"routing_key": CANARY_KEY, "url": f"{url}/v2/enqueue"},
    Reply(202, {"status": "success", "message": "Event processed"}),
)
