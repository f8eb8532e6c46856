"""update_message through the app, on SQLite and PostgreSQL, against fakes that edit.

The first notification of an alert occurrence posts a message (Slack
chat.postMessage, a Discord webhook with ?wait=true, Mattermost POST
/api/v4/posts); later ones edit it (chat.update, PATCH …/messages/{id},
PUT /api/v4/posts/{id}). The message's reference lives in SQL
(message_refs), written with the delivery outcome: a restart still edits,
two workers do not post twice, an edit older than what the message shows
is skipped, and a deleted message is posted again.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.delivery.worker import DeliveryWorker
from app.ops.clock import ManualClock
from tests.chat_fakes import FakeDiscordMessages, FakeMattermostAPI, FakeSlackAPI
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body, table_rows
from tests.sinks import Reply, Sink, serve

SLACK_TOKEN = "xoxb-UPDATE-TEST-TOKEN-1234"
DISCORD_TOKEN = "DISCORDWEBHOOKTOKEN-abcdef"
MM_TOKEN = "mattermost-token-0123456789"
LABELS = {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"}
SINKS = ("slack", "discord", "mattermost")


@dataclass
class Fakes:
    slack: FakeSlackAPI
    discord: FakeDiscordMessages
    mattermost: FakeMattermostAPI
    urls: dict[str, str]

    def sink(self, name: str) -> Sink:
        found: Sink = getattr(self, name)
        return found


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    slack = FakeSlackAPI(token=SLACK_TOKEN)
    discord = FakeDiscordMessages(token=DISCORD_TOKEN)
    mattermost = FakeMattermostAPI(token=MM_TOKEN)
    with contextlib.ExitStack() as stack:
        urls = {
            "slack": stack.enter_context(serve(slack)),
            "discord": stack.enter_context(serve(discord)),
            "mattermost": stack.enter_context(serve(mattermost)),
        }
        yield Fakes(slack, discord, mattermost, urls)


@pytest.fixture
def chat(fakes: Fakes) -> Fakes:
    for name in SINKS:
        fakes.sink(name).reset()
    return fakes


def entry(name: str, fakes: Fakes, *, update: bool = True) -> dict[str, Any]:
    # No pacing: the tests run on a manual clock, which a deferred row would wait for.
    # One message per alert occurrence: these tests follow single alerts.
    return {
        **_entry(name, fakes, update=update),
        "rate_limit": {"per_second": 0},
        "grouping": "alert",
    }


def _entry(name: str, fakes: Fakes, *, update: bool) -> dict[str, Any]:
    url = fakes.urls[name]
    if name == "slack":
        return {
            "api_url": f"{url}/api/chat.postMessage",
            "token": SLACK_TOKEN,
            "channel": "#alerts",
            "update_message": update,
        }
    if name == "discord":
        return {"webhook_url": f"{url}/api/webhooks/42/{DISCORD_TOKEN}", "update_message": update}
    return {
        "api_url": f"{url}/api/v4/posts",
        "token": MM_TOKEN,
        "channel_id": "chan0000000000000000000000",
        "update_message": update,
    }


def config(name: str, fakes: Fakes, *, update: bool = True) -> str:
    delivery = {"initial_backoff": "1s", "max_backoff": "1s", "timeout": "2s", "lease": "10s"}
    return f"""
delivery: {json.dumps(delivery)}
route: {{receiver: chat}}
receivers:
  - name: chat
    {name}_configs: [{json.dumps(entry(name, fakes, update=update))}]
