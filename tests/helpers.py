"""Payload builders and small utilities shared by the tests."""

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from app.core.fingerprint import fingerprint

if TYPE_CHECKING:
    from app.core.message import Message
    from app.notifiers.base import Notifier

ZERO_TIME = "0001-01-01T00:00:00Z"
T0 = datetime(2026, 11, 21, 19, 16, 43, tzinfo=UTC)


def ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def am_alert(
    labels: dict[str, str],
    status: str = "firing",
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": annotations or {"summary": f"{labels.get('alertname', '')} summary"},
        "startsAt": ts(starts_at),
        "endsAt": ts(ends_at)
        if ends_at
        else (ZERO_TIME if status == "firing" else ts(starts_at + timedelta(minutes=5))),
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": fingerprint(labels),
    }
    alert.update(extra)
    return alert


def am_webhook(
    alerts: list[dict[str, Any]], group_key: str = '{}:{alertname="Test"}', **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receiver": "alertrelay",
        "status": "firing" if any(a.get("status") == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
    body.update(extra)
    return body


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


JSON = {"Content-Type": "application/json"}


async def eventually(
    check: Callable[[], Awaitable[Any]],
    within: float = 10.0,
    what: str = "",
    interval: float = 0.02,
) -> Any:
    """Poll an async check until it returns something truthy; fail after ``within`` seconds.

    Tests wait for the state they assert, not for a fixed time: on a loaded
    machine a background step can take far longer than usual, and on a quiet
    one the wait ends at once."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or check}: not within {within} s (last: {last!r})")
        await asyncio.sleep(interval)


def sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def settle_sqlite_threads(before: set[threading.Thread], within: float = 10.0) -> None:
    """Wait until the aiosqlite threads started since ``before`` have exited.

    A failed connect hands its "stop" to the connection's thread without
    waiting; if the test's event loop closes before that thread gets the CPU,
    the thread raises "Event loop is closed" into whichever test runs next
    (seen under CPU load after test_health_unhealthy_when_database_is_gone)."""
    deadline = time.monotonic() + within
    while alive := sqlite_threads() - before:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(alive)} SQLite connection thread(s) still running {within} s after the app stopped"
            )
        await asyncio.sleep(0.01)


LOG_CONFIG = """
route:
  receiver: default
receivers:
  - name: default
    log_configs: [{}]
"""

TWO_ROUTES_CONFIG = """
runbooks:
  default: "https://runbooks.example.com/{{ labels.alertname | lower }}"
  rules:
    - matchers: ['alertname=~"Disk.*"']
      url: "https://wiki.example.com/storage#{{ labels.alertname }}"
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      continue: true
    - matchers: ['severity=~"critical|warning"']
      receiver: mail
receivers:
  - name: page
    webhook_configs: [{url: "http://127.0.0.1:9/page"}]
    log_configs: [{}]
  - name: mail
    webhook_configs: [{url: "http://127.0.0.1:9/mail", send_resolved: false}]
  - name: chat
    log_configs: [{}]
"""


def table_rows(db_url: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    """Read a table directly, typed as the app reads it (tests may use SQL; the app keeps it in app/store)."""
    import sqlalchemy as sa

    from app.store.engine import sync_url
    from app.store.tables import metadata

    t = metadata.tables[table]
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.select(t).order_by(*[t.c[c] for c in order.split(",")]))
            return [dict(r._mapping) for r in result]
    finally:
        engine.dispose()


async def terminate_backends(db_url: str, pids: "set[int] | list[int]") -> None:
    """End these PostgreSQL backends of ``db_url``'s database, as a restart or an
    idle timeout would, and wait (bounded: 5 s) until the server has closed them."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    admin = url.set(database="postgres", drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(pids),)
        )
        for _ in range(100):
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid = ANY(%s)",
                (url.database, list(pids)),
            ).fetchone()
            if left == (0,):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the server did not close the connections")
    await asyncio.sleep(0.05)  # the sockets' end of file, after the process exit


def count(db_url: str, table: str, where: str = "1=1") -> int:
    import sqlalchemy as sa

    from app.store.engine import sync_url

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
            )
    finally:
        engine.dispose()


def notice_payload(kind: str = "firing", **over: Any) -> dict[str, Any]:
    """An outbox payload as ingest stores it: a critical DiskFull, with a runbook.

    ``kind`` is a NoticeKind value; the status follows it (only a resolve
    reports the alert resolved). Each sink's tests override what they probe."""
    data: dict[str, Any] = {
        "kind": kind,
        "status": "resolved" if kind == "resolved" else "firing",
        "fingerprint": "0123456789abcdef",
        "alertname": "DiskFull",
        "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
        "annotations": {"summary": "disk almost full", "description": "/var is 97% full"},
        "severity": "critical",
        "starts_at": "2026-11-22T10:00:00Z",
        "ends_at": None,
        "generator_url": "http://prometheus:9090/graph?g0.expr=up&g0.tab=1",
        "runbook_url": "https://runbooks.example.com/diskfull",
        "dedup_key": "alertrelay/0123456789abcdef/20261122T100000.000000Z",
        "group_key": '{}:{alertname="DiskFull"}',
        "group_firing": 1,
        "duplicates": 0,
        "flap": {"score": 0.0, "flapping": False, "transitions": 0},
    }
    data.update(over)
    return data


def sink_message(
    payload: dict[str, Any], cfg: Any = None, *, receiver: str = "team", notification_id: int = 1
) -> "Message":
    """The message as the delivery attempt builds it, with the config's title/text overrides."""
    from app.core.message import build_message, compile_template

    return build_message(
        payload,
        notification_id=notification_id,
        idempotency_key="k" * 64,
        receiver=receiver,
        attempt=1,
        title=compile_template(cfg.title) if cfg else None,
        text=compile_template(cfg.text) if cfg else None,
    )


@asynccontextmanager
async def sink_notifier(
    name: str, cfg: Any, global_config: Any = None
) -> AsyncIterator["Notifier"]:
    """The registered notifier for ``cfg``, on its own HTTP client, closed afterwards."""
    from app.config.globals import GlobalConfig
    from app.notifiers import build_notifier
    from app.notifiers.base import BuildContext
    from app.notifiers.http import make_client
    from app.ops.clock import SystemClock

    http = make_client()
    try:
        ctx = BuildContext(
            global_config=global_config or GlobalConfig(), http=http, clock=SystemClock()
        )
        yield build_notifier(name, cfg, ctx)
    finally:
        await http.aclose()


@contextmanager
def sent_statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every (SQL, parameters) ``engine`` (sync or async) sends to its driver meanwhile."""
    import sqlalchemy as sa

    target = getattr(engine, "sync_engine", engine)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(target, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(target, "before_cursor_execute", record)
