"""Retention: what pruning deletes, and everything it must keep, on SQLite and PostgreSQL.

History is made through the real app (webhooks, delivery to local sinks)
with a hand-moved clock, then the sweeper's pruner runs at a later time.
"""

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config.sections import RetentionConfig
from app.core.fingerprint import fingerprint
from app.ops.clock import ManualClock
from app.store.engine import Database
from app.store.retention import RULES, Cutoffs, prune, selection
from app.sweeper.prune import prune_command
from tests.conftest import load, running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, count, table_rows
from tests.sinks import FakePagerDuty, Reply, serve

KEY = "RETENTIONKEY0123456789abcdef0123"
DAY = 86400.0


def config(pd_url: str, extra: str = "") -> str:
    return f"""
{extra}
delivery: {{initial_backoff: 1s, max_backoff: 60s, timeout: 2s, lease: 10s}}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


@asynccontextmanager
async def relay(
    db_url: str, extra: str = ""
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakePagerDuty, ManualClock]]:
    pd = FakePagerDuty()
    clock = ManualClock(T0)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url, extra), clock=clock) as (app, client):
            yield app, client, pd, clock


def labels(name: str) -> dict[str, str]:
    return {"alertname": name, "severity": "critical"}


async def post(
    client: httpx.AsyncClient,
    name: str,
    status: str,
    starts: datetime,
    ends: datetime | None = None,
) -> None:
    alert = am_alert(labels(name), status=status, starts_at=starts, ends_at=ends)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def deliver(app: Starlette) -> None:
    async with asyncio.timeout(30):
        await app.state.services.delivery.drain()


async def prune_all(app: Starlette) -> dict[str, int]:
    """The sweeper's pruning, tick after tick until it has nothing left."""
    total: dict[str, int] = {}
    for _ in range(50):
        report = await app.state.services.sweeper.pruner.tick()
        for table, n in report.deleted.items():
            total[table] = total.get(table, 0) + n
        if report.complete and not any(report.deleted.values()):
            return total
    raise AssertionError("pruning did not finish in 50 ticks")


def fp(name: str) -> str:
    return fingerprint(labels(name))


def notes(db_url: str, name: str) -> list[dict]:
    return [r for r in table_rows(db_url, "notifications") if r["fingerprint"] == fp(name)]


# ------------------------------------------------------------------ alerts


async def test_a_firing_alert_older_than_retention_is_kept_and_its_resolve_closes_the_incident(
    db_url: str,
) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        await post(client, "Forever", "firing", T0)  # fires, and is never heard of again for months
        await post(client, "Gone", "firing", T0)
        clock.advance(60)
        await post(client, "Gone", "resolved", T0, T0 + timedelta(minutes=1))
        await deliver(app)
        assert len(pd.open_incidents()) == 1

        clock.advance(200 * DAY)  # past every retention but audit
        deleted = await prune_all(app)
        assert deleted["alerts"] == 1 and deleted["alert_transitions"] == 2
        assert count(db_url, "alerts", f"fingerprint = '{fp('Forever')}'") == 1
        assert count(db_url, "alerts", f"fingerprint = '{fp('Gone')}'") == 0
        # The firing alert's current occurrence keeps its transition...
        kept = [
            t for t in table_rows(db_url, "alert_transitions") if t["fingerprint"] == fp("Forever")
        ]
        assert [t["to_status"] for t in kept] == ["firing"]
        # ...and so does its sent trigger: the incident is open, and an ack
        # finds the destinations to tell by it.
        assert [(n["kind"], n["status"]) for n in notes(db_url, "Forever")] == [("firing", "sent")]

        await post(client, "Forever", "resolved", T0, clock.now())
        await deliver(app)
    resolve = [n for n in notes(db_url, "Forever") if n["kind"] == "resolved"]
    assert [(n["kind"], n["status"]) for n in resolve] == [("resolved", "sent")]
    assert pd.open_incidents() == []  # the resolve found the trigger's dedup_key
    # Two incidents were opened (Forever and Gone) by concurrent sends, in
    # either order: the resolve's key is one of them, and none is left open.
    assert resolve[0]["dedup_key"] in {i["dedup_key"] for i in pd.all_incidents()}


async def test_a_resolved_alert_younger_than_retention_is_kept(db_url: str) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        await post(client, "Recent", "firing", T0)
        await post(client, "Recent", "resolved", T0, T0 + timedelta(minutes=1))
        await deliver(app)
        clock.advance(29 * DAY)
        deleted = await prune_all(app)
    assert deleted["alerts"] == 0 and deleted["alert_transitions"] == 0
    assert count(db_url, "alert_transitions") == 2 and count(db_url, "alerts") == 1