"""


def posts(fakes: Fakes, name: str) -> list[dict[str, Any]]:
    if name == "slack":
        return fakes.slack.posts
    if name == "discord":
        return fakes.discord.posts
    return fakes.mattermost.created


def edits(fakes: Fakes, name: str) -> list[dict[str, Any]]:
    if name == "slack":
        return fakes.slack.updates
    if name == "discord":
        return fakes.discord.edits
    return fakes.mattermost.updated


def shown_status(fakes: Fakes, name: str) -> list[str]:
    """The state each message currently shows, as the channel would."""
    if name == "slack":
        return [m["attachments"][0]["color"] for m in fakes.slack.messages.values()]
    if name == "discord":
        return [m["content"].split(":")[0] for m in fakes.discord.messages.values()]
    return [p["props"]["attachments"][0]["color"] for p in fakes.mattermost.posts.values()]


EDIT_REQUEST = {"slack": "/api/chat.update", "discord": "PATCH http", "mattermost": "PUT http"}
RESOLVED_SHOWS = {"slack": "#12B76A", "discord": "RESOLVED", "mattermost": "#12B76A"}


async def send(client: httpx.AsyncClient, status: str = "firing", labels: Any = None) -> None:
    alert = am_alert(labels or LABELS, status=status)
    r = await client.post("/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON)
    assert r.status_code == 200, r.text


async def drain(app: Starlette) -> None:
    worker: DeliveryWorker = app.state.services.delivery
    async with asyncio.timeout(30):
        await worker.drain()


def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(minutes=1))


@pytest.mark.parametrize("name", SINKS)
async def test_post_then_edit_on_resolve(db_url: str, chat: Fakes, name: str) -> None:
    """One message: posted when the alert fires, edited (after one retry) when it resolves."""
    c = clock()
    async with running_app(db_url, config(name, chat), clock=c) as (app, client):
        await send(client)
        await drain(app)
        assert len(posts(chat, name)) == 1 and edits(chat, name) == []
        (ref_row,) = table_rows(db_url, "message_refs", order="message_key")
        # The edit fails once (the service is down), then goes through.
        chat.sink(name).script(Reply(503, "down"))
        await send(client, "resolved")
        await drain(app)
        c.advance(5)
        await drain(app)
        assert len(posts(chat, name)) == 1 and len(edits(chat, name)) == 1
        assert shown_status(chat, name) == [RESOLVED_SHOWS[name]]
        metrics = (await client.get("/metrics")).text
        assert f'alertrelay_messages_updated_total{{integration="{name}"}} 1.0' in metrics
        fp = table_rows(db_url, "alerts", order="fingerprint")[0]["fingerprint"]
        api = (await client.get(f"/api/v1/alerts/{fp}")).json()
        page = (await client.get(f"/alerts/{fp}")).text
    resolve, fire = api["notifications"]  # newest first
    assert fire["message"] == {"action": "posted", "ref": ref_row["ref"]}
    assert resolve["message"] == {"action": "edited", "ref": ref_row["ref"]}
    assert fire["message_key"] == resolve["message_key"] == ref_row["message_key"]
    assert ref_row["message_key"].startswith(f"a:{fp}:")
    (after,) = table_rows(db_url, "message_refs", order="message_key")
    assert after["ref"] == ref_row["ref"] and after["notification_id"] == resolve["id"]
    assert after["integration"] == f"chat/{name}/0"
    attempts = [a["outcome"] for a in table_rows(db_url, "delivery_attempts")]
    assert attempts == ["sent", "retry", "sent"]
    assert "Chat message: edited" in page and "Chat message: posted" in page
    # The console rebuilds the edit as the request it was, secrets redacted.
    assert EDIT_REQUEST[name] in page
    secrets = (SLACK_TOKEN, DISCORD_TOKEN, MM_TOKEN)
    stored = json.dumps(
        [api, page, table_rows(db_url, "message_refs", order="message_key")], default=str
    )
    assert not any(s in stored for s in secrets)


async def test_a_restart_between_post_and_edit_still_edits(db_url: str, chat: Fakes) -> None:
    """The reference comes from SQL, not from the process that posted."""
    async with running_app(db_url, config("slack", chat), clock=clock()) as (app, client):
        await send(client)
        await drain(app)
    async with running_app(db_url, config("slack", chat), clock=clock()) as (app, client):
        await send(client, "resolved")
        await drain(app)
    assert len(chat.slack.posts) == 1 and len(chat.slack.updates) == 1
    (update,) = chat.slack.updates
    ((channel, ts),) = chat.slack.messages
    assert (update["channel"], update["ts"]) == (channel, ts)


@pytest.mark.parametrize("name", SINKS)
async def test_a_deleted_message_is_posted_again(db_url: str, chat: Fakes, name: str) -> None:
    """Slack message_not_found, Discord 404 Unknown Message, Mattermost 404: a new post, its reference kept."""
    async with running_app(db_url, config(name, chat), clock=clock()) as (app, client):
        await send(client)
        await drain(app)
        (before,) = table_rows(db_url, "message_refs", order="message_key")
        ref = before["ref"]
        if name == "slack":
            chat.slack.delete(ref["channel"], ref["ts"])
        elif name == "discord":
            chat.discord.delete(ref["message_id"])
        else:
            chat.mattermost.delete(ref["post_id"])
        await send(client, "resolved")
        await drain(app)
    assert len(posts(chat, name)) == 2 and edits(chat, name) == []
    assert shown_status(chat, name) == [RESOLVED_SHOWS[name]]
    (after,) = table_rows(db_url, "message_refs", order="message_key")
    assert after["ref"] != ref
    resolve = table_rows(db_url, "notifications")[-1]
    assert resolve["status"] == "sent"
    assert resolve["message_ref"] == {"action": "reposted", "ref": after["ref"], "gone": ref}


async def test_an_edit_older_than_the_message_is_skipped(db_url: str, chat: Fakes) -> None:
    """A dead edit replayed after a newer row wrote the message: skipped, visibly, and
    the message keeps the newer state. Replayed with nothing newer, it edits."""
    async with running_app(db_url, config("slack", chat), clock=clock()) as (app, client):
        await send(client)
        await drain(app)
        chat.slack.script(Reply(200, {"ok": False, "error": "cant_update_message"}))
        await send(client, "resolved")
        await drain(app)
        fire, resolve = table_rows(db_url, "notifications")
        assert resolve["status"] == "dead"
        # Replayed now, nothing newer wrote the message: it edits.
        r = await client.post(f"/api/v1/notifications/{resolve['id']}/replay")
        assert r.status_code == 200, r.text
        await drain(app)
        assert len(chat.slack.updates) == 1
        # Make it dead again, then let a newer notification of the same message
        # (what a reminder or a stable notice would be) write the reference.
        await _kill_and_supersede(db_url, resolve["id"])
        r = await client.post(f"/api/v1/notifications/{resolve['id']}/replay")
        assert r.status_code == 200, r.text
        await drain(app)
        api = (await client.get(f"/api/v1/notifications/{resolve['id']}")).json()
    assert len(chat.slack.updates) == 1  # the stale replay sent nothing
    assert api["status"] == "sent"
    assert api["message"]["action"] == "skipped"
    assert api["message"]["newer"] == resolve["id"] + 1000
    assert api["delivery_attempts"][-1]["outcome"] == "skipped"
    assert "newer state" in api["delivery_attempts"][-1]["error"]


async def _kill_and_supersede(db_url: str, notification_id: int) -> None:
    """Mark the row dead and record that a later row (id + 1000) updated its message."""
    import sqlalchemy as sa

    from app.store.engine import sync_url

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE notifications SET status='dead' WHERE id=:id"),
                {"id": notification_id},
            )
            conn.execute(
                sa.text("UPDATE message_refs SET notification_id=:newer"),
                {"newer": notification_id + 1000},
            )
    finally:
        engine.dispose()


async def test_two_workers_do_not_post_twice(db_url: str, chat: Fakes) -> None:
    """Fires and resolves of many alerts, delivered by two workers at once: one post and
    one edit per alert (rows of one message are claimed one at a time, in order)."""
    alerts = [{**LABELS, "instance": f"db-{i}"} for i in range(12)]
    async with running_app(db_url, config("slack", chat), clock=clock()) as (app, client):
        for labels in alerts:
            await send(client, labels=labels)
        for labels in alerts:
            await send(client, "resolved", labels=labels)
        services = app.state.services
        workers = [
            DeliveryWorker(
                services.db,
                services.runtime,
                services.clock,
                services.metrics,
                services.http,
                worker_id=f"w{i}",
                wake=asyncio.Event(),
            )
            for i in range(2)
        ]
        async with asyncio.timeout(60):
            while True:
                await asyncio.gather(*(w.drain() for w in workers))
                rows = table_rows(db_url, "notifications")
                if all(r["status"] == "sent" for r in rows):
                    break
    assert len(chat.slack.posts) == 12 and len(chat.slack.updates) == 12
    assert len(chat.slack.messages) == 12
    assert set(shown_status(chat, "slack")) == {RESOLVED_SHOWS["slack"]}
    workers_used = {a["worker"] for a in table_rows(db_url, "delivery_attempts")}
    assert (
        workers_used <= {"w0", "w1"}
        and len(table_rows(db_url, "message_refs", order="message_key")) == 12
    )


async def test_slack_rate_limit_waits_as_long_as_retry_after_says(db_url: str, chat: Fakes) -> None:
    """Past Slack's limit (here one call per 30 s) the fake answers 429 ratelimited
    with Retry-After: the row waits exactly that long (not the 1 s backoff), then
    posts; the edits of the two messages are paced the same way."""
    c = clock()
    chat.slack.limit(1, 30.0, now=lambda: c.now().timestamp())
    alerts = [{**LABELS, "instance": f"db-{i}"} for i in range(2)]
    async with running_app(db_url, config("slack", chat), clock=c) as (app, client):
        for labels in alerts:
            await send(client, labels=labels)
        await drain(app)
        assert len(chat.slack.posts) == 1 and chat.slack.limited == 1
        (waiting,) = [r for r in table_rows(db_url, "notifications") if r["status"] == "pending"]
        assert waiting["last_status_code"] == 429 and "ratelimited" in waiting["last_error"]
        assert (waiting["next_attempt_at"] - c.now()).total_seconds() == 30
        c.advance(29)
        await drain(app)
        assert len(chat.slack.posts) == 1  # not due yet: nothing sent, nothing limited
        assert chat.slack.limited == 1
        c.advance(1)
        await drain(app)
        assert len(chat.slack.posts) == 2
        for labels in alerts:
            await send(client, "resolved", labels=labels)
        for _ in range(4):
            c.advance(30)
            await drain(app)
    assert len(chat.slack.posts) == 2 and len(chat.slack.updates) == 2
    assert set(shown_status(chat, "slack")) == {RESOLVED_SHOWS["slack"]}
    rows = table_rows(db_url, "notifications")
    assert {r["status"] for r in rows} == {"sent"}
    outcomes = [(a["outcome"], a["status_code"]) for a in table_rows(db_url, "delivery_attempts")]
    assert outcomes.count(("retry", 429)) == chat.slack.limited >= 2


@pytest.mark.parametrize("name", ["slack", "mattermost"])
async def test_a_token_without_update_message_replies_in_the_thread(
    db_url: str, chat: Fakes, name: str
) -> None:
    """Slack with a bot token, Mattermost's REST API, no update_message: the resolve
    is a reply in the first message's thread (thread_ts, root_id), not an edit."""
    async with running_app(db_url, config(name, chat, update=False), clock=clock()) as (
        app,
        client,
    ):
        await send(client)
        await drain(app)
        await send(client, "resolved")
        await drain(app)
    first, reply = posts(chat, name)
    assert edits(chat, name) == []
    (stored,) = table_rows(db_url, "message_refs", order="message_key")
    if name == "slack":
        assert "thread_ts" not in first
        ((channel, ts), _) = chat.slack.messages
        assert stored["ref"] == {"channel": channel, "ts": ts}
        assert (reply["channel"], reply["thread_ts"]) == (channel, ts)
    else:
        assert "root_id" not in first
        assert reply["root_id"] == stored["ref"]["post_id"]
    resolve = table_rows(db_url, "notifications")[-1]
    assert resolve["message_ref"]["action"] == "replied"
    assert resolve["message_ref"]["thread"] == stored["ref"]
    assert resolve["message_ref"]["ref"] != stored["ref"]


