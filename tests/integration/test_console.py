"""The web console over HTTP, in process, on both databases: filters, paging, actions, safety.

What a browser adds (refresh, clicks, layout, accessibility) is in tests/browser.
"""

import re
from datetime import timedelta
from html import unescape

import httpx
import sqlalchemy as sa

from app.ops.clock import ManualClock
from app.store.engine import sync_url
from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, T0, TWO_ROUTES_CONFIG, am_alert, am_webhook, body

ADMIN = "adm1n-console-token"


async def post(client: httpx.AsyncClient, *alerts: dict) -> None:
    r = await client.post(
        "/webhook/alertmanager", content=body(am_webhook(list(alerts))), headers=JSON
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(alerts), r.text


def names(html: str) -> list[str]:
    """Alert names in the list table, in page order."""
    table = (
        html.split('<table class="list">', 1)[1].split("</table>", 1)[0]
        if '<table class="list">' in html
        else ""
    )
    return [unescape(n) for n in re.findall(r'<a href="/alerts/[0-9a-f]{16}">([^<]*)</a>', table)]


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def kill(db_url: str, notification_id: int) -> None:
    """Make a notification dead as delivery would after a 400 (test set-up through SQL)."""
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE notifications SET status='dead', attempts=1, last_error='no such channel', last_status_code=400, dead_at=created_at WHERE id=:id"
                ),
                {"id": notification_id},
            )
    finally:
        engine.dispose()


SEVERITIES = ["critical", "warning", "info", "critical", "warning", "info", "critical"]


async def test_filters_and_keyset_paging(db_url: str) -> None:
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (_, client):
        await post(
            client,
            *[
                am_alert(
                    {"alertname": f"A{i}", "severity": sev, "instance": f"db-{i}"},
                    starts_at=T0 + timedelta(seconds=i),
                )
                for i, sev in enumerate(SEVERITIES)
            ],
            am_alert({"alertname": "Percent", "severity": "info", "note": "100%_full"}),
            am_alert({"alertname": "Gone", "severity": "critical"}, status="resolved"),
        )
        everything = {f"A{i}" for i in range(7)} | {"Percent", "Gone"}

        r = await client.get("/alerts", params={"state": "firing", "severity": "critical"})
        assert r.status_code == 200 and sorted(names(r.text)) == ["A0", "A3", "A6"]
        r = await client.get("/alerts", params={"state": "resolved"})
        assert names(r.text) == ["Gone"]
        # Free text over label names and values, case-insensitive; LIKE wildcards are literal.
        assert names((await client.get("/alerts", params={"q": "DB-4"})).text) == ["A4"]
        assert names((await client.get("/alerts", params={"q": "%_"})).text) == ["Percent"]
        assert names((await client.get("/alerts", params={"q": "note"})).text) == ["Percent"]
        # Receiver: alerts with a notification for it (mail takes critical and warning; chat the rest).
        mail = names((await client.get("/alerts", params={"receiver": "mail"})).text)
        assert sorted(mail) == ["A0", "A1", "A3", "A4", "A6"]
        chat = names(
            (await client.get("/alerts", params={"receiver": "chat", "state": "firing"})).text
        )
        assert sorted(chat) == ["A2", "A5", "Percent"]

        # Keyset paging: follow "Next page" to the end; every alert once, newest change first.
        seen: list[str] = []
        url = "/alerts?limit=2"
        pages = 0
        while url and pages < 20:
            r = await client.get(url)
            assert r.status_code == 200
            seen += names(r.text)
            pages += 1
            nxt = re.search(r'<a rel="next" href="([^"]+)"', r.text)
            url = unescape(nxt.group(1)) if nxt else ""
        assert pages == 5 and len(seen) == len(set(seen)) and set(seen) == everything
        # Filters survive paging.
        r = await client.get("/alerts?limit=2&severity=critical&state=firing")
        nxt = re.search(r'<a rel="next" href="([^"]+)"', r.text)
        assert nxt and "severity=critical" in nxt.group(1) and "state=firing" in nxt.group(1)
        second = names((await client.get(unescape(nxt.group(1)))).text)
        assert len(second) == 1 and second[0] in {"A0", "A3", "A6"}

        assert (await client.get("/alerts", params={"cursor": "not-a-cursor"})).status_code == 400
        r = await client.get("/alerts", params={"state": "bogus"})
        assert (
            r.status_code == 400
            and "state: must be one of" in r.text
            and r.headers["content-type"].startswith("text/html")
        )
        assert (await client.get("/alerts", params={"receiver": "nobody"})).status_code == 400


