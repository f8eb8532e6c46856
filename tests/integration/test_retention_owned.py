"""Retention of the rows an alert owns besides its history, on SQLite and PostgreSQL.

Acks, escalation steps, chat message references, and the sent trigger an
ack looks for: each is kept while what it belongs to still needs it, and
goes once that is over. History is made through the real app (webhooks,
the ack API, the sweeper, delivery to local fakes) on a hand-moved clock.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from app.ops.clock import ManualClock
from tests.chat_fakes import FakeSlackAPI
from tests.conftest import running_app
from tests.helpers import T0, count, table_rows
from tests.integration.test_retention import deliver, fp, post, prune_all
from tests.sinks import FakePagerDuty, serve

ADMIN = "OWNED-ADMIN-TOKEN-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
KEY = "OWNEDROUTINGKEY0123456789abcdef0"
SLACK_TOKEN = "xoxb-owned-0123456789"
DAY = 86400.0


def pd_config(pd_url: str) -> str:
    return f"""
auth:
  admin_token: {ADMIN}
delivery: {{initial_backoff: 1s, max_backoff: 60s, timeout: 2s, lease: 10s}}
route:
  receiver: page
  escalate:
    - after: 15m
      receiver: second
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
  - name: second
    log_configs: [{{}}]
"""


def slack_config(slack_url: str) -> str:
    entry = {
        "api_url": f"{slack_url}/api/chat.postMessage",
        "token": SLACK_TOKEN,
        "channel": "#alerts",
        "update_message": True,
        "rate_limit": {"per_second": 0},
        # These tests follow one alert's message (a group's is in test_group_ack.py).
        "grouping": "alert",
    }
    return f"""
delivery: {{initial_backoff: 1s, max_backoff: 60s, timeout: 2s, lease: 10s}}
route: {{receiver: chat}}
receivers:
  - name: chat
    slack_configs: [{json.dumps(entry)}]
