"""Runbook resolution order: annotation, first matching rule, default, none."""

import pytest

from app.config.compiled import compile_config
from app.config.model import parse_config

CONFIG = """
runbooks:
  default: "https://runbooks.example.com/{{ labels.alertname | lower }}"
  rules:
    - matchers: ['alertname=~"Disk.*"']
      url: "https://wiki.example.com/storage#{{ labels.alertname }}"
    - matchers: ['team="db"', 'severity="critical"']
      url: "https://wiki.example.com/db/{{ labels.alertname }}?inst={{ labels.instance | urlencode }}"
    - matchers: ['team="broken"']
      url: "javascript:alert(1)"
route: {receiver: r}
receivers: [{name: r}]
"""


@pytest.fixture(scope="module")
def runtime():  # type: ignore[no-untyped-def]
    return compile_config(parse_config(CONFIG, "t", {}))


@pytest.mark.parametrize(
    ("labels", "annotations", "url", "source"),
    [
        (
            {"alertname": "DiskFull"},
            {"runbook_url": "https://own.example/x"},
            "https://own.example/x",
            "annotation",
        ),
        (
            {"alertname": "DiskFull"},
            {},
            "https://wiki.example.com/storage#DiskFull",
            "runbooks.rules[0]",
        ),
        (
            {"alertname": "PGDown", "team": "db", "severity": "critical", "instance": "a b&c"},
            {},
            "https://wiki.example.com/db/PGDown?inst=a%20b%26c",
            "runbooks.rules[1]",
        ),
        (
            {"alertname": "PGDown", "team": "db", "severity": "warning"},
            {},
            "https://runbooks.example.com/pgdown",
            "runbooks.default",
        ),
        # A rule that renders a non-http URL is skipped, never returned.
        (
            {"alertname": "X", "team": "broken"},
            {},
            "https://runbooks.example.com/x",
            "runbooks.default",
        ),
        # A non-http annotation is ignored, and so is whitespace around it.
        (
            {"alertname": "Y"},
            {"runbook_url": "javascript:alert(1)"},
            "https://runbooks.example.com/y",
            "runbooks.default",
        ),
        (
            {"alertname": "Y"},
            {"runbook_url": "  https://own.example/y  "},
            "https://own.example/y",
            "annotation",
        ),
    ],
)
def test_resolution_table(runtime, labels, annotations, url, source) -> None:  # type: ignore[no-untyped-def]
    got = runtime.runbook(labels, annotations)
    assert (got.url, got.source) == (url, source)


def test_no_default_no_rule_gives_none() -> None:
    rt = compile_config(parse_config("route: {receiver: r}\nreceivers: [{name: r}]", "t", {}))
    got = rt.runbook({"alertname": "X"}, {})
    assert (got.url, got.source) == (None, "none")


def test_label_values_are_data_not_templates(runtime) -> None:  # type: ignore[no-untyped-def]
    got = runtime.runbook({"alertname": "{{ 7*7 }}"}, {})
    # Rendered literally (never 49), then made a valid URL.
    assert got.url == "https://runbooks.example.com/%7B%7B%207%2A7%20%7D%7D"


def test_spaces_and_unicode_in_labels_are_percent_encoded(runtime) -> None:  # type: ignore[no-untyped-def]
    got = runtime.runbook({"alertname": "Disk Full ü"}, {})
    assert got.url == "https://wiki.example.com/storage#Disk%20Full%20%C3%BC"
    assert (
        runtime.runbook({}, {"runbook_url": "https://x.example/a%20b"}).url
        == "https://x.example/a%20b"
    )


# ------------------------------------------------------------ hostile label values

HOSTILE = """
runbooks:
  default: "https://runbooks.example.com/alerts/{{ labels.alertname }}/{{ labels.instance }}"
  rules:
    - matchers: ['kind="query"']
      url: "https://wiki.example.com/search?q={{ labels.instance }}&team={{ labels.team }}#top"
    - matchers: ['kind="host"']
      url: "https://{{ labels.cluster }}.wiki.example.com/runbooks/{{ labels.alertname }}"
    - matchers: ['kind="fragment"']
      url: "https://wiki.example.com/page#{{ labels.instance }}"
route: {receiver: r}
receivers: [{name: r}]
"""

