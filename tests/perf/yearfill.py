"""A year of a busy site, written straight into a migrated database.

A bulk loader, not the webhook path (a million transitions through HTTP
would take hours on two cores): but every row is built by the store's own
code, so the rows are the ones ingest and delivery write. Alert rows come
from ``AlertRecord`` through the store's column mapping, transitions from
``TransitionRow``, notifications from ``fanout.notification_rows`` (their
idempotency and ordering keys, incident key and payload) with the columns
delivery sets when it sends one or gives up, and one delivery attempt per
send (a few with a retry before it).

The shape: ``alerts`` distinct alerts (kube-prometheus-like labels), each
with ``occurrences`` fire/resolve cycles spread over the last 365 days, so
``2 * alerts * occurrences`` transitions and as many notifications (one
webhook integration); ``firing_share`` of the alerts are firing now (their
last occurrence has no resolve yet), 1% of notifications are dead letters,
3% needed a retry. A third of the occurrences were acknowledged (an ``ack``
row of the alert's ack history, and an ``ended`` row when it resolved; a
firing alert acked now carries its ack on its row, as the store writes it),
and the critical alerts' occurrences each have a chat message reference
(``message_refs``, as a Slack ``update_message`` destination leaves them),
pointing at that occurrence's last notification.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.config.compiled import compile_config
from app.config.model import parse_config
from app.core.domain import (
    AckAction,
    AckRow,
    AlertRecord,
    NoticeKind,
    Status,
    TransitionRow,
    alert_message_key,
    integration_key,
    isoformat,
)
from app.core.fanout import notice_payload, notification_rows
from app.core.fingerprint import fingerprint
from app.core.notices import Notice, incident_key
from app.store.alerts import _notification_values, _row_values, _transition_values, ack_values
from app.store.engine import sync_url
from app.store.tables import (
    alert_acks,
    alert_transitions,
    alerts,
    delivery_attempts,
    message_refs,
    notifications,
    quarantined_alerts,
)

ACK_SHARE = 1 / 3  # of occurrences
CHAT = integration_key("hook", "slack", 0)  # where the critical alerts' messages are

CONFIG = """
route: {receiver: hook}
receivers: [{name: hook, webhook_configs: [{url: "http://127.0.0.1:9/hook"}]}]
retention: {resolved_alerts: 100y, transitions: 100y, notifications: 100y, dead_letters: 100y, delivery_attempts: 100y, quarantine: 100y, audit: 100y}
"""

_NAMES = [
    "KubePodCrashLooping",
    "NodeFilesystemSpaceFillingUp",
    "TargetDown",
    "KubeDeploymentReplicasMismatch",
    "HighErrorRate",
    "CPUThrottlingHigh",
    "KubeJobFailed",
]


@dataclass
class Filled:
    alerts: int = 0
    transitions: int = 0
    notifications: int = 0
    delivery_attempts: int = 0
    quarantined_alerts: int = 0
    acks: int = 0
    message_refs: int = 0
    firing: list[str] | None = None  # fingerprints of firing alerts
    busiest: str = ""  # an alert with a full history (for the detail page)


def _labels(i: int, rng: random.Random) -> dict[str, str]:
    return {
        "alertname": _NAMES[i % len(_NAMES)],
        "namespace": f"team-{i % 37}",
        "pod": f"svc-{i:06d}-{rng.randrange(16**5):05x}",
        "instance": f"10.{i // 62500}.{(i // 250) % 250}.{i % 250}:9100",
        "job": "kubernetes-pods",
        "severity": ["critical", "warning", "warning", "info"][i % 4],
        "prometheus": "monitoring/k8s",
    }


def _alert_history(
    i: int, rng: random.Random, now: datetime, occurrences: int, firing: bool, runtime: Any
) -> tuple[
    dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[Any]
]:
    """The alert's row, transitions, notifications, ack history and message
    references (each ``(index of its notification in the list, row)``)."""
    labels = _labels(i, rng)
    fp = fingerprint(labels)
    annotations = {
        "summary": f"{labels['alertname']} on {labels['pod']}",
        "description": f"Pod {labels['namespace']}/{labels['pod']} has been restarting 3 times in the last 10 minutes.",
    }
    routed = runtime.route(labels)
    runbook = runtime.runbook(labels, annotations)
    year = timedelta(days=365)
    starts = sorted(
        now - year + timedelta(seconds=rng.uniform(0, year.total_seconds() - 7200))
        for _ in range(occurrences)
    )
    rec = AlertRecord(
        fingerprint=fp,
        labels=labels,
        annotations=annotations,
        status=Status.FIRING,
        starts_at=starts[0],
        ends_at=None,
        generator_url="http://prometheus-k8s-0:9090/graph?g0.expr=up",
        source="alertmanager",
        group_key=f'{{}}:{{alertname="{labels["alertname"]}"}}',
        first_seen=starts[0],
        last_seen=starts[0],
        last_changed=starts[0],
        runbook_url=runbook.url,
        runbook_source=runbook.source,
    )
    transitions: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    acks: list[dict[str, Any]] = []
    refs: list[tuple[int, dict[str, Any]]] = []
    previous: Status | None = None
    ack_now: AckRow | None = None
    for k, occurrence in enumerate(starts):
        last = k == len(starts) - 1
        ends = occurrence + timedelta(minutes=rng.uniform(2, 120))
        if not last:
            ends = min(ends, starts[k + 1] - timedelta(seconds=1))
        steps = (
            [(Status.FIRING, occurrence)]
            if (last and firing)
            else [(Status.FIRING, occurrence), (Status.RESOLVED, ends)]
        )
        key = incident_key(fp, occurrence)
        for status, at in steps:
            received = at + timedelta(milliseconds=rng.uniform(5, 900))
            transitions.append(
                _transition_values(
                    TransitionRow(
                        fp, occurrence, previous, status, at, received, False, None, "alertmanager"
                    )
                )
            )
            previous = status
            rec = replace(
                rec,
                status=status,
                starts_at=occurrence,
                ends_at=None if status is Status.FIRING else at,
                last_seen=received,
                last_changed=received,
                incident_key=key if status is Status.FIRING else None,
            )
            kind = NoticeKind.FIRING if status is Status.FIRING else NoticeKind.RESOLVED
            notice = Notice(kind, status, occurrence, key, f"{kind}|{isoformat(occurrence)}")
            payload = notice_payload(
                rec, notice, received, am_receiver="alertrelay", group_firing=1
            )
            for row in notification_rows(rec, notice, payload, routed, runtime, received):
                notes.append(_notification_values(row))
        if rng.random() < ACK_SHARE:
            ack = AckRow(
                fp,
                occurrence,
                AckAction.ACK,
                rng.choice(["alice", "bob", "oncall-link:hook"]),
                rng.choice(["api", "link", "console"]),
                "looking",
                None,
                occurrence + timedelta(minutes=rng.uniform(1, 2)),
            )
            acks.append(ack_values(ack))
            if len(steps) == 2:
                acks.append(
                    ack_values(replace(ack, action=AckAction.ENDED, via="lifecycle", at=ends))
                )
            else:
                ack_now = ack
        if labels["severity"] == "critical":
            last_note = notes[-1]
            refs.append(
                (
                    len(notes) - 1,
                    {
                        "integration": CHAT,
                        "message_key": alert_message_key(fp, occurrence, key),
                        "ref": {"channel": "C0ALERTS", "ts": f"{occurrence.timestamp():.6f}"},
                        "state_at": last_note["created_at"],
                        "updated_at": last_note["created_at"] + timedelta(seconds=1),
                    },
                )
            )
    if firing:
        rec = replace(rec, next_renotify_at=now + timedelta(hours=rng.uniform(0, 4)))
    row = _row_values(rec)
    if ack_now is not None:
        row.update(
            ack_at=ack_now.at, ack_by=ack_now.actor, ack_via=ack_now.via, ack_comment="looking"
        )
    return row, transitions, notes, acks, refs


def _delivered(
    notes: list[dict[str, Any]], rng: random.Random, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """Mark notifications sent (or dead) as delivery would; their attempts, keyed by row index."""
    attempts: list[tuple[int, dict[str, Any]]] = []
    for index, n in enumerate(notes):
        created: datetime = n["created_at"]
        roll = rng.random()
        tries = 3 if roll < 0.01 else (2 if roll < 0.04 else 1)
        t = created
        for attempt in range(1, tries + 1):
            duration = rng.uniform(20, 400)
            done = t + timedelta(milliseconds=duration)
            final = attempt == tries
            dead = roll < 0.01
            outcome = ("dead" if dead else "sent") if final else "retry"
            attempts.append(
                (
                    index,
                    {
                        "attempt": attempt,
                        "worker": "bench-1",
                        "started_at": t,
                        "finished_at": done,
                        "outcome": outcome,
                        "status_code": (400 if dead else 200) if final else 503,
                        "error": ("webhook: HTTP 400" if dead else None)
                        if final
                        else "webhook: HTTP 503",
                        "duration_ms": duration,
                    },
                )
            )
            t = done + timedelta(seconds=2**attempt)
        n.update(attempts=tries, sent_at=None, dead_at=None, last_error=None, last_status_code=None)
        n["next_attempt_at"] = t - timedelta(seconds=2**tries) - timedelta(milliseconds=1)
        if roll < 0.01:
            n.update(status="dead", dead_at=t, last_error="webhook: HTTP 400", last_status_code=400)
        else:
            n.update(status="sent", sent_at=t)
    return notes, attempts


def _chunks(total: int, size: int, first: int = 0) -> Iterator[range]:
    for start in range(first, first + total, size):
        yield range(start, min(first + total, start + size))


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    conn.execute(table.insert(), rows)


def _copy(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY: the same values, ten times faster than INSERTs."""
    from psycopg.types.json import Jsonb

    if not rows:
        return
    columns = list(rows[0])
    json_columns = {
        c
        for c in columns
        if isinstance(table.c[c].type, sa.JSON) or "JSON" in type(table.c[c].type).__name__.upper()
    }
    raw: Any = conn.connection.driver_connection
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_columns else row[c] for c in columns])


