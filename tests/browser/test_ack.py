"""Acknowledge in a real Chromium: the alert page's form (with a comment), the
one-click link from a chat message, un-ack; each seen on the page, in the
API, and as PagerDuty's ``acknowledge`` at the fake PagerDuty."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import CHROMIUM, assert_accessible, low_contrast, sync_playwright
from tests.e2e.harness import Proc, alertrelay, http_json, wait_until
from tests.helpers import am_alert, am_webhook
from tests.sinks import FakePagerDuty, Reply, WebhookSink, serve

ADMIN = "browser-ack-admin-s3cret"
SECRET = "browser-ack-link-secret-0123456789"
KEY = "BROWSERACKKEY0123456789abcdef012"


class Slack(WebhookSink):
    default = Reply(200, "ok", headers={"Content-Type": "text/html"})


def config(pd_url: str, slack_url: str) -> str:
    return f"""
external_url: http://alertrelay.invalid
auth:
  admin_token: {ADMIN}
  link_secret: {SECRET}
route:
  receiver: page
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue"}}]
    # One message per alert: these tests press that message's Acknowledge
    # button (grouped messages carry a link per line; test_group_ack.py).
    slack_configs: [{{api_url: "{slack_url}/services/T/B/X", grouping: alert}}]
"""


class Served:
    def __init__(self, proc: Proc, pd: FakePagerDuty, slack: Slack) -> None:
        self.proc, self.url, self.pd, self.slack = proc, proc.url, pd, slack


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if CHROMIUM is None or sync_playwright is None:
        pytest.skip("chromium or playwright not installed")
    pd, slack = FakePagerDuty(), Slack()
    with serve(pd) as pd_url, serve(slack) as slack_url:
        with alertrelay(tmp_path_factory.mktemp("ack"), config(pd_url, slack_url)) as proc:
            yield Served(proc, pd, slack)


def fire(served: Served, name: str) -> str:
    alert = am_alert(
        {"alertname": name, "severity": "critical"}, annotations={"summary": f"{name} summary"}
    )
    answer = http_json("POST", served.url + "/webhook/alertmanager", am_webhook([alert]))
    assert answer["status"] == "ok", answer
    return str(alert["fingerprint"])


def pd_actions(served: Served) -> list[str]:
    return [action for action, _ in served.pd.order]


def acknowledged_at_pagerduty(served: Served, count: int) -> bool:
    return pd_actions(served).count("acknowledge") >= count


def test_ack_with_a_comment_on_the_alert_page(served: Served, page: Any) -> None:
    fp = fire(served, "AckFromConsole")
    wait_until(lambda: "trigger" in pd_actions(served), what="the trigger at PagerDuty")
    page.goto(f"{served.url}/alerts/{fp}")
    assert page.get_by_text("Not acknowledged.").count() == 1
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in to act").click()
    page.get_by_label("Comment").fill("restarting the exporter")
    page.get_by_label("For (optional, e.g. 30m or 2h)").fill("2h")
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    page.wait_for_url(re.compile(r"\?ack=done#ack-h$"))
    state = page.locator("p.ack-state").inner_text()
    assert "Acknowledged by admin (console)" in state and "restarting the exporter" in state
    assert "until" in state
    assert "acked by admin" in page.locator("p.lead").inner_text()

    alert = http_json("GET", f"{served.url}/api/v1/alerts/{fp}")
    assert alert["ack"]["comment"] == "restarting the exporter"
    assert (alert["ack"]["by"], alert["ack"]["via"], alert["ack"]["active"]) == (
        "admin",
        "console",
        True,
    )
    wait_until(lambda: acknowledged_at_pagerduty(served, 1), what="acknowledge at PagerDuty")
    [incident] = [i for i in served.pd.all_incidents() if i.get("acknowledged")]
    assert incident["events"][-1]["event_action"] == "acknowledge"
    assert incident["dedup_key"] == alert["incident_key"]

    # The overview says it too; un-ack takes it back.
    page.goto(served.url + "/")
    assert "acked by admin" in page.locator("#live").inner_text()
    page.goto(f"{served.url}/alerts/{fp}")
    page.get_by_role("button", name="Un-acknowledge").click()
    page.wait_for_url(re.compile(r"\?ack=undone#ack-h$"))
    assert page.get_by_text("Not acknowledged.").count() == 1
    assert http_json("GET", f"{served.url}/api/v1/alerts/{fp}")["ack"] is None


def test_ack_through_the_link_in_the_chat_message(served: Served, page: Any) -> None:
    fp = fire(served, "AckFromLink")

    def link() -> str | None:
        for message in served.slack.bodies():
            if "AckFromLink" in message["text"]:
                for block in message["attachments"][0]["blocks"]:
                    for element in block.get("elements", []):
                        if element.get("action_id") == "acknowledge":
                            return str(element["url"])
        return None

    url = wait_until(link, what="the Slack message with its Acknowledge button")
    path = urlsplit(url).path
    before = pd_actions(served).count("acknowledge")
    page.goto(served.url + path)
    assert page.get_by_role("heading", name="Acknowledge AckFromLink?").count() == 1
    assert_accessible(page, "the link's page")
    assert low_contrast(page) == []
    # Showing the page acknowledged nothing.
    assert http_json("GET", f"{served.url}/api/v1/alerts/{fp}")["ack"] is None
    page.get_by_label("Comment (optional)").fill("taking it from the phone")
    page.get_by_role("button", name="Acknowledge AckFromLink").click()
    page.get_by_role("heading", name="Acknowledged AckFromLink").wait_for()
    assert "Acknowledged by page" in page.locator("p.ok").inner_text()
    assert_accessible(page, "the link's answer")
    assert low_contrast(page) == []
    alert = http_json("GET", f"{served.url}/api/v1/alerts/{fp}")
    assert (alert["ack"]["by"], alert["ack"]["via"]) == ("page", "link")
    assert alert["ack"]["comment"] == "taking it from the phone"
    wait_until(
        lambda: acknowledged_at_pagerduty(served, before + 1), what="acknowledge at PagerDuty"
    )
    # A tampered link is refused with its own page.
    response = page.goto(served.url + path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert response is not None and response.status == 403
    assert page.get_by_role("heading", name="This link is not valid").count() == 1
    assert_accessible(page, "the link's refusal")


def test_screenshot_of_the_link_page(served: Served, page: Any, images: Path) -> None:
    fire(served, "AckScreenshot")
    url = wait_until(
        lambda: next(
            (
                e["url"]
                for m in served.slack.bodies()
                if "AckScreenshot" in m["text"]
                for b in m["attachments"][0]["blocks"]
                for e in b.get("elements", [])
                if e.get("action_id") == "acknowledge"
            ),
            None,
        ),
        what="the link",
    )
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: where links are opened
    page.goto(served.url + urlsplit(url).path)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"content {widths[0]} px wide in a {widths[1]} px viewport"
    page.screenshot(path=str(images / "ack-link.png"), full_page=True)
    assert (images / "ack-link.png").stat().st_size > 5_000
