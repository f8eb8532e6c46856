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
    assert got.url == "https://runbooks.example.com/%7B%7B%207*7%20%7D%7D"


def test_spaces_and_unicode_in_labels_are_percent_encoded(runtime) -> None:  # type: ignore[no-untyped-def]
    got = runtime.runbook({"alertname": "Disk Full ü"}, {})
    assert got.url == "https://wiki.example.com/storage#Disk%20Full%20%C3%BC"
    assert (
        runtime.runbook({}, {"runbook_url": "https://x.example/a%20b"}).url
        == "https://x.example/a%20b"
    )