"""


@asynccontextmanager
async def relay(
    db_url: str, config: str
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, ManualClock]]:
    clock = ManualClock(T0)
    async with running_app(db_url, config, clock=clock) as (app, client):
        yield app, client, clock


async def ack(client: httpx.AsyncClient, name: str) -> dict[str, object]:
    r = await client.post(
        f"/api/v1/alerts/{fp(name)}/ack", json={"by": "alice"}, headers=ADMIN_HEADERS
    )
    assert r.status_code == 200, r.text
    answer: dict[str, object] = r.json()
    return answer


def owned(db_url: str, table: str, name: str) -> list[dict]:
    return [r for r in table_rows(db_url, table) if r["fingerprint"] == fp(name)]


async def test_an_ack_months_after_the_trigger_still_acknowledges_the_incident(
    db_url: str,
) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        async with relay(db_url, pd_config(pd_url)) as (app, client, clock):
            await post(client, "LongFire", "firing", T0)
            clock.advance(16 * 60)  # nobody acked: the escalation step is taken
            assert (await app.state.services.sweeper.sweep_once()).escalations == 1
            await deliver(app)
            clock.advance(200 * DAY)  # past the notifications' 30 days (and every other age)
            await prune_all(app)
            # The incident is open: its sent trigger is what an ack looks up
            # to know which destinations to tell.
            kept = owned(db_url, "notifications", "LongFire")
            assert [(n["kind"], n["receiver"]) for n in kept if n["receiver"] == "page"] == [
                ("firing", "page")
            ]
            answer = await ack(client, "LongFire")
            assert answer["notifications"] == 1
            await deliver(app)
            assert [action for action, _ in pd.order] == ["trigger", "acknowledge"]
            assert pd.order[1][1] == pd.order[0][1]  # the same incident
            (incident,) = pd.open_incidents()
            assert incident["acknowledged"]

            # The ack of the occurrence that still fires stays past the
            # transitions' 90 days; so does the escalation step of the open incident.
            clock.advance(100 * DAY)
            await prune_all(app)
            assert [a["action"] for a in owned(db_url, "alert_acks", "LongFire")] == ["ack"]
            assert len(owned(db_url, "alert_escalations", "LongFire")) == 1
            alert = (await client.get(f"/api/v1/alerts/{fp('LongFire')}")).json()
            assert alert["ack"]["by"] == "alice"


async def test_a_recurring_alert_sheds_its_old_occurrences_acks_and_escalation_steps(
    db_url: str,
) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        async with relay(db_url, pd_config(pd_url)) as (app, client, clock):
            # First occurrence: escalated (nobody acked for 15 minutes), then acked, resolved.
            await post(client, "Weekly", "firing", T0)
            clock.advance(16 * 60)
            assert (await app.state.services.sweeper.sweep_once()).escalations == 1
            await ack(client, "Weekly")
            clock.advance(60)
            await post(client, "Weekly", "resolved", T0, clock.now())
            await deliver(app)
            assert [a["action"] for a in owned(db_url, "alert_acks", "Weekly")] == [
                "ack",
                "ended",
            ]
            # 100 days later it is back, and acked again.
            clock.advance(100 * DAY)
            again = clock.now()
            await post(client, "Weekly", "firing", again)
            await ack(client, "Weekly")
            await deliver(app)
            before = [a["id"] for a in owned(db_url, "alert_acks", "Weekly")]
            assert len(before) == 3

            deleted = await prune_all(app)
            # The alert is never old enough to go: what the first occurrence
            # left goes at the transitions' age, the current one's stays.
            assert deleted["alert_acks"] == 2 and deleted["alert_escalations"] == 1
            assert count(db_url, "alerts", f"fingerprint = '{fp('Weekly')}'") == 1
            (left,) = owned(db_url, "alert_acks", "Weekly")
            assert left["action"] == "ack" and left["id"] == max(before)
            assert owned(db_url, "alert_escalations", "Weekly") == []


async def test_a_chat_message_of_an_open_incident_keeps_its_reference_until_the_resolve_edits_it(
    db_url: str,
) -> None:
    slack = FakeSlackAPI(token=SLACK_TOKEN)
    with serve(slack) as slack_url:
        async with relay(db_url, slack_config(slack_url)) as (app, client, clock):
            await post(client, "Slow", "firing", T0)
            await post(client, "Brief", "firing", T0)
            clock.advance(60)
            await post(client, "Brief", "resolved", T0, clock.now())
            await deliver(app)
            assert len(slack.posts) == 2 and len(slack.updates) == 1
            assert count(db_url, "message_refs") == 2

            clock.advance(40 * DAY)  # past the notifications' 30 days
            deleted = await prune_all(app)
            # Brief's message is settled: its reference goes (with its alert).
            # Slow still fires: its resolve will edit that message.
            assert deleted["message_refs"] == 1
            (ref,) = table_rows(db_url, "message_refs", order="message_key")
            assert ref["message_key"].startswith(f"a:{fp('Slow')}:")

            await post(client, "Slow", "resolved", T0, clock.now())
            await deliver(app)
            assert len(slack.posts) == 2  # edited in place, not posted again
            assert len(slack.updates) == 2

            clock.advance(31 * DAY)
            deleted = await prune_all(app)
            assert deleted["message_refs"] == 1 and count(db_url, "message_refs") == 0


async def test_a_chat_message_keeps_its_reference_while_an_edit_of_it_is_a_dead_letter(
    db_url: str,
) -> None:
    """A replayed dead letter edits the message it belongs to, so the
    message's reference stays as long as the dead letter does."""
    slack = FakeSlackAPI(token=SLACK_TOKEN)
    with serve(slack) as slack_url:
        async with relay(db_url, slack_config(slack_url)) as (app, client, clock):
            await post(client, "Lost", "firing", T0)
            await deliver(app)
            slack.token = "xoxb-rotated-0123456789"  # the edit is refused for good
            clock.advance(60)
            await post(client, "Lost", "resolved", T0, clock.now())
            await deliver(app)
            assert [n["status"] for n in owned(db_url, "notifications", "Lost")] == [
                "sent",
                "dead",
            ]
            assert len(slack.posts) == 1 and slack.updates == []

            clock.advance(40 * DAY)  # past the notifications' 30 days, not the dead letters' 90
            deleted = await prune_all(app)
            assert deleted.get("message_refs", 0) == 0
            (ref,) = table_rows(db_url, "message_refs", order="message_key")
            assert ref["message_key"].startswith(f"a:{fp('Lost')}:")

            clock.advance(60 * DAY)
            deleted = await prune_all(app)
            assert deleted["message_refs"] == 1 and count(db_url, "message_refs") == 0
            assert owned(db_url, "notifications", "Lost") == []