async def test_a_flapping_alert_is_kept_with_its_flap(db_url: str) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        for i in range(6):  # toggles every 5 minutes: flapping from the fourth transition
            clock.set(T0 + timedelta(minutes=5 * i))
            occurrence = T0 + timedelta(minutes=10 * (i // 2))
            if i % 2 == 0:
                await post(client, "Flappy", "firing", occurrence)
            else:
                await post(client, "Flappy", "resolved", occurrence, clock.now())
        await deliver(app)
        (alert,) = table_rows(db_url, "alerts", "fingerprint")
        assert alert["flapping"] and alert["status"] == "resolved"
        # Jump far ahead without a sweep: the alert is still marked flapping.
        clock.advance(100 * DAY)
        deleted = await prune_all(app)
        assert deleted["alerts"] == 0
        # The transitions since the flap began stay; the four before it go.
        assert deleted["alert_transitions"] == 4
        kept = table_rows(db_url, "alert_transitions")
        assert [t["suppressed"] for t in kept] == ["flapping", "flapping"]
        assert min(t["at"] for t in kept) == alert["flap_started_at"]
        # Once the sweeper has ended the flap, the resolved alert goes at its time.
        await app.state.services.sweeper.sweep_once()
        await deliver(app)
        clock.advance(31 * DAY)
        deleted = await prune_all(app)
    assert deleted["alerts"] == 1 and count(db_url, "alert_transitions") == 0


async def test_old_transitions_of_a_long_lived_alert_go_but_its_current_occurrence_stays(
    db_url: str,
) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        await post(client, "Busy", "firing", T0)
        await post(client, "Busy", "resolved", T0, T0 + timedelta(minutes=1))
        clock.advance(95 * DAY)
        later = clock.now()
        await post(client, "Busy", "firing", later)  # a new occurrence, 95 days on
        await deliver(app)
        deleted = await prune_all(app)
    assert deleted["alert_transitions"] == 2 and deleted["alerts"] == 0
    (t,) = table_rows(db_url, "alert_transitions")
    assert t["to_status"] == "firing" and t["occurrence"] == later


# ------------------------------------------------------------------ notifications


async def test_a_pending_resolve_keeps_its_alert_trigger_and_attempts(db_url: str) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        await post(client, "Stuck", "firing", T0)
        await deliver(app)
        pd.default = Reply(500, "down")  # type: ignore[misc]
        clock.advance(60)
        await post(client, "Stuck", "resolved", T0, clock.now())
        await deliver(app)
        (_, resolve) = notes(db_url, "Stuck")
        assert resolve["status"] == "pending" and resolve["attempts"] == 1

        clock.advance(100 * DAY)  # the resolve is still queued (nothing delivered meanwhile)
        deleted = await prune_all(app)
        # Past their own ages: the transitions (90d) and the trigger's attempt
        # (14d). Kept: the alert, the pending resolve with its attempt, and the
        # sent trigger beside it.
        assert deleted["alert_transitions"] == 2 and deleted["delivery_attempts"] == 1
        assert deleted["alerts"] == 0 and deleted["notifications"] == 0
        assert count(db_url, "alerts") == 1
        assert [n["status"] for n in notes(db_url, "Stuck")] == ["sent", "pending"]
        (attempt,) = table_rows(db_url, "delivery_attempts")
        assert attempt["notification_id"] == resolve["id"]

        pd.default = Reply(202)  # type: ignore[misc]
        await deliver(app)
        assert pd.open_incidents() == []
        clock.advance(31 * DAY)
        deleted = await prune_all(app)
    assert deleted == {
        "alerts": 1,
        "alert_transitions": 0,
        "notifications": 2,
        "delivery_attempts": 2,
        "quarantined_alerts": 0,
        "audit_log": 0,
        "message_refs": 0,
        "alert_acks": 0,
        "alert_escalations": 0,
        "notification_alerts": 0,
        "alert_groups": 0,
    }


async def test_a_dead_letter_is_kept_until_dead_letters_and_still_knows_it_was_superseded(
    db_url: str,
) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        pd.script(Reply(400, "bad event"))  # the trigger dies at once
        await post(client, "Dead", "firing", T0)
        await deliver(app)
        clock.advance(60)
        await post(client, "Dead", "resolved", T0, clock.now())
        await deliver(app)
        trigger, resolve = notes(db_url, "Dead")
        assert (trigger["status"], resolve["status"]) == ("dead", "sent")

        clock.advance(89 * DAY)  # past notifications (30d) and attempts (14d), not dead_letters
        deleted = await prune_all(app)
        assert deleted["delivery_attempts"] == 2 and deleted["notifications"] == 0
        # The sent resolve stays beside the dead trigger: a replay must still
        # see that a later notification settled the incident.
        r = await client.post(f"/api/v1/notifications/{trigger['id']}/replay")
        assert r.status_code == 409 and "superseded" in r.json()["error"]

        clock.advance(2 * DAY)
        deleted = await prune_all(app)
    assert deleted["notifications"] == 2 and count(db_url, "notifications") == 0


async def test_quarantine_and_audit_entries_go_at_their_own_ages(db_url: str) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        bad = am_alert(labels("Bad"), startsAt="not a time")
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([bad])), headers=JSON
        )
        assert r.status_code == 200
        assert (
            await client.post("/-/reload")
        ).status_code == 400  # no config file: an audited refusal
        assert count(db_url, "quarantined_alerts") == 1 and count(db_url, "audit_log") == 1
        clock.advance(15 * DAY)
        deleted = await prune_all(app)
        assert deleted["quarantined_alerts"] == 1 and deleted["audit_log"] == 0
        clock.advance(351 * DAY)
        deleted = await prune_all(app)
        assert deleted["audit_log"] == 1
        metrics = (await client.get("/metrics")).text
    assert 'alertrelay_pruned_rows_total{table="quarantined_alerts"} 1.0' in metrics
    assert 'alertrelay_pruned_rows_total{table="audit_log"} 1.0' in metrics