async def test_overview_counts_escapes_and_shows_versions(db_url: str) -> None:
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (app, client):
        await post(
            client,
            am_alert(
                {"alertname": "<script>x</script>", "severity": "critical"},
                annotations={"summary": "disk <b>full</b>"},
            ),
            am_alert({"alertname": "Warm", "severity": "warning"}),
            am_alert({"alertname": "Old", "severity": "warning"}, status="resolved"),
        )
        r = await client.get("/")
        html = r.text
        config_version = app.state.services.runtime().loaded.version
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert "disk &lt;b&gt;full&lt;/b&gt;" in html
    assert set(names(html)) == {"<script>x</script>", "Warm"}  # firing ones only
    assert "https://runbooks.example.com/warm" in html
    assert config_version in html and re.search(
        r"in <span class=\"render-ms\">[0-9.]+</span> ms", html
    )
    assert re.search(r'"render;dur=[0-9.]+"|render;dur=[0-9.]+', r.headers["server-timing"])
    counts = html.split('<table class="counts">', 1)[1].split("</table>", 1)[0]
    firing_row = re.search(r">firing</a></th>(.*?)</tr>", counts, re.S)
    assert firing_row and re.findall(r"<td>(?:<a [^>]*>)?(\d+)", firing_row.group(1)) == [
        "1",
        "1",
        "2",
    ]  # critical, warning, total


def flag_flapping(db_url: str, alertname: str) -> None:
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE alerts SET flapping=:t WHERE alertname=:n"),
                {"t": True, "n": alertname},
            )
    finally:
        engine.dispose()


async def test_overview_lists_firing_and_flapping_and_counts_recent_resolves(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=10))
    async with running_app(db_url, TWO_ROUTES_CONFIG, clock=clock) as (_, client):
        for i in range(3):
            await post(
                client,
                am_alert(
                    {"alertname": f"F{i}", "severity": "warning"},
                    starts_at=T0 + timedelta(seconds=i),
                ),
            )
            clock.advance(1)
        await post(
            client, am_alert({"alertname": "Wobbly", "severity": "critical"}, status="resolved")
        )
        flag_flapping(db_url, "Wobbly")  # flapping while resolved: still needs a person
        html = (await client.get("/")).text
        assert names(html) == ["Wobbly", "F2", "F1", "F0"]  # newest change first
        assert '<span class="state state-flapping">flapping</span>' in html
        resolved_row = re.search(r">resolved</a>.*?</th>(.*?)</tr>", html, re.S)
        assert (
            resolved_row
            and re.findall(r"<td>(?:<a [^>]*>)?(\d+)", resolved_row.group(1))[-1] == "1"
        )
        clock.advance(25 * 3600)  # resolves older than a day are not counted
        html = (await client.get("/")).text
        resolved_row = re.search(r">resolved</a>.*?</th>(.*?)</tr>", html, re.S)
        assert resolved_row and re.findall(r"<td>(\d+)", resolved_row.group(1))[-1] == "0"


