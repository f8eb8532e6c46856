"""The chat fakes behave as their services document (tests/chat_fakes.py).

The update_message tests trust these fakes; each behaviour they rely on is
pinned here, by raw HTTP, so a fake that drifted would fail here first.
"""

from collections.abc import Iterator

import httpx
import pytest

from tests.chat_fakes import FakeDiscordMessages, FakeMattermostAPI, FakeSlackAPI
from tests.sinks import serve

TOKEN = "tok-123"


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlackAPI, str]]:
    fake = FakeSlackAPI(token=TOKEN)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def discord() -> Iterator[tuple[FakeDiscordMessages, str]]:
    fake = FakeDiscordMessages(token=TOKEN)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def mattermost() -> Iterator[tuple[FakeMattermostAPI, str]]:
    fake = FakeMattermostAPI(token=TOKEN)
    with serve(fake) as url:
        yield fake, url


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_slack_post_names_the_channel_id_and_ts_and_update_needs_both(
    slack: tuple[FakeSlackAPI, str],
) -> None:
    fake, url = slack
    with httpx.Client(base_url=url, headers=AUTH) as c:
        posted = c.post("/api/chat.postMessage", json={"channel": "#alerts", "text": "a"}).json()
        assert posted["ok"] is True and posted["channel"].startswith("C") and posted["ts"]
        ref = {"channel": posted["channel"], "ts": posted["ts"]}
        assert c.post("/api/chat.update", json={**ref, "text": "b"}).json()["ok"] is True
        # No ts, an unknown ts, or the channel by name: no such message.
        for body in (
            {"channel": ref["channel"], "text": "c"},
            {"channel": ref["channel"], "ts": "1.2", "text": "c"},
            {"channel": "#alerts", "ts": ref["ts"], "text": "c"},
        ):
            answer = c.post("/api/chat.update", json=body)
            assert (answer.status_code, answer.json()) == (
                200,
                {"ok": False, "error": "message_not_found"},
            )
        assert c.post("/api/chat.update", json={"ts": ref["ts"], "text": "c"}).json() == {
            "ok": False,
            "error": "channel_not_found",
        }
        fake.delete(ref["channel"], ref["ts"])
        gone = c.post("/api/chat.update", json={**ref, "text": "d"}).json()
        assert gone == {"ok": False, "error": "message_not_found"}


def test_slack_auth_errors_are_ok_false(slack: tuple[FakeSlackAPI, str]) -> None:
    _, url = slack
    body = {"channel": "#alerts", "text": "a"}
    with httpx.Client(base_url=url) as c:
        assert c.post("/api/chat.postMessage", json=body).json()["error"] == "not_authed"
        wrong = c.post("/api/chat.postMessage", json=body, headers={"Authorization": "Bearer x"})
        assert (wrong.status_code, wrong.json()["error"]) == (200, "invalid_auth")
        empty = c.post("/api/chat.postMessage", json={"channel": "#a"}, headers=AUTH)
        assert empty.json()["error"] == "no_text"


def test_slack_rate_limit_is_429_with_retry_after(slack: tuple[FakeSlackAPI, str]) -> None:
    """Past the limit: HTTP 429, Retry-After in whole seconds until a slot frees,
    ``ratelimited``, and nothing posted; once the window has passed, calls go through."""
    fake, url = slack
    now = [100.0]
    fake.limit(2, 30.0, now=lambda: now[0])
    body = {"channel": "#alerts", "text": "a"}
    with httpx.Client(base_url=url, headers=AUTH) as c:
        first = c.post("/api/chat.postMessage", json=body).json()
        now[0] = 110.0
        ref = {"channel": first["channel"], "ts": first["ts"]}
        assert c.post("/api/chat.update", json={**ref, "text": "b"}).json()["ok"] is True
        now[0] = 112.5
        over = c.post("/api/chat.postMessage", json=body)
        assert (over.status_code, over.headers["retry-after"], over.json()) == (
            429,
            "18",  # the first call leaves the 30 s window at 130
            {"ok": False, "error": "ratelimited"},
        )
        assert len(fake.posts) == 1 and fake.limited == 1
        now[0] = 130.5
        assert c.post("/api/chat.postMessage", json=body).json()["ok"] is True
    assert len(fake.posts) == 2


def test_discord_wait_returns_the_message_and_patch_edits_it(
    discord: tuple[FakeDiscordMessages, str],
) -> None:
    fake, url = discord
    hook = f"/api/webhooks/1/{TOKEN}"
    with httpx.Client(base_url=url) as c:
        assert c.post(hook, json={"content": "a"}).status_code == 204  # no wait: no body
        posted = c.post(f"{hook}?wait=true", json={"content": "b"})
        assert posted.status_code == 200 and posted.json()["id"].isdigit()
        ident = posted.json()["id"]
        edited = c.patch(f"{hook}/messages/{ident}", json={"content": "c"})
        assert (edited.status_code, edited.json()["content"]) == (200, "c")
        unknown = c.patch(f"{hook}/messages/1", json={"content": "c"})
        assert (unknown.status_code, unknown.json()["code"]) == (404, 10008)
        bad = c.post("/api/webhooks/1/other?wait=true", json={"content": "b"})
        assert (bad.status_code, bad.json()["code"]) == (401, 50027)
        fake.webhook_deleted = True
        deleted = c.patch(f"{hook}/messages/{ident}", json={"content": "d"})
        assert (deleted.status_code, deleted.json()["code"]) == (404, 10015)


def test_mattermost_posts_are_created_then_updated(
    mattermost: tuple[FakeMattermostAPI, str],
) -> None:
    fake, url = mattermost
    with httpx.Client(base_url=url, headers=AUTH) as c:
        created = c.post("/api/v4/posts", json={"channel_id": "ch1", "message": "a"})
        assert created.status_code == 201
        ident = created.json()["id"]
        updated = c.put(f"/api/v4/posts/{ident}", json={"id": ident, "message": "b"})
        assert (updated.status_code, updated.json()["message"]) == (200, "b")
        mismatch = c.put(f"/api/v4/posts/{ident}", json={"id": "other", "message": "b"})
        assert mismatch.status_code == 400
        fake.delete(ident)
        gone = c.put(f"/api/v4/posts/{ident}", json={"id": ident, "message": "c"})
        assert gone.status_code == 404
        anon = httpx.post(f"{url}/api/v4/posts", json={"channel_id": "ch1", "message": "a"})
        assert anon.status_code == 401