# ------------------------------------------------------------------ the documented examples

ROOT = Path(__file__).resolve().parents[2]


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


def _with_fakes(block: str, fakes: Fakes, tmp_path: Path) -> str:
    secrets = {
        "slack-bot-token": SLACK_TOKEN,
        "discord-url": f"{fakes.urls['discord']}/api/webhooks/42/{DISCORD_TOKEN}",
        "mattermost-token": MM_TOKEN,
    }
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")
    block = block.replace("/run/secrets/", f"{tmp_path}/")
    block = block.replace("https://slack.com", fakes.urls["slack"])
    return block.replace("https://mattermost.example.com", fakes.urls["mattermost"])


async def test_the_documented_example_posts_once_then_edits(
    sqlite_url: str, chat: Fakes, tmp_path: Path
) -> None:
    """docs/integrations.md's update_message block, against the three fakes."""
    (block,) = [b for b in _yaml_blocks(ROOT / "docs" / "integrations.md") if "chat-updates" in b]
    async with running_app(sqlite_url, _with_fakes(block, chat, tmp_path)) as (app, client):
        await send(client)
        await drain(app)
        await send(client, "resolved")
        await drain(app)
    for name in SINKS:
        assert (len(posts(chat, name)), len(edits(chat, name))) == (1, 1), name
        assert shown_status(chat, name) == [RESOLVED_SHOWS[name]]


