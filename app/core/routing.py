"""The route tree: which receivers an alert's labels reach.

Semantics are Alertmanager's ``dispatch.Route.Match``: a route matches when
its matchers do; its children are tried depth-first in order, the first
matching child ends the search unless it has ``continue: true``; a route none
of whose children match is itself the match. The root route has no matchers
and its receiver is the default.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.core.matchers import Matcher, matches_all

# Per-route options (flapping, renotify) are inherited by child routes; the
# tree carries them without knowing their type.
OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Route(Generic[OptionsT]):
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    routes: tuple["Route[OptionsT]", ...] = ()
    options: OptionsT | None = None
    path: str = "route"

    def match(self, labels: Mapping[str, str]) -> list["Route[OptionsT]"]:
        """Return the matching leaf routes in Alertmanager order ([] if none)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route[OptionsT]] = []
        for child in self.routes:
            child_matches = child.match(labels)
            found.extend(child_matches)
            if child_matches and not child.continue_:
                break
        return found or [self]


@dataclass(frozen=True)
class RouteResult(Generic[OptionsT]):
    routes: tuple[Route[OptionsT], ...]
    receivers: tuple[str, ...] = field(default=())

    @property
    def options(self) -> OptionsT | None:
        """Options of the first matching route: an alert has one flap state."""
        return self.routes[0].options if self.routes else None


def route(tree: Route[OptionsT], labels: Mapping[str, str]) -> RouteResult[OptionsT]:
    """Match ``labels`` against ``tree``; receivers are de-duplicated in order.

    Two routes that reach the same receiver would deliver the same
    notification twice to the same destinations, so it is kept once.
    """
    matched = tree.match(labels)
    seen: dict[str, None] = {}
    for r in matched:
        seen.setdefault(r.receiver, None)
    return RouteResult(tuple(matched), tuple(seen))
