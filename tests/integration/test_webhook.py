"""The generic JSON webhook: its conformance case (the rest of its tests are in
test_delivery.py and test_readme.py's payload check)."""

from tests.conformance import CANARY_PATH, CANARY_TOKEN, Case
from tests.sinks import Reply, WebhookSink

# The shared conformance suite (test_notifier_conformance.py) runs this case.
CONFORMANCE = Case(
    WebhookSink,
    lambda url: {"url": f"{url}/hook/{CANARY_PATH}", "token": CANARY_TOKEN},
    Reply(200, "ok"),
)