async def test_replay_needs_admin_sign_in_and_the_csrf_token(db_url: str) -> None:
    clock = ManualClock(T0 + timedelta(minutes=1))
    async with running_app(
        db_url, f"auth: {{admin_token: {ADMIN}}}\n" + TWO_ROUTES_CONFIG, clock=clock
    ) as (_, client):
        await post(client, am_alert({"alertname": "Dies", "severity": "info"}))
        kill(db_url, 1)

        page = await client.get("/dead-letters")
        assert (
            page.status_code == 200
            and 'id="dead-1"' in page.text
            and "HTTP 400: no such channel" in page.text
        )
        assert "Replay notification 1" not in page.text and "Admin token" in page.text
        csrf = token(page.text)
        assert client.cookies.get("alertrelay_csrf") == csrf

        async def replay(
            fields: dict[str, str], headers: dict[str, str] | None = None
        ) -> httpx.Response:
            return await client.post("/dead-letters/1/replay", data=fields, headers=headers or {})

        assert (await replay({"csrf_token": csrf})).status_code == 401  # not signed in
        r = await client.post(
            "/console/sign-in",
            data={"csrf_token": csrf, "admin_token": "wrong", "next": "/dead-letters"},
        )
        assert r.status_code == 401 and "alertrelay_admin" not in client.cookies
        r = await client.post(
            "/console/sign-in", data={"admin_token": ADMIN, "next": "/dead-letters"}
        )
        assert r.status_code == 403  # signing in is a form like any other
        r = await client.post(
            "/console/sign-in",
            data={"csrf_token": csrf, "admin_token": ADMIN, "next": "https://evil.example/"},
        )
        assert (
            r.status_code == 303
            and r.headers["location"] == "/"
            and client.cookies.get("alertrelay_admin")
        )

        # Signed in, but the form must still carry the token that matches the cookie.
        assert (await replay({})).status_code == 403
        assert (await replay({"csrf_token": "x" * 43})).status_code == 403
        assert (
            await replay({"csrf_token": csrf}, {"Origin": "https://evil.example"})
        ).status_code == 403
        assert (
            await replay({"csrf_token": csrf}, {"Sec-Fetch-Site": "cross-site"})
        ).status_code == 403
        assert (await client.get("/api/v1/notifications/1")).json()["status"] == "dead"

        r = await replay(
            {"csrf_token": csrf},
            {"Origin": "http://alertrelay.test", "Sec-Fetch-Site": "same-origin"},
        )
        assert r.status_code == 303 and r.headers["location"].startswith(
            "/dead-letters?replayed=1&requeued=1"
        )
        result = await client.get(r.headers["location"])
        assert "1 notification requeued." in result.text and 'id="watched-1"' in result.text
        assert re.search(r'id="watched-1".*?status-pending">pending<', result.text, re.S)
        assert (await client.get("/api/v1/notifications/1")).json()["status"] == "pending"
        again = await client.get((await replay({"csrf_token": csrf})).headers["location"])
        assert (
            "0 notifications requeued. Not replayed: #1 is not dead (already replayed or delivered)."
            in again.text
        )

        crafted = await client.get(
            "/dead-letters", params={"skipped": "Call 555-0100 now,1:not_dead", "requeued": "0"}
        )
        assert (
            "555" not in crafted.text and "#1 is not dead" in crafted.text
        )  # a link cannot put words on the page

        # Each replay is in the audit log, by the admin, via the console, and on its page.
        entries = (await client.get("/api/v1/audit", params={"action": "replay"})).json()["entries"]
        assert [(e["actor"], e["target"], e["outcome"], e["details"]["via"]) for e in entries] == [
            ("admin", "notification/1", "not_dead", "console"),
            ("admin", "notification/1", "requeued", "console"),
        ]
        audit_page = await client.get("/audit", params={"action": "replay"})
        assert audit_page.status_code == 200 and audit_page.text.count("notification/1") == 2
        assert "via=console" in audit_page.text
        assert (await client.get("/audit", params={"action": "bogus"})).status_code == 400
        assert "No entries." in (await client.get("/audit", params={"actor": "someone-else"})).text

        # The session ends after 12 hours.
        kill(db_url, 1)
        clock.advance(12 * 3600 + 1)
        assert (await replay({"csrf_token": csrf})).status_code == 401
        # A script may send the admin token as a bearer header instead of signing in.
        client.cookies.delete("alertrelay_admin")
        r = await client.post(
            "/dead-letters/replay-all",
            data={"csrf_token": csrf},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 303 and "requeued=1" in r.headers["location"]
        r = await client.post(
            "/dead-letters/replay-all",
            data={"csrf_token": csrf},
            headers={"Authorization": "Bearer nope"},
        )
        assert r.status_code == 401


async def test_actions_closed_without_admin_token_and_open_without_auth(db_url: str) -> None:
    async with running_app(db_url, "auth: {webhook_token: t}\n" + LOG_CONFIG) as (_, client):
        headers = {**JSON, "Authorization": "Bearer t"}
        await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([am_alert({"alertname": "X"})])),
            headers=headers,
        )
        kill(db_url, 1)
        page = await client.get("/dead-letters")
        assert "Actions are disabled" in page.text and "Replay notification" not in page.text
        assert "<form" not in page.text.split('<main id="main">', 1)[1]
        r = await client.post(
            "/dead-letters/1/replay", data={"csrf_token": client.cookies["alertrelay_csrf"]}
        )
        assert r.status_code == 403 and "set auth.admin_token" in r.text
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await post(client, am_alert({"alertname": "Y"}))
        kill(db_url, 2)
        page = await client.get("/dead-letters")
        assert "Replay notification 2" in page.text and "Admin token" not in page.text
        assert (
            await client.post("/dead-letters/2/replay", data={})
        ).status_code == 403  # still needs the token
        r = await client.post("/dead-letters/2/replay", data={"csrf_token": token(page.text)})
        assert r.status_code == 303