# value -> (as a path segment, as a query value)
VALUES = [
    ("/", "%2F", "%2F"),
    ("?", "%3F", "%3F"),
    ("#", "%23", "%23"),
    ("@evil.example/../../x", "%40evil.example%2F..%2F..%2Fx", "%40evil.example%2F..%2F..%2Fx"),
    ("..", None, ".."),  # a whole segment of dots: the rule is skipped
    ("%", "%25", "%25"),
    ("100%zz", "100%25zz", "100%25zz"),
    ("a%2Fb", "a%2Fb", "a%2Fb"),  # already an escape: kept, still one segment
    ("\\evil.example", "%5Cevil.example", "%5Cevil.example"),
    ("a\r\nLocation: x", "a%0D%0ALocation%3A%20x", "a%0D%0ALocation%3A%20x"),
    ("a b", "a%20b", "a%20b"),
    ("x&team=evil", "x%26team%3Devil", "x%26team%3Devil"),
    ("café☃", "caf%C3%A9%E2%98%83", "caf%C3%A9%E2%98%83"),
    ("evil.example/phish?", "evil.example%2Fphish%3F", "evil.example%2Fphish%3F"),
]


@pytest.fixture(scope="module")
def hostile():  # type: ignore[no-untyped-def]
    return compile_config(parse_config(HOSTILE, "t", {}))


@pytest.mark.parametrize(("value", "segment", "query"), VALUES)
def test_a_label_value_is_encoded_for_its_position_in_the_url(
    hostile, value, segment, query
) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    got = hostile.runbook({"alertname": "Down", "instance": value}, {})
    if segment is None:
        assert got.source == "none" and got.url is None  # the only candidate was refused
    else:
        assert got.url == f"https://runbooks.example.com/alerts/Down/{segment}"
        parts = urlsplit(got.url)
        assert (parts.scheme, parts.netloc) == ("https", "runbooks.example.com")
        assert parts.path.count("/") == 3 and not parts.query and not parts.fragment

    got = hostile.runbook(
        {"alertname": "Down", "instance": value, "team": "db", "kind": "query"}, {}
    )
    assert got.url == f"https://wiki.example.com/search?q={query}&team=db#top"
    parts = urlsplit(got.url)
    assert (
        parts.netloc == "wiki.example.com" and parts.path == "/search" and parts.fragment == "top"
    )
    assert parts.query.count("&") == 1 and parts.query.count("=") == 2

    got = hostile.runbook({"alertname": "Down", "instance": value, "kind": "fragment"}, {})
    assert urlsplit(got.url).netloc == "wiki.example.com" and urlsplit(got.url).path == "/page"


@pytest.mark.parametrize(
    "cluster",
    [
        "evil.example/phish?",
        "evil.example#",
        "a.b",
        "x@evil.example",
        "ev il",
        "é",
        "a\nb",
        "..",
        "%2F",
    ],
)
def test_a_value_in_the_host_cannot_change_the_host(hostile, cluster) -> None:  # type: ignore[no-untyped-def]
    got = hostile.runbook({"alertname": "Down", "cluster": cluster, "kind": "host"}, {})
    assert got.source == "runbooks.default"  # the host rule is skipped, the default stands
    assert got.url == "https://runbooks.example.com/alerts/Down/"


def test_a_plain_dns_label_in_the_host_is_kept(hostile) -> None:  # type: ignore[no-untyped-def]
    got = hostile.runbook({"alertname": "Down", "cluster": "prod-eu1", "kind": "host"}, {})
    assert (got.url, got.source) == (
        "https://prod-eu1.wiki.example.com/runbooks/Down",
        "runbooks.rules[1]",
    )
