"""Secrets that a command may go without.

``routes test`` and ``runbook`` only route: like amtool, they must work on
a config whose secrets live elsewhere (a Kubernetes Secret, a CI variable).
Inside :func:`secrets_optional`, an unset ``${VAR}`` or an unreadable
``*_file`` secret becomes :data:`PLACEHOLDER` and is listed, instead of
failing the load. ``serve`` and ``worker`` never load this way.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Valid wherever a secret may stand (a URL check or a plain token), and
# obviously not a real destination if it were ever shown.
PLACEHOLDER = "https://unresolved.invalid/"

_found: ContextVar[list[str] | None] = ContextVar("unresolved_secrets", default=None)


@contextmanager
def secrets_optional() -> Iterator[list[str]]:
    """Collect unresolved secrets instead of failing on them."""
    found: list[str] = []
    token = _found.set(found)
    try:
        yield found
    finally:
        _found.reset(token)


def note(what: str) -> bool:
    """Record an unresolved secret; False when secrets are required here."""
    found = _found.get()
    if found is None:
        return False
    if what not in found:
        found.append(what)
    return True