PD_KEY = "pd-routing-key-secret-0123456789"
HOOK_SECRET = "hook-path-secret-abcdef"
SECRET_CONFIG = f"""
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: "{PD_KEY}", url: "http://127.0.0.1:9/v2/enqueue"}}]
    webhook_configs: [{{url: "http://127.0.0.1:9/hook/{HOOK_SECRET}"}}]
"""


async def test_alert_page_shows_each_notification_with_secrets_redacted(db_url: str) -> None:
    async with running_app(db_url, SECRET_CONFIG) as (_, client):
        await post(
            client, am_alert({"alertname": "DiskFull", "severity": "critical", "instance": "db-1"})
        )
        fp = (await client.get("/api/v1/alerts")).json()["alerts"][0]["fingerprint"]
        kill(db_url, 1)
        html = (await client.get(f"/alerts/{fp}")).text
        routes = (
            await client.get("/routes", params={"labels": "alertname=DiskFull\nseverity=critical"})
        ).text
        missing = await client.get("/alerts/ffffffffffffffff")
    for page in (html, routes):
        assert PD_KEY not in page and HOOK_SECRET not in page
    assert 'id="notification-1"' in html and 'id="notification-2"' in html
    assert "Message reference" in html and "HTTP 400" in html and "no such channel" in html
    assert "&#34;event_action&#34;: &#34;trigger&#34;" in html  # the PagerDuty body as it goes out
    assert "&lt;redacted&gt;" in html
    assert '<span class="state state-firing">firing</span>' in html  # the timeline
    assert "page/pagerduty/0" in routes and "page/webhook/0" in routes
    assert missing.status_code == 404 and "No alert with fingerprint" in missing.text


