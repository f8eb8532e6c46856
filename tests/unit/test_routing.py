"""Route tree semantics (Alertmanager's dispatch.Route.Match) as tables."""

import pytest

from app.core.matchers import parse_matchers
from app.core.routing import Route, route


def r(
    receiver: str, matchers: str = "", cont: bool = False, routes: tuple[Route[None], ...] = ()
) -> Route[None]:
    return Route(receiver, tuple(parse_matchers(matchers)) if matchers else (), cont, routes)


TREE = r(
    "default",
    routes=(
        r("watchdog", 'alertname="Watchdog"'),
        r("page", 'severity="critical"', cont=True),
        r(
            "team-db",
            'team="db"',
            routes=(
                r("db-critical", 'severity="critical"'),
                r("db-warning", 'severity="warning"'),
            ),
        ),
        r("chat", 'severity=~"critical|warning"'),
    ),
)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "X"}, ["default"]),  # nothing matches: the root's receiver
        ({"alertname": "Watchdog", "severity": "critical"}, ["watchdog"]),  # first match stops
        ({"alertname": "X", "severity": "critical"}, ["page", "chat"]),  # continue goes on
        ({"alertname": "X", "severity": "warning"}, ["chat"]),
        ({"team": "db", "severity": "critical"}, ["page", "db-critical"]),  # nested, after continue
        ({"team": "db", "severity": "warning"}, ["db-warning"]),
        ({"team": "db", "severity": "info"}, ["team-db"]),  # parent matches, no child: the parent
        ({"severity": "info"}, ["default"]),
    ],
)
def test_route_table(labels: dict[str, str], expected: list[str]) -> None:
    assert list(route(TREE, labels).receivers) == expected


def test_receivers_deduplicated_in_order() -> None:
    tree = r("d", routes=(r("x", 'a="1"', cont=True), r("y", 'b="1"', cont=True), r("x", 'c="1"')))
    assert route(tree, {"a": "1", "b": "1", "c": "1"}).receivers == ("x", "y")
    assert [m.receiver for m in route(tree, {"a": "1", "b": "1", "c": "1"}).routes] == [
        "x",
        "y",
        "x",
    ]


def test_continue_on_last_matching_child_falls_back_to_nothing_else() -> None:
    tree = r("d", routes=(r("only", 'a="1"', cont=True),))
    assert route(tree, {"a": "1"}).receivers == ("only",)
    assert route(tree, {"a": "2"}).receivers == ("d",)