async def test_a_run_carries_on_past_the_rows_it_keeps_and_misses_none_after_them(
    db_url: str,
) -> None:
    """Batches resume after the last row they deleted: the kept rows at the
    old end (a dead letter's sent sibling) are walked past once, and every
    deletable row after them still goes, one row per batch."""
    async with relay(db_url) as (app, client, pd, clock):
        pd.script(Reply(400, "bad event"))
        await post(client, "Dead", "firing", T0)
        await deliver(app)
        clock.advance(60)
        await post(client, "Dead", "resolved", T0, clock.now())
        for i in range(4):
            clock.advance(60)
            await post(client, f"Later{i}", "firing", clock.now())
            clock.advance(60)
            await post(
                client, f"Later{i}", "resolved", clock.now() - timedelta(seconds=60), clock.now()
            )
        await deliver(app)
        assert [n["status"] for n in notes(db_url, "Dead")] == ["dead", "sent"]
        db: Database = app.state.services.db
        cutoffs = Cutoffs.at(clock.now() + timedelta(days=40), RetentionConfig())
        report = await prune(db, cutoffs, rows=1, batches_per_rule=None)
    assert report.complete and report.deleted["notifications"] == 8
    assert [n["status"] for n in table_rows(db_url, "notifications")] == ["dead", "sent"]
    assert {n["fingerprint"] for n in table_rows(db_url, "notifications")} == {fp("Dead")}


def insert_message_refs(db_url: str, refs: list[tuple[str, str]], at: datetime) -> None:
    """Chat message references as an editing destination leaves them, all
    last touched at ``at`` (tests may write SQL; the app keeps it in app/store)."""
    import sqlalchemy as sa

    from app.store.engine import sync_url
    from app.store.tables import message_refs

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                message_refs.insert(),
                [
                    {
                        "integration": integration,
                        "message_key": key,
                        "ref": {"channel": "C1", "ts": f"1700000000.{i:06d}"},
                        "notification_id": i + 1,
                        "state_at": at,
                        "updated_at": at,
                    }
                    for i, (integration, key) in enumerate(refs)
                ],
            )
    finally:
        engine.dispose()


async def test_message_references_resume_past_open_incidents_and_miss_no_tie(
    db_url: str,
) -> None:
    """The references of open incidents' messages stay at the old end of the
    walk; a run passes them once and carries on. Every reference was last
    touched at the same instant, so the walk's order must break the tie by
    the key: one row a batch, none of the deletable ones after the kept ones
    is missed."""
    from app.core.domain import alert_message_key

    async with relay(db_url) as (app, client, pd, clock):
        for i in range(3):
            await post(client, f"Open{i}", "firing", T0)
        await deliver(app)
        kept = [("hook/a/0", alert_message_key(fp(f"Open{i}"), T0)) for i in range(3)]
        gone = [("hook/b/0", alert_message_key(f"{i:016x}", T0)) for i in range(5)]
        insert_message_refs(db_url, kept + gone, T0)
        db: Database = app.state.services.db
        cutoffs = Cutoffs.at(clock.now() + timedelta(days=40), RetentionConfig())
        report = await prune(db, cutoffs, rows=1, batches_per_rule=None)
    assert report.complete and report.deleted["message_refs"] == 5
    left = {
        (r["integration"], r["message_key"])
        for r in table_rows(db_url, "message_refs", "integration,message_key")
    }
    assert left == set(kept)


