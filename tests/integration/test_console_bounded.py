"""A filtered console page reads a bounded number of alerts, on SQLite and PostgreSQL.

A filter no index serves (label text, receiver, severity) is checked along
the newest-first walk; a page stops after ``scan`` alerts and hands out a
cursor after the last one it looked at, so a rare match costs several cheap
pages instead of one page that reads a year of alerts. Following the
cursors finds every match exactly once.
"""

import httpx

from app.ops.clock import ManualClock
from app.store import console_reads
from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, T0, am_alert, am_webhook, body


async def post(client: httpx.AsyncClient, labels: dict[str, str]) -> None:
    r = await client.post(
        "/webhook/alertmanager", content=body(am_webhook([am_alert(labels)])), headers=JSON
    )
    assert r.status_code == 200, r.text


async def test_a_rare_match_is_found_by_bounded_pages_and_a_common_one_fills_a_page(
    db_url: str,
) -> None:
    clock = ManualClock(T0)
    async with running_app(db_url, LOG_CONFIG, clock=clock) as (app, client):
        # 25 alerts, one changed per second; the 3rd oldest and the 2nd newest carry the needle.
        for i in range(25):
            labels = {"alertname": f"A{i:02d}", "severity": "warning"}
            if i in (2, 23):
                labels["pod"] = "needle-7"
            await post(client, labels)
            clock.advance(1)
        db = app.state.services.db

        async def walk(**filters: str | None) -> list[tuple[list[str], bool]]:
            pages: list[tuple[list[str], bool]] = []
            cursor = None
            while True:
                async with db.read() as conn:
                    items, cursor = await console_reads.search_alerts(
                        conn,
                        **{"state": None, "severity": None, "receiver": None, "text": None}
                        | filters,
                        limit=5,
                        cursor=cursor,
                        scan=10,
                    )
                pages.append(([a["alertname"] for a in items], cursor is not None))
                if cursor is None:
                    return pages
                assert len(pages) < 10, pages

        # Newest first: A24..A15 (A23 matches), A14..A05 (none), A04..A00 (A02).
        assert await walk(text="NEEDLE") == [(["A23"], True), ([], True), (["A02"], False)]
        # A receiver nobody was sent to: three bounded pages, nothing found.
        assert await walk(receiver="nobody") == [([], True), ([], True), ([], False)]
        # A common match fills its page before the bound, and pages on as usual.
        pages = await walk(severity="warning")
        assert [len(names) for names, _ in pages] == [5, 5, 5, 5, 5]
        assert pages[0][0] == ["A24", "A23", "A22", "A21", "A20"]
        assert [more for _, more in pages] == [True, True, True, True, False]
        # Without a filter a page is an index walk; no bound applies.
        assert [len(names) for names, _ in await walk()] == [5, 5, 5, 5, 5]

        # Fewer alerts than the console's bound: one page, and it says so.
        r = await client.get("/alerts", params={"q": "no-such-label-anywhere"})
        assert r.status_code == 200
        assert "No alert matches." in r.text
