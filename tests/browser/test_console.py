"""The web console in a real Chromium: look, filter, open, replay, test routes; forms are safe."""

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.browser.conftest import (
    ADMIN_TOKEN,
    PAGE_SECRET,
    Console,
    assert_accessible,
    fail_next,
    low_contrast,
    recover,
    unnamed_controls,
)
from tests.e2e.harness import http_json, wait_until
from tests.helpers import am_alert, am_webhook
from tests.sinks import serve_app


def post(console: Console, *alerts: dict[str, Any]) -> None:
    answer = http_json("POST", console.url + "/webhook/alertmanager", am_webhook(list(alerts)))
    assert answer["status"] == "ok" and not answer["rejected"], answer


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


# One start for the default occurrence: a firing and its resolve must name the same one.
START = ago(17)


def firing(
    name: str, severity: str = "critical", minutes: float | None = None, **labels: str
) -> dict[str, Any]:
    return am_alert(
        {"alertname": name, "severity": severity, **labels},
        starts_at=START if minutes is None else ago(minutes),
        annotations={"summary": f"{name} on {labels.get('instance', 'all')}"},
    )


def resolved(
    name: str, severity: str = "critical", minutes: float | None = None, **labels: str
) -> dict[str, Any]:
    start = START if minutes is None else ago(minutes)
    return am_alert(
        {"alertname": name, "severity": severity, **labels},
        status="resolved",
        starts_at=start,
        ends_at=start + timedelta(minutes=5),
        annotations={"summary": f"{name} on {labels.get('instance', 'all')}"},
    )


def test_overview_screenshot(console: Console, page: Any, images: Path) -> None:
    # Runs first in this module, so the picture shows only these.
    post(
        console,
        firing("KubePodCrashLooping", minutes=4, instance="10.0.0.12:9100", namespace="payments"),
        firing("NodeFilesystemSpaceFillingUp", minutes=95, instance="db-2:9100"),
        am_alert(
            {"alertname": "HighErrorRate", "severity": "warning", "service": "checkout"},
            starts_at=ago(12),
            annotations={"summary": "5xx above 2% for 10m"},
        ),
        am_alert(
            {"alertname": "TargetDown", "severity": "info", "job": "node"},
            starts_at=ago(40),
            annotations={"summary": "1 of 40 node targets down"},
        ),
        resolved("CertificateExpiring", severity="warning", minutes=300, instance="edge-1"),
    )
    page.goto(console.url + "/")
    page.get_by_role("link", name="KubePodCrashLooping", exact=True).wait_for()
    page.reload()  # the footer's render time without the templates' first compile
    page.get_by_role("link", name="KubePodCrashLooping", exact=True).wait_for()
    page.screenshot(path=str(images / "overview.png"), full_page=True)
    assert (images / "overview.png").stat().st_size > 10_000


def test_firing_alert_appears_on_the_overview_within_one_refresh(
    console: Console, page: Any
) -> None:
    page.goto(console.url + "/?refresh=2")
    assert "NewlyFiring" not in page.locator("#live").inner_text()
    page.evaluate("window.__sameDocument = true")
    post(console, firing("NewlyFiring", instance="web-3"))
    started = time.monotonic()
    page.locator("#live").get_by_role("link", name="NewlyFiring", exact=True).wait_for(
        timeout=6_000
    )
    assert time.monotonic() - started < 4.5  # one 2 s refresh, with room for a loaded machine
    # Refreshed in place by the script, not by reloading the page.
    assert page.evaluate("window.__sameDocument") is True
    row = page.locator("#live tr", has_text="NewlyFiring")
    assert (
        "critical" in row.inner_text() and "page" in row.inner_text()
    )  # severity as text, receiver