# ------------------------------------------------------------------ batches and replicas


async def make_history(
    client: httpx.AsyncClient, app: Starlette, clock: ManualClock, alerts: int
) -> None:
    """``alerts`` alerts that fired and resolved at T0 (one webhook each way)."""
    firing = [am_alert(labels(f"Old{i}"), starts_at=T0) for i in range(alerts)]
    r = await client.post("/webhook/alertmanager", content=body(am_webhook(firing)), headers=JSON)
    assert r.status_code == 200
    clock.advance(60)
    resolved = [
        am_alert(labels(f"Old{i}"), status="resolved", starts_at=T0, ends_at=clock.now())
        for i in range(alerts)
    ]
    r = await client.post("/webhook/alertmanager", content=body(am_webhook(resolved)), headers=JSON)
    assert r.status_code == 200
    await deliver(app)


async def test_a_run_deletes_each_pruned_alerts_history_in_bounded_batches_first(
    db_url: str,
) -> None:
    """The history of the alerts about to go is deleted a batch at a time
    before them (the alerts' own statements cascade to nothing): 30 alerts,
    60 transitions at one row a batch, all gone in one run."""
    async with relay(db_url) as (app, client, pd, clock):
        await make_history(client, app, clock, 30)
        db: Database = app.state.services.db
        cutoffs = Cutoffs.at(clock.now() + timedelta(days=40), RetentionConfig())
        report = await prune(db, cutoffs, rows=1, batches_per_rule=None)
    assert report.complete
    assert report.deleted["alert_transitions"] == 60 and report.deleted["alerts"] == 30
    for table in ("alerts", "alert_transitions", "notifications", "delivery_attempts"):
        assert count(db_url, table) == 0, table


async def test_one_prune_command_also_takes_what_a_later_rule_frees(db_url: str) -> None:
    """A dead letter past `dead_letters` goes after the sent resolve beside it
    (kept while the dead row was there): `alertrelay prune` runs another
    pass, so nothing past retention is left behind by one command."""
    pd = FakePagerDuty()
    long_ago = datetime.now(UTC) - timedelta(days=200)
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=ManualClock(long_ago)) as (
            app,
            client,
        ):
            pd.script(Reply(400, "bad event"))
            await post(client, "Dead", "firing", long_ago)
            await deliver(app)
            await post(client, "Dead", "resolved", long_ago, long_ago + timedelta(seconds=30))
            await deliver(app)
    assert [n["status"] for n in notes(db_url, "Dead")] == ["dead", "sent"]
    assert await prune_command(db_url, load(config("http://127.0.0.1:9")), dry_run=False) == 0
    assert count(db_url, "notifications") == 0 and count(db_url, "alerts") == 0


async def test_each_statement_deletes_at_most_its_batch(db_url: str) -> None:
    async with relay(db_url) as (app, client, pd, clock):
        await make_history(client, app, clock, 7)
        db: Database = app.state.services.db
        cutoffs = Cutoffs.at(clock.now() + timedelta(days=400), RetentionConfig())
        batches: list[tuple[str, int]] = []
        report = await prune(
            db, cutoffs, rows=3, batches_per_rule=1, on_batch=lambda t, n: batches.append((t, n))
        )
        assert not report.complete
        assert batches and max(n for _, n in batches) == 3
        report = await prune(db, cutoffs, rows=3, batches_per_rule=None)
        assert report.complete
    for table in ("alerts", "alert_transitions", "notifications", "delivery_attempts"):
        assert count(db_url, table) == 0, table


