"""What every HTTP integration's test file gives the shared conformance suite.

Each ``tests/integration/test_<name>.py`` of an HTTP integration in the
registry defines ``CONFORMANCE = Case(...)``: the sink that stands in for
the service, the integration's config pointing at it (with the canary
secrets below, which must never show up in an error or a log line), the
reply that means success, and the failure replies peculiar to the service.
``tests/integration/test_notifier_conformance.py`` finds them through the
registry, so a new integration cannot be left out of the suite.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.sinks import Reply, Sink

CANARY_KEY = "CANARYKEY0123456789abcdef0123456"
CANARY_PATH = "CANARYPATH-T000-B000-XXXXXXXX"
CANARY_TOKEN = "CANARYTOKEN-s3cr3t"
CANARIES = (CANARY_KEY, CANARY_PATH, CANARY_TOKEN)


@dataclass
class Operation:
    """One more request an integration makes in another mode: posting through
    an API that answers with the message's reference, editing that message, or
    replying in its thread. The shared table runs over each of them too."""

    name: str  # "post", "edit" or "reply"
    sink: Callable[[], Sink]  # a fake of the API that answers as the service
    config: Callable[[str], dict[str, Any]]
    ref: dict[str, str] | None = None  # the message edited or replied to, for "edit"/"reply"
    extra_dead: list[Reply] = field(default_factory=list)
    extra_retry: list[Reply] = field(default_factory=list)


@dataclass
class Case:
    sink: Callable[[], Sink]
    config: Callable[[str], dict[str, Any]]
    success: Reply
    # Failure replies the integration's API can give beyond the generic table.
    extra_dead: list[Reply] = field(default_factory=list)
    extra_retry: list[Reply] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