def test_filter_open_and_timeline_shows_firing_then_resolved(
    console: Console, page: Any, images: Path
) -> None:
    post(console, firing("DiskFilling", instance="db-7"), firing("DiskFilling", instance="db-8"))
    page.goto(console.url + "/alerts")
    page.get_by_label("State").select_option("firing")
    page.get_by_label("Labels contain").fill("db-7")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"q=db-7"))
    table = page.locator("table.list")
    assert "db-7" in table.inner_text() and "db-8" not in table.inner_text()
    table.get_by_role("link", name="DiskFilling", exact=True).click()
    page.wait_for_url(re.compile(r"/alerts/[0-9a-f]{16}$"))
    assert page.get_by_role("row", name=re.compile("instance db-7")).count() == 1
    assert page.locator(".timeline li .state").all_inner_texts() == ["firing"]

    post(console, resolved("DiskFilling", instance="db-7"))
    page.reload()
    states = page.locator(".timeline li .state").all_inner_texts()
    assert states == ["firing", "resolved"]
    # Its page lists the notifications sent to the page receiver, with the request as sent.
    wait_until(
        lambda: (page.reload(), page.locator(".note-card .status-sent").count() >= 2)[1],
        15,
        interval=0.5,
        what="both notifications sent",
    )
    text = page.locator("#main").inner_text()
    assert "Message reference" in text and PAGE_SECRET not in page.content()
    # The runbook, the annotations, and each notification's delivery attempts.
    assert page.get_by_role("link", name="https://runbooks.example.com/diskfilling").count() == 1
    assert page.get_by_role("row", name=re.compile("summary DiskFilling on db-7")).count() == 1
    for card in page.locator(".note-card").all():
        assert "sent" in card.locator("table.attempts tbody tr").first.inner_text()
    page.locator(".note-card summary").first.click()  # show the message as sent
    page.screenshot(path=str(images / "alert.png"), full_page=True)


def test_dead_letter_replayed_with_the_button_turns_sent(console: Console, page: Any) -> None:
    fail_next(console.fragile)
    post(console, am_alert({"alertname": "ReplayMe", "severity": "warning"}))
    note = wait_until(
        lambda: [
            n
            for n in http_json("GET", console.url + "/api/v1/notifications?status=dead")[
                "notifications"
            ]
            if n["receiver"] == "fragile"
        ],
        15,
        what="the fragile notification dead",
    )[0]
    recover(console.fragile)
    page.goto(console.url + "/dead-letters")
    row = page.locator(f"#dead-{note['id']}")
    assert "HTTP 400" in row.inner_text()  # why it died
    assert (
        page.get_by_role("button", name=f"Replay notification {note['id']}").count() == 0
    )  # not signed in
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in to act").click()
    page.get_by_role("button", name=f"Replay notification {note['id']}").click()
    assert "1 notification requeued" in page.get_by_role("status").inner_text()

    def sent() -> bool:
        page.get_by_role("link", name="Check again").click()
        return page.locator(f"#watched-{note['id']} .status").inner_text() == "sent"

    wait_until(sent, 15, interval=0.5, what="the replayed row sent")
    assert len([r for r in console.fragile.requests() if r.status == 200]) == 1
    assert http_json("GET", console.url + f"/api/v1/notifications/{note['id']}")["status"] == "sent"


def test_routes_form_shows_receiver_and_rendered_message(console: Console, page: Any) -> None:
    page.goto(console.url + "/routes")
    assert "route.routes[1]" in page.locator(".tree").inner_text()
    page.get_by_label("Labels, one NAME=VALUE per line").fill(
        "alertname=DiskFull\nseverity=critical\ninstance=db-1"
    )
    page.get_by_role("button", name="Show what happens").click()
    result = page.locator("#route-result")
    assert result.locator(".receivers").inner_text() == "page"
    text = result.inner_text()
    assert "https://runbooks.example.com/diskfull" in text
    assert "[FIRING] DiskFull (critical)" in text and "page/webhook/0" in text
    assert PAGE_SECRET not in page.content()
    # The escalation step of the route, in the tree and in the answer.
    assert "chat" in page.locator(".tree .escalate").inner_text()
    assert "1h" in result.locator("#route-escalate").inner_text()
    assert "chat" in result.locator("#route-escalate").inner_text()