async def test_routes_form_refuses_bad_labels(db_url: str) -> None:
    async with running_app(db_url, TWO_ROUTES_CONFIG) as (_, client):
        r = await client.get("/routes", params={"labels": "no equals sign"})
        assert r.status_code == 400 and "is not NAME=VALUE" in r.text
        r = await client.get("/routes", params={"labels": "severity=critical", "kind": "nonsense"})
        assert r.status_code == 400
        r = await client.get("/routes", params={"labels": "severity=warning\nalertname=DiskFull"})
        assert r.status_code == 200
        receivers = re.search(r'<p class="receivers">(.*?)</p>', r.text, re.S)
        assert receivers and re.findall(r"<strong>(\w+)</strong>", receivers.group(1)) == ["mail"]
        assert "https://wiki.example.com/storage#DiskFull" in r.text


async def test_static_assets_are_cached_by_etag(sqlite_url: str) -> None:
    async with running_app(sqlite_url, LOG_CONFIG) as (_, client):
        css = await client.get("/static/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        again = await client.get(
            "/static/console.css", headers={"If-None-Match": css.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        assert (
            (await client.get("/static/console.js"))
            .headers["content-type"]
            .startswith("text/javascript")
        )
        assert (await client.get("/static/..%2Fview.py")).status_code == 404
        assert (await client.get("/static/secret.txt")).status_code == 404


async def test_alert_page_marks_suppressed_transitions_and_shows_the_flap_score(
    db_url: str,
) -> None:
    clock = ManualClock(T0)
    labels = {"alertname": "Flappy", "severity": "critical", "instance": "db-1"}
    async with running_app(db_url, LOG_CONFIG, clock=clock) as (_, client):
        for i in range(8):  # fires and resolves every 5 minutes: it starts to flap
            clock.set(T0 + timedelta(minutes=5 * i))
            occurrence = T0 + timedelta(minutes=10 * (i // 2))
            if i % 2 == 0:
                await post(client, am_alert(labels, starts_at=occurrence))
            else:
                await post(
                    client,
                    am_alert(labels, status="resolved", starts_at=occurrence, ends_at=clock.now()),
                )
        fp = (await client.get("/api/v1/alerts")).json()["alerts"][0]["fingerprint"]
        api = (await client.get(f"/api/v1/alerts/{fp}")).json()
        html = (await client.get(f"/alerts/{fp}")).text
    suppressed = [t["suppressed"] for t in api["transitions"] if t["suppressed"]]
    assert api["flap"]["flapping"] and suppressed and set(suppressed) == {"flapping"}
    timeline = html.split('id="timeline-h"', 1)[1].split("</section>", 1)[0]
    items = re.findall(r"<li class=\"([^\"]*)\">(.*?)</li>", timeline, re.S)
    assert len(items) == len(api["transitions"]) == 8
    marked = [text for cls, text in items if cls == "suppressed"]
    assert len(marked) == len(suppressed)
    assert all("suppressed: flapping" in text for text in marked)
    # Oldest first: the first transitions notified, the later ones were held back.
    assert "suppressed" not in items[0][0] and items[-1][0] == "suppressed"
    flap = re.search(r"<dt>Flap score</dt><dd>(.*?)</dd>", html, re.S)
    assert flap and flap.group(1).startswith(str(api["flap"]["score"]))
    assert "flapping since" in flap.group(1) and f"({api['flap']['transitions']} transitions)" in (
        flap.group(1)
    )


async def test_the_overview_lists_a_bounded_number_and_links_to_the_pages(db_url: str) -> None:
    async with running_app(db_url, LOG_CONFIG) as (_, client):
        await post(
            client,
            *[
                am_alert({"alertname": f"Many{i}", "severity": "warning"}, starts_at=T0)
                for i in range(60)
            ],
        )
        html = (await client.get("/")).text
        first = (await client.get("/alerts", params={"state": "firing"})).text
    # The counts say 60, the table shows the 50 newest, and the rest are a page away.
    assert len(names(html)) == 50
    assert re.search(r">firing</a></th>.*?<td>60</td>", html, re.S)
    assert '<a href="/alerts?state=firing">All firing alerts</a>' in html
    assert len(names(first)) == 50 and '<a rel="next"' in first
