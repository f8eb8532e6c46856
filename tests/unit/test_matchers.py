"""Alertmanager matcher syntax and semantics, as a table."""

import pytest

from app.core.matchers import MatcherError, MatchType, parse_matcher, parse_matchers

LABELS = {"alertname": "DiskFull", "severity": "critical", "env": "prod", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity="critical"', True),
        ("severity=critical", True),
        ('severity!="critical"', False),
        ('severity!="warning"', True),
        ('severity=~"crit.*"', True),
        ('severity=~"crit"', False),  # anchored: must match the whole value
        ('severity=~"rit"', False),
        ('severity=~"critical|warning"', True),
        ('severity!~"crit.*"', False),
        ('severity!~"warn.*"', True),
        ('team=""', True),  # a missing label matches the empty string
        ('team!=""', False),
        ('team=~".*"', True),
        ('team=~".+"', False),
        ('empty=""', True),
        ('alertname=~"Disk.*|Filesystem.*"', True),
        ('env=~"prod\\n"', False),  # no "$ before a final newline" quirk
        ('  env = "prod"  ', True),
        ('alertname="Disk\\"Full"', False),
    ],
)
def test_match_table(text: str, expected: bool) -> None:
    assert parse_matcher(text).matches(LABELS) is expected


def test_anchoring_not_fooled_by_trailing_newline_value() -> None:
    m = parse_matcher('env=~"prod"')
    assert m.matches({"env": "prod"})
    assert not m.matches({"env": "prod\n"})


@pytest.mark.parametrize(
    ("text", "name", "type_", "value"),
    [
        ('a="b"', "a", MatchType.EQUAL, "b"),
        ("a!=b", "a", MatchType.NOT_EQUAL, "b"),
        ('a=~"x.*"', "a", MatchType.REGEX, "x.*"),
        ('a!~"x"', "a", MatchType.NOT_REGEX, "x"),
        ('a="with, comma"', "a", MatchType.EQUAL, "with, comma"),
        ('a="esc\\"aped\\\\"', "a", MatchType.EQUAL, 'esc"aped\\'),
        ('"utf8 🙂"="v"', "utf8 🙂", MatchType.EQUAL, "v"),
    ],
)
def test_parse(text: str, name: str, type_: MatchType, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.type, m.value) == (name, type_, value)


def test_brace_list() -> None:
    ms = parse_matchers('{severity="critical", env=~"prod|stage", team!="db"}')
    assert [str(m) for m in ms] == ['severity="critical"', 'env=~"prod|stage"', 'team!="db"']


@pytest.mark.parametrize(
    "text",
    [
        "",
        "severity",
        'severity=="x"',
        'sev-erity="x"',
        'a=~"(unclosed"',
        'a="unterminated',
        '{a="b"',
        'a=b"c',
    ],
)
def test_errors(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matchers(text)