async def test_the_readme_example_posts_once_then_edits(
    sqlite_url: str, chat: Fakes, tmp_path: Path
) -> None:
    (block,) = [b for b in _yaml_blocks(ROOT / "README.md") if "update_message: true" in b]
    text = "route: {receiver: chat}\n" + _with_fakes(block, chat, tmp_path)
    async with running_app(sqlite_url, text) as (app, client):
        await send(client)
        await drain(app)
        await send(client, "resolved")
        await drain(app)
    assert (len(chat.slack.posts), len(chat.slack.updates)) == (1, 1)
    assert chat.slack.posts[0]["channel"] == "#alerts"


@pytest.mark.parametrize(
    ("entry_text", "problem"),
    [
        (
            "msteams_configs: [{webhook_url: 'https://x.example/hook', update_message: true}]",
            "cannot edit a message it sent",
        ),
        (
            "slack_configs: [{api_url: 'https://hooks.slack.com/services/T/B/X', update_message: true}]",
            "needs Slack's Web API",
        ),
        (
            "slack_configs: [{api_url: 'https://hooks.slack.com/services/T/B/X', token: t, channel: c}]",
            "chat.postMessage URL",
        ),
        (
            "mattermost_configs: [{webhook_url: 'https://mm.example/hooks/x', update_message: true}]",
            "needs Mattermost's REST API",
        ),
        (
            "mattermost_configs: [{api_url: 'https://mm.example/api/v4/posts', token: t}]",
            "channel_id: required",
        ),
    ],
)
def test_update_message_where_the_sink_cannot_edit_is_a_config_error(
    entry_text: str, problem: str
) -> None:
    from app.config.model import ConfigError, parse_config

    text = f"route: {{receiver: r}}\nreceivers:\n  - name: r\n    {entry_text}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yml", {})
    assert problem in str(info.value)
    assert "receivers[0]" in str(info.value)