def test_cross_site_post_without_token_is_refused(console: Console, page: Any) -> None:
    fail_next(console.fragile)
    post(console, am_alert({"alertname": "ReplayMe", "severity": "warning", "try": "csrf"}))
    wait_until(
        lambda: [
            n
            for n in http_json("GET", console.url + "/api/v1/notifications?status=dead")[
                "notifications"
            ]
            if n["receiver"] == "fragile"
        ],
        15,
    )
    recover(console.fragile)
    # Signed in as admin in this browser...
    page.goto(console.url + "/dead-letters")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in to act").click()
    page.get_by_role("button", name="Replay all dead letters").wait_for()
    # ...a page on another site posts the replay-all form without a token.
    evil = Starlette(
        routes=[
            Route(
                "/",
                lambda r: HTMLResponse(
                    f'<form method="post" action="{console.url}/dead-letters/replay-all"><button>Win a prize</button></form>'
                ),
            )
        ]
    )
    with serve_app(evil) as evil_url:
        page.goto(evil_url.replace("127.0.0.1", "localhost"))
        with page.expect_navigation() as nav:
            page.get_by_role("button", name="Win a prize").click()
        assert nav.value.status == 403
        assert "refused" in page.content()
    # The same browser's own button works, so it was the missing token that counted.
    dead = http_json("GET", console.url + "/api/v1/notifications?status=dead")["notifications"]
    assert dead, "the cross-site post replayed nothing"
    # A same-site request with the admin session but without the token is refused too.
    answer = page.request.post(
        console.url + "/dead-letters/replay-all", form={"next": "/"}, max_redirects=0
    )
    assert answer.status == 403
    page.goto(console.url + "/dead-letters")
    page.get_by_role("button", name="Replay all dead letters").click()
    assert "requeued" in page.get_by_role("status").inner_text()


def test_overview_at_phone_width_has_no_horizontal_scroll(console: Console, browser: Any) -> None:
    post(
        console,
        firing(
            "VeryLongAlertNameThatKeepsGoingAndGoingWithoutAnySpaces",
            instance="node-exporter-0123456789.prod.example.internal:9100",
        ),
    )
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    try:
        fp = http_json("GET", console.url + "/api/v1/alerts?state=firing&limit=1")["alerts"][0][
            "fingerprint"
        ]
        for path in (
            "/",
            "/alerts",
            f"/alerts/{fp}",
            "/dead-letters",
            "/routes?labels=alertname%3DDiskFull%0Aseverity%3Dcritical",
            "/audit",
            "/heartbeats",
        ):
            page.goto(console.url + path)
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], (
                f"{path}: content {widths[0]} px wide in a {widths[1]} px viewport"
            )
    finally:
        context.close()


def test_unnamed_control_detector() -> None:
    assert unnamed_controls('- button "Replay"\n- link "Alerts":\n  - /url: /alerts') == []
    assert unnamed_controls('- button\n- combobox:\n  - option "a"\n- textbox [disabled]') == [
        "- button",
        "- combobox:",
        "- textbox [disabled]",
    ]


def every_page(console: Console) -> list[str]:
    """A path of each console page (the ack link's page is in test_ack.py), and an error page."""
    post(console, firing("AccessibleAlert", instance="a11y-1"))
    fp = http_json("GET", console.url + "/api/v1/alerts?state=firing")["alerts"][0]["fingerprint"]
    return [
        "/",
        "/alerts",
        f"/alerts/{fp}",
        "/dead-letters",
        "/routes?labels=alertname%3DX%0Aseverity%3Dcritical",
        "/audit",
        "/heartbeats",
        "/alerts/nonexistent",
    ]


def sign_in(console: Console, page: Any) -> None:
    page.goto(console.url + "/dead-letters")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in to act").click()
    page.get_by_role("button", name="Sign out").wait_for()


