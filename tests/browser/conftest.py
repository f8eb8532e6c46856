"""A real Chromium (Debian's package) driven by Playwright against ``alertrelay serve``.

Browser downloads are not possible on these machines, so Playwright is
pointed at the system browser. Without it (or without Playwright) these
tests skip, except under ALERTRELAY_TEST_REQUIRE_ALL=1, where the top-level
conftest turns the missing browser into an error.
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Proc, alertrelay
from tests.sinks import Reply, WebhookSink, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ADMIN_TOKEN = "console-admin-s3cret"
PAGE_SECRET = "pagekey-9f8e7d"  # a secret part of the page receiver's URL; never shown

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]


def config(sink_url: str, fragile_url: str) -> str:
    return f"""
auth:
  admin_token: {ADMIN_TOKEN}
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route:
  receiver: chat
  routes:
    - matchers: ['alertname="ReplayMe"']
      receiver: fragile
    - matchers: ['severity="critical"']
      receiver: page
      # Long enough never to fire here: the routes page shows the step.
      escalate: [{{after: 1h, receiver: chat}}]
# Never seen, so its clock starts at start-up: the heartbeats page lists it.
heartbeats:
  - name: prod-watchdog
    matchers: ['alertname="Watchdog"']
    interval: 1h
receivers:
  - name: page
    webhook_configs: [{{url: "{sink_url}/page/{PAGE_SECRET}"}}]
  - name: chat
    webhook_configs: [{{url: "{sink_url}/chat"}}]
  - name: fragile
    delivery: {{max_attempts: 1}}
    webhook_configs: [{{url: "{fragile_url}/fragile"}}]
"""


class Console:
    """The served app and its sinks, shared by the tests of a module."""

    def __init__(self, proc: Proc, sink: WebhookSink, fragile: WebhookSink) -> None:
        self.proc = proc
        self.url = proc.url
        self.sink = sink
        self.fragile = fragile


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if CHROMIUM is None or sync_playwright is None:
        pytest.skip("chromium or playwright not installed")
    tmp = tmp_path_factory.mktemp("console")
    sink, fragile = WebhookSink(), WebhookSink()
    with serve(sink) as sink_url, serve(fragile) as fragile_url:
        with alertrelay(tmp, config(sink_url, fragile_url)) as proc:
            yield Console(proc, sink, fragile)


# Package scope, not session: while Playwright's sync API is open it keeps an
# event loop running in this thread, and every async test that ran after it
# would fail with "Cannot run the event loop while another loop is running".
@pytest.fixture(scope="package")
def browser() -> Iterator["Browser"]:
    if CHROMIUM is None or sync_playwright is None:
        pytest.skip("chromium or playwright not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: "Browser") -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: README's docs/images/ when
    ALERTRELAY_UPDATE_SCREENSHOTS=1, else a scratch folder (so a test run
    does not change committed files)."""
    if os.environ.get("ALERTRELAY_UPDATE_SCREENSHOTS") == "1":
        return DOCS_IMAGES
    return tmp_path_factory.mktemp("screenshots")


def fail_next(sink: WebhookSink) -> None:
    sink.default = Reply(400, "bad request: no such channel")


def recover(sink: WebhookSink) -> None:
    sink.default = Reply()


CONTROLS = (
    "button",
    "link",
    "textbox",
    "searchbox",
    "combobox",
    "checkbox",
    "radio",
    "listbox",
    "spinbutton",
)
UNNAMED = re.compile(r"^\s*- (" + "|".join(CONTROLS) + r")(?:\s*$|:|\s+\[)")
FOOTER = re.compile(r"Rendered .+ in [0-9]+\.[0-9] ms · config \S+ · alertrelay \S+")


def unnamed_controls(snapshot: str) -> list[str]:
    """Lines of an aria snapshot for a control with no accessible name (`- button` rather than `- button "Replay"`)."""
    return [line for line in snapshot.splitlines() if UNNAMED.match(line)]


def assert_accessible(page: Any, what: str) -> None:
    """The checks every console page passes: each control named in Playwright's
    accessibility tree, the landmarks and one h1, and the footer's render time
    and config version."""
    snapshot = page.locator("body").aria_snapshot()
    assert unnamed_controls(snapshot) == [], f"{what}:\n{snapshot}"
    assert page.get_by_role("main").count() == 1, what
    assert page.get_by_role("navigation", name="Console").count() == 1, what
    assert page.get_by_role("heading", level=1).count() == 1, what
    footer = page.locator("footer").inner_text()
    assert FOOTER.search(footer), f"{what}: footer {footer!r}"


# WCAG 2 contrast of each visible text against the first opaque background
# behind it (element opacity blends the text into that background).
CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[0-9.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const bg = background(el);
    const c = rgb(style.color);
    const alpha = (c.length === 4 ? c[3] : 1) * opacity(el);
    const fg = [0, 1, 2].map((i) => c[i] * alpha + bg[i] * (1 - alpha));
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      out.push(`${el.tagName.toLowerCase()}.${el.className} ${ratio.toFixed(2)}: ${el.textContent.trim().slice(0, 40)}`);
    }
  }
  return out;
}
"""


def low_contrast(page: Any) -> list[str]:
    """The page's texts below 4.5:1 (3:1 for large text) against their background."""
    found: list[str] = page.evaluate(CONTRAST_JS)
    return found