async def test_references_go_with_the_notifications_retention(db_url: str, chat: Fakes) -> None:
    """Pruning drops a message's reference after the notifications' retention, but
    not while a notification of that message is dead (a replay would edit it)."""
    c = clock()
    done, failed = {**LABELS, "instance": "done"}, {**LABELS, "instance": "failed"}
    async with running_app(db_url, config("slack", chat), clock=c) as (app, client):
        for labels in (done, failed):
            await send(client, labels=labels)
        await drain(app)
        await send(client, "resolved", labels=done)
        await drain(app)
        chat.slack.script(Reply(200, {"ok": False, "error": "cant_update_message"}))
        await send(client, "resolved", labels=failed)
        await drain(app)
        assert len(table_rows(db_url, "message_refs", order="message_key")) == 2
        c.advance(40 * 86400)  # past notifications (30 d), within dead_letters (90 d)
        deleted: dict[str, int] = {}
        for _ in range(20):
            report = await app.state.services.sweeper.pruner.tick()
            for table, n in report.deleted.items():
                deleted[table] = deleted.get(table, 0) + n
            if report.complete and not any(report.deleted.values()):
                break
    (kept,) = table_rows(db_url, "message_refs", order="message_key")
    dead = [r for r in table_rows(db_url, "notifications") if r["status"] == "dead"]
    assert [r["message_key"] for r in dead] == [kept["message_key"]]
    assert deleted.get("message_refs") == 1