@pytest.mark.postgres
async def test_replicas_prune_together_while_ingest_goes_on(db_url: str) -> None:
    """Three pruners (three engines, as three replicas) and live ingest at once:
    every old row goes exactly once, nothing new goes, and nobody deadlocks."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL")
    async with relay(db_url) as (app, client, pd, clock):
        await make_history(client, app, clock, 300)
        before = {
            t: count(db_url, t)
            for t in ("alerts", "alert_transitions", "notifications", "delivery_attempts")
        }
        clock.advance(100 * DAY)
        cutoffs = Cutoffs.at(clock.now(), RetentionConfig())
        replicas = [Database(db_url) for _ in range(3)]

        async def ingest() -> None:
            for i in range(20):
                await post(client, f"Old{i}", "firing", clock.now())  # some old alerts come back

        try:
            results = await asyncio.gather(
                *(prune(db, cutoffs, rows=25, batches_per_rule=None) for db in replicas), ingest()
            )
        finally:
            for db in replicas:
                await db.dispose()
    reports = results[:3]
    assert all(r.lock_conflicts == 0 for r in reports)  # type: ignore[union-attr]
    gone = {t: sum(r.deleted[t] for r in reports) for t in before}  # type: ignore[union-attr]
    assert count(db_url, "alerts") == 20 and count(db_url, "alerts", "status = 'firing'") == 20
    # No row counted twice, none missed: what is left is what was there, less
    # what the pruners report, plus what ingest added (one transition and one
    # queued notification per alert that came back).
    assert count(db_url, "alert_transitions") == 20  # old history all gone, new firing kept
    assert gone["alert_transitions"] == before["alert_transitions"]
    assert count(db_url, "notifications") == before["notifications"] - gone["notifications"] + 20
    assert (
        count(db_url, "delivery_attempts")
        == before["delivery_attempts"] - gone["delivery_attempts"]
    )
    assert 280 <= gone["alerts"] <= 300
    # An old sent notification stays only beside its alert's new, unsent one.
    assert count(db_url, "notifications", "status = 'sent'") <= 40


# ------------------------------------------------------------------ statement shapes


def sqlite_plan(sqlite_url: str, rule_name: str, after: tuple[Any, ...] | None = None) -> list[str]:
    """SQLite's query plan of a rule's batch selection (resumed past ``after``), one step per line."""
    from sqlalchemy.dialects import sqlite

    (rule,) = [r for r in RULES if r.name == rule_name]
    cutoffs = Cutoffs.at(datetime.now(UTC), RetentionConfig())
    sql = str(
        selection(rule, cutoffs, 50, after).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]


def test_the_links_rule_walks_the_links_and_not_every_prunable_notification(
    sqlite_url: str,
) -> None:
    """As ``notification_id IN (SELECT …)``, SQLite listed every prunable
    notification before looking at one link: at a year's backlog, 10 s of
    write lock for a batch that deleted nothing (an ingest stall)."""
    plan = sqlite_plan(sqlite_url, "links of pruned notifications")
    assert plan[0].startswith("SCAN notification_alerts"), plan
    assert not [step for step in plan if step.startswith("LIST SUBQUERY")], plan
    assert "SEARCH notifications USING INTEGER PRIMARY KEY (rowid=?)" in plan


def test_a_message_reference_finds_its_alerts_unsent_rows_through_the_alert(
    sqlite_url: str,
) -> None:
    """An alert message's unsent rows are looked up by the alert's fingerprint,
    not by a list of every unsent or dead row built for each batch."""
    plan = sqlite_plan(sqlite_url, "old message references")
    assert any("notifications USING INDEX ix_notifications_fingerprint_id" in s for s in plan)


def test_a_resumed_walk_of_message_references_starts_where_the_last_batch_ended(
    sqlite_url: str,
) -> None:
    """Resumed, the walk seeks into the time index past the last reference it
    deleted, instead of reading the kept ones before it again."""
    after = (T0, "hook/slack/0", "a:0123456789abcdef:2026-01-01T00:00:00Z")
    plan = sqlite_plan(sqlite_url, "old message references", after)
    assert plan[0] == (
        "SEARCH message_refs USING INDEX ix_message_refs_updated_at (updated_at>? AND updated_at<?)"
    ), plan


async def test_a_prune_copies_sqlites_log_back_as_it_goes(sqlite_url: str, tmp_path: Path) -> None:
    """Between batches the pruner checkpoints the write-ahead log itself, so
    the commit that would take the log past SQLite's threshold (an ingest's,
    in the serving process) does not pay for copying it back: once the run
    is over, the database file alone, without its log, holds the deletions."""
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    alone = tmp_path / "file-alone.db"

    def count_alone(table: str) -> int:
        shutil.copy(path, alone)  # without its -wal
        with contextlib.closing(sqlite3.connect(alone)) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    async with relay(sqlite_url) as (app, client, pd, clock):
        await make_history(client, app, clock, 30)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert count_alone("alerts") == 30 and count_alone("alert_transitions") == 60
        db: Database = app.state.services.db
        cutoffs = Cutoffs.at(clock.now() + timedelta(days=400), RetentionConfig())
        report = await prune(db, cutoffs, rows=10, batches_per_rule=None)
        assert report.complete and report.deleted["alerts"] == 30
        assert count_alone("alerts") == 0 and count_alone("alert_transitions") == 0