def fill(
    db_url: str,
    *,
    alerts_count: int,
    occurrences: int = 5,
    firing_share: float = 0.02,
    seed: int = 2026,
    chunk: int = 500,
    progress: bool = True,
    start: int = 0,
) -> Filled:
    """Write the year; the database must be migrated, and empty unless
    ``start`` names the first alert number to add after an earlier fill."""
    rng = random.Random(seed + start)
    runtime = compile_config(parse_config(CONFIG, "year.yml", {}))
    now = datetime.now(UTC)
    engine = sa.create_engine(sync_url(db_url))
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _fast(dbapi: Any, _: Any) -> None:  # a loader may lose its work on a crash
            dbapi.execute("PRAGMA journal_mode=WAL")
            dbapi.execute("PRAGMA synchronous=OFF")

    out = Filled(firing=[])
    with engine.connect() as conn:
        next_id = int(conn.execute(sa.select(sa.func.max(notifications.c.id))).scalar() or 0) + 1
    write = _copy if engine.dialect.name == "postgresql" else _insert
    firing_every = max(1, round(1 / firing_share)) if firing_share else 0
    with engine.connect() as conn:
        for block in _chunks(alerts_count, chunk, start):
            alert_rows, trans_rows, note_rows, ack_rows = [], [], [], []
            ref_rows: list[dict[str, Any]] = []
            for i in block:
                firing = bool(firing_every) and i % firing_every == 0
                a, t, n, acked, refs = _alert_history(i, rng, now, occurrences, firing, runtime)
                alert_rows.append(a)
                trans_rows += t
                ack_rows += acked
                for index, ref in refs:
                    ref_rows.append({**ref, "notification_id": next_id + len(note_rows) + index})
                note_rows += n
                if firing:
                    out.firing.append(a["fingerprint"])  # type: ignore[union-attr]
            note_rows, attempts = _delivered(note_rows, rng, now)
            for offset, n in enumerate(note_rows):
                n["id"] = next_id + offset
            attempt_rows = [
                {"notification_id": next_id + index, **values} for index, values in attempts
            ]
            next_id += len(note_rows)
            with conn.begin():
                write(conn, alerts, alert_rows)
                write(conn, alert_transitions, trans_rows)
                write(conn, notifications, note_rows)
                write(conn, delivery_attempts, attempt_rows)
                write(conn, alert_acks, ack_rows)
                write(conn, message_refs, ref_rows)
            out.acks += len(ack_rows)
            out.message_refs += len(ref_rows)
            out.alerts += len(alert_rows)
            out.transitions += len(trans_rows)
            out.notifications += len(note_rows)
            out.delivery_attempts += len(attempt_rows)
            if progress and (block.stop // chunk) % 20 == 0:
                print(f"  loaded {out.alerts} alerts, {out.transitions} transitions", flush=True)
        quarantine = [
            {
                "received_at": now - timedelta(days=rng.uniform(0, 365)),
                "source": "alertmanager",
                "group_key": "{}",
                "reason": "startsAt: invalid time",
                "alert_json": '{"labels":{}}',
            }
            for _ in range(max(10, alerts_count // 100))
        ]
        with conn.begin():
            conn.execute(quarantined_alerts.insert(), quarantine)
        out.quarantined_alerts = len(quarantine)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT setval('notifications_id_seq', {next_id})")
            conn.commit()
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        # SQLite gets no ANALYZE: alertrelay never runs one, so a real
        # installation plans its queries without statistics too.
    engine.dispose()
    out.busiest = out.firing[0] if out.firing else ""
    return out