def test_every_page_names_every_control(console: Console, page: Any) -> None:
    paths = every_page(console)
    for signed_in in (False, True):
        if signed_in:
            sign_in(console, page)
        for path in paths:
            page.goto(console.url + path)
            assert_accessible(page, path)


def test_contrast_detector(page: Any) -> None:
    page.set_content(
        '<p style="color:#aaa">faint</p><p>plain</p>'
        '<p style="background:#1f2933;color:#fff">inverse</p>'
        '<p style="color:#555;opacity:.3">see-through</p>'
    )
    found = low_contrast(page)
    assert len(found) == 2 and "faint" in found[0] and "see-through" in found[1], found


def test_every_page_has_readable_contrast_and_loads_nothing_from_elsewhere(
    console: Console, page: Any
) -> None:
    paths = every_page(console)
    sign_in(console, page)  # signed in: the pages show their forms and buttons too
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in paths:
        page.goto(console.url + path)
        for summary in page.locator("summary").all():
            summary.click()  # open the messages as sent, the ack history
        assert low_contrast(page) == [], path
    assert requested and all(url.startswith(console.url + "/") for url in requested), requested
    assert {url.split("?")[0] for url in requested if "/static/" in url} <= {
        console.url + "/static/console.css",
        console.url + "/static/console.js",
    }


def test_pages_work_with_javascript_off(console: Console, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        # The overview reloads itself (a <noscript> refresh) and so shows a new alert.
        page.goto(console.url + "/?refresh=2")
        # Only a browser without scripts reads <noscript> as markup: scripts are off.
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        post(console, firing("NoScriptAlert", instance="noscript-1"))
        page.locator("#live").get_by_role("link", name="NoScriptAlert", exact=True).wait_for(
            timeout=6_000
        )
        # Filter (a GET form), open the alert, sign in and acknowledge (POST forms).
        page.goto(console.url + "/alerts")
        page.get_by_label("Labels contain").fill("noscript-1")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"q=noscript-1"))
        page.locator("table.list").get_by_role("link", name="NoScriptAlert", exact=True).click()
        page.wait_for_url(re.compile(r"/alerts/[0-9a-f]{16}$"))
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in to act").click()
        page.get_by_label("Comment").fill("looking without scripts")
        page.get_by_role("button", name="Acknowledge", exact=True).click()
        page.wait_for_url(re.compile(r"\?ack=done#ack-h$"))
        assert "looking without scripts" in page.locator("p.ack-state").inner_text()
    finally:
        context.close()


def test_pages_need_the_read_credential_when_it_is_set(browser: Any, tmp_path: Path) -> None:
    from tests.e2e.harness import alertrelay

    config = """
auth:
  admin_token: adm1n-token-for-read-test
  read: {basic_auth: {username: oncall, password: r3ad-pass}}
route: {receiver: log}
receivers: [{name: log, log_configs: [{}]}]
"""
    with alertrelay(tmp_path, config, name="guarded") as relay:
        anonymous = browser.new_context()
        try:
            # Headless Chromium cannot show the login prompt (a page load fails with
            # ERR_INVALID_AUTH_CREDENTIALS), so the bare answer is read with the browser's request API.
            answer = anonymous.request.get(relay.url + "/")
            assert answer.status == 401
            assert "Basic" in answer.headers.get(
                "www-authenticate", ""
            )  # a browser can prompt for it
        finally:
            anonymous.close()
        reader = browser.new_context(
            http_credentials={"username": "oncall", "password": "r3ad-pass"}
        )
        try:
            page = reader.new_page()
            for path in ("/", "/alerts", "/dead-letters", "/routes", "/heartbeats", "/audit"):
                answer = page.goto(relay.url + path)
                assert answer is not None and answer.status == 200, path
            assert page.get_by_role("heading", level=1).inner_text() == "Audit log"
        finally:
            reader.close()
