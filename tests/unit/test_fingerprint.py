"""Fingerprint vectors from Alertmanager's own tests and the real 0.25 payloads."""

import json
from pathlib import Path

import pytest

from app.core.fingerprint import fingerprint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, "cbf29ce484222325"),
        ({"name": "garland, briggs", "fear": "love is not enough"}, "507a62d79ee76c9a"),
        ({"severity": "warning", "job": "foo"}, "9266ef3da838ad95"),
        ({"severity": "critical", "job": "foo"}, "3b15fd163d36582e"),
        ({"severity": "critical", "job": "bar"}, "c7e68cb08e3e67f9"),
        ({"foo": "bar"}, "3fff2c2d7595e046"),
        ({"alertname": "Test"}, "e46aaa9fcf75dd34"),
    ],
)
def test_vectors(labels: dict[str, str], expected: str) -> None:
    assert fingerprint(labels) == expected


def test_decimal_vector_matches_hex() -> None:
    value = fingerprint({"name": "garland, briggs", "fear": "love is not enough"})
    assert int(value, 16) == 5799056148416392346


def test_label_order_does_not_matter() -> None:
    a = {"a": "1", "b": "2", "c": "3"}
    assert fingerprint(a) == fingerprint(dict(reversed(list(a.items()))))


def test_value_and_name_boundaries_are_separated() -> None:
    # Without the 0xFF separator these two would hash the same bytes.
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_utf8_names_sort_bytewise() -> None:
    # "é" (U+00E9) sorts after "z" both as code points and as UTF-8 bytes.
    assert fingerprint({"é": "1", "z": "2"}) == fingerprint({"z": "2", "é": "1"})
    assert len(fingerprint({"foo🙂": "bar"})) == 16


@pytest.mark.parametrize(
    "name", ["alertmanager-0.25-firing.json", "alertmanager-0.25-resolved.json"]
)
def test_real_alertmanager_payloads(name: str) -> None:
    payload = json.loads((FIXTURES / name).read_text())
    for alert in payload["alerts"]:
        assert fingerprint(alert["labels"]) == alert["fingerprint"]


def test_a_repeat_in_another_order_and_past_the_memo_size_agree() -> None:
    from app.core import fingerprint as module

    labels = {"alertname": "Test", "job": "foo", "severity": "critical"}
    first = fingerprint(labels)
    assert fingerprint(dict(reversed(list(labels.items())))) == first
    for i in range(module._RECENT_KEPT + 10):
        fingerprint({"alertname": "Fill", "i": str(i)})
    assert len(module._recent) <= module._RECENT_KEPT
    assert fingerprint(labels) == first
    assert fingerprint({"alertname": "Test"}) == "e46aaa9fcf75dd34"


def test_without_the_memo_the_same_answer_and_the_memo_untouched() -> None:
    from app.core import fingerprint as module

    labels = {"alertname": "NotRemembered", "job": "x"}
    module._recent.clear()
    assert fingerprint(labels, remember=False) == fingerprint(labels)
    module._recent.clear()
    fingerprint(labels, remember=False)
    assert module._recent == {}
