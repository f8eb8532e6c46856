"""Parsing webhook bodies: every malformed input is a 4xx, never an exception."""

import json
from datetime import UTC, datetime

import pytest

from app.core.domain import Source, Status
from app.ingest.wire import MAX_DEPTH, MAX_NUMBER_CHARS, PayloadError, parse_webhook
from tests.helpers import am_alert, am_webhook, body

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def parse(raw: bytes, source: Source = Source.ALERTMANAGER, max_alerts: int = 1000):  # type: ignore[no-untyped-def]
    return parse_webhook(raw, source, NOW, max_alerts)


def code(raw: bytes) -> int:
    with pytest.raises(PayloadError) as info:
        parse(raw)
    return info.value.status_code


GOOD = am_webhook([am_alert({"alertname": "A"})])


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # empty
        b"   \n",
        b'{"version": "4", "alerts": [',  # truncated
        body(GOOD) + b"garbage",  # trailing garbage
        b"\xef\xbb\xbf" + body(GOOD),  # BOM
        b"\xff\xfe{}",  # not UTF-8
        b"[" * 1_000 + b"]" * 1_000,  # deep nesting
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"version": "4", "alerts": [], "n": ' + b"9" * 4301 + b"}",  # huge int
        b'{"version": "4", "alerts": [], "n": NaN}',  # NaN
        b'{"version": "4", "alerts": [], "n": Infinity}',
        b'{"version": "4", "alerts": [], "n": -Infinity}',
        b'{"version": "4", "alerts": [], "n": 1e999999}',  # overflows to inf silently otherwise
        b'{"version": "4", "version": "4", "alerts": []}',  # duplicate keys
    ],
)
def test_malformed_json_is_400(raw: bytes) -> None:
    assert code(raw) == 400


def refusal(raw: bytes) -> str:
    with pytest.raises(PayloadError) as info:
        parse(raw)
    assert info.value.status_code == 400
    return info.value.message


@pytest.mark.parametrize(
    "number",
    [
        b"0." + b"1" * 1_000_000,  # a 10**6-digit fraction
        b"9" * 4301,  # past CPython's int digit limit
        b"1" * (MAX_NUMBER_CHARS + 1),  # far below it: still refused by our own cap
        b"-0." + b"0" * MAX_NUMBER_CHARS + b"1e5",
    ],
)
def test_numbers_longer_than_the_cap_are_400(number: bytes) -> None:
    raw = b'{"version": "4", "alerts": [], "n": ' + number + b"}"
    assert (
        refusal(raw)
        == f"malformed JSON: number too long: {len(number)} characters, over the limit of {MAX_NUMBER_CHARS}"
    )


def test_numbers_within_the_cap_are_accepted() -> None:
    # Grafana's sample values are floats of up to ~24 characters.
    fraction, integer = b"0." + b"3" * (MAX_NUMBER_CHARS - 2), b"7" * MAX_NUMBER_CHARS
    raw = (
        b'{"version": "4", "alerts": [], "truncatedAlerts": 3, "f": '
        + fraction
        + b', "i": '
        + integer
        + b"}"
    )
    assert parse(raw).webhook.truncated_alerts == 3


def nested(depth: int) -> bytes:
    """A valid webhook nesting ``depth`` containers deep, the envelope included."""
    inner = depth - 1  # objects around a list, in the field "x"
    x = b'{"a": ' * (inner - 1) + b"[0]" + b"}" * (inner - 1)
    return b'{"version": "4", "alerts": [], "x": ' + x + b"}"


def test_depth_cap_is_explicit_and_exact() -> None:
    # depth counts the envelope, then each object and list inside it.
    assert parse(nested(MAX_DEPTH)).webhook.alerts == []
    assert refusal(nested(MAX_DEPTH + 1)) == f"JSON nested too deeply: more than {MAX_DEPTH} levels"
    # Deep nesting are refused by the cap before json.loads runs, not by
    # the RecursionError backstop (whose message has no limit in it).
    for depth in (1_000, 5_000, 100_000):
        assert (
            refusal(b"[" * depth + b"]" * depth)
            == f"JSON nested too deeply: more than {MAX_DEPTH} levels"
        )
        assert refusal(nested(depth)) == f"JSON nested too deeply: more than {MAX_DEPTH} levels"


@pytest.mark.parametrize(
    "value",
    [
        "[" * 500,  # brackets inside strings are text, not nesting
        "{" * 500 + '\\"' + "[" * 500,  # an escaped quote does not end the string
        "\\" + "[" * 200,  # an escaped backslash before a bracket run
        '\\"',
    ],
)
def test_brackets_inside_strings_do_not_count_as_depth(value: str) -> None:
    alert = am_alert({"alertname": "A", "v": value})
    many = am_webhook(
        [alert] + [am_alert({"alertname": f"B{i}"}) for i in range(30)]
    )  # past the quick count
    assert parse(body(many)).webhook.alerts[0].labels["v"] == value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "(body): must be a JSON object"),
        ({"alerts": []}, "version: required"),
        ({"version": "5", "alerts": []}, "version: unsupported webhook version '5'"),
        ({"version": "4"}, "alerts: required"),
        ({"version": "4", "alerts": {}}, "alerts: must be a list"),
        ({"version": "4", "alerts": [], "groupKey": 5}, "groupKey: must be a string"),
        (
            {"version": "4", "alerts": [], "truncatedAlerts": -1},
            "truncatedAlerts: must be a non-negative integer",
        ),
        (
            {"version": "4", "alerts": [], "groupLabels": {"a": 1}},
            "groupLabels.a: must be a string",
        ),
    ],
)
def test_envelope_errors_are_422_naming_the_field(payload: object, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse(body(payload))
    assert info.value.status_code == 422
    assert info.value.message.startswith(message)


def test_too_many_alerts_is_413() -> None:
    with pytest.raises(PayloadError) as info:
        parse(body(am_webhook([am_alert({"alertname": str(i)}) for i in range(11)])), max_alerts=10)
    assert info.value.status_code == 413


@pytest.mark.parametrize(
    ("alert", "reason"),
    [
        ("not an object", "alerts[1]: must be an object"),
        (
            {"status": "firing", "labels": None, "startsAt": "2026-01-01T00:00:00Z"},
            "alerts[1].labels: required",
        ),
        ({"status": "firing", "startsAt": "2026-01-01T00:00:00Z"}, "alerts[1].labels: required"),
        (
            {"status": "firing", "labels": {"a": 1}, "startsAt": "2026-01-01T00:00:00Z"},
            "alerts[1].labels.a: must be a string",
        ),
        (
            {"status": "firing", "labels": {"a": None}, "startsAt": "2026-01-01T00:00:00Z"},
            "alerts[1].labels.a: must be a string",
        ),
        (
            {"status": "firing", "labels": {"a": {"b": "c"}}, "startsAt": "2026-01-01T00:00:00Z"},
            "alerts[1].labels.a: must be a string",
        ),
        (
            # The first value a string, a later one not: the whole map is checked.
            {
                "status": "firing",
                "labels": {"a": "b", "c": True},
                "startsAt": "2026-01-01T00:00:00Z",
            },
            "alerts[1].labels.c: must be a string",
        ),
        (
            {"status": "firing", "labels": {"a": "b", "": "c"}, "startsAt": "2026-01-01T00:00:00Z"},
            "alerts[1].labels: empty label name",
        ),
        (
            {"status": "FIRING", "labels": {"a": "b"}, "startsAt": "2026-01-01T00:00:00Z"},
            'alerts[1].status: must be "firing" or "resolved"',
        ),
        ({"status": "firing", "labels": {"a": "b"}}, "alerts[1].startsAt: required"),
        (
            {"status": "firing", "labels": {"a": "b"}, "startsAt": 12},
            "alerts[1].startsAt: must be an RFC 3339 timestamp string",
        ),
        (
            {"status": "firing", "labels": {"a": "b"}, "startsAt": "2026-13-01T00:00:00Z"},
            "alerts[1].startsAt: invalid RFC 3339",
        ),
        (
            {"status": "firing", "labels": {"a": "b"}, "startsAt": "2026-01-01T00:00:60Z"},
            "alerts[1].startsAt: invalid RFC 3339",
        ),
        (
            {
                "status": "firing",
                "labels": {"a": "b"},
                "annotations": [],
                "startsAt": "2026-01-01T00:00:00Z",
            },
            "alerts[1].annotations: must be an object of strings",
        ),
    ],
)
def test_one_bad_alert_is_rejected_alone(alert: object, reason: str) -> None:
    payload = am_webhook([am_alert({"alertname": "ok1"}), alert, am_alert({"alertname": "ok2"})])  # type: ignore[list-item]
    parsed = parse(body(payload))
    assert [a.labels["alertname"] for a in parsed.webhook.alerts] == ["ok1", "ok2"]
    assert len(parsed.rejected) == 1
    assert parsed.rejected[0].index == 1
    assert parsed.rejected[0].reason.startswith(reason)


def test_times() -> None:
    a = am_alert({"alertname": "A"})
    a["startsAt"] = "2026-11-21T19:16:43.073220808Z"  # 9 fractional digits, as Go writes them
    r = am_alert({"alertname": "B"}, status="resolved")
    r["startsAt"] = "2026-11-21T20:16:43+01:00"
    r["endsAt"] = "2026-11-21T19:20:00"  # naive: read as UTC
    wh = parse(body(am_webhook([a, r]))).webhook
    assert wh.alerts[0].starts_at == datetime(2026, 11, 21, 19, 16, 43, 73220, tzinfo=UTC)
    assert wh.alerts[0].ends_at is None  # Go's zero time means "not ended"
    assert wh.alerts[1].starts_at == datetime(2026, 11, 21, 19, 16, 43, tzinfo=UTC)
    assert wh.alerts[1].ends_at == datetime(2026, 11, 21, 19, 20, tzinfo=UTC)
    # No year bound short of datetime's own: the aim is a
    # skewed endsAt of 9999-12-31 accepted, and every datetime sum downstream
    # is taken from the clock's now (event times are clamped to it), which
    # tests/integration/test_ingest.py checks on both databases.
    far = am_alert({"alertname": "C"}, status="resolved")
    far["endsAt"] = "9999-12-31T23:59:59Z"
    assert parse(body(am_webhook([far]))).webhook.alerts[0].ends_at == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
        ("0001-01-02T00:00:00+14:00", datetime(1, 1, 1, tzinfo=UTC)),  # year 1: Go's zero time
        ("0002-01-01T00:00:00+14:00", datetime(1, 12, 31, 10, tzinfo=UTC)),
    ],
)
def test_far_times_in_range_are_kept(starts_at: str, expected: datetime) -> None:
    a = am_alert({"alertname": "A"}, status="resolved")
    a["startsAt"] = starts_at
    assert parse(body(am_webhook([a]))).webhook.alerts[0].starts_at == expected


@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-00:01"])
def test_times_past_year_9999_in_utc_are_the_alerts_error(field: str, value: str) -> None:
    bad = am_alert({"alertname": "Bad"}, status="resolved")
    bad[field] = value
    parsed = parse(body(am_webhook([am_alert({"alertname": "ok"}), bad])))
    assert [a.labels["alertname"] for a in parsed.webhook.alerts] == ["ok"]
    assert [(r.index, r.reason) for r in parsed.rejected] == [
        (1, f"alerts[1].{field}: timestamp {value!r} is out of range (after 9999-12-31 in UTC)")
    ]


def test_surrogates_and_nul_become_replacement_characters() -> None:
    raw = body(am_webhook([am_alert({"alertname": "A", "x": "PLACEHOLDER"})])).replace(
        b"PLACEHOLDER", b"a\\ud800b\\u0000c"
    )
    alert = parse(raw).webhook.alerts[0]
    assert alert.labels["x"] == "a\ufffdb\ufffdc"
    alert.labels["x"].encode("utf-8")  # storable and sendable everywhere
    # A valid escaped pair is kept intact.
    raw = body(am_webhook([am_alert({"alertname": "A", "x": "P"})])).replace(
        b'"P"', b'"\\ud83d\\ude00"'
    )
    assert parse(raw).webhook.alerts[0].labels["x"] == "😀"


def test_fingerprint_recomputed_and_mismatch_reported() -> None:
    # Label sets and fingerprints from Alertmanager's own test vectors, not
    # from app.core.fingerprint, so the expected values are independent of it.
    a = am_alert({"severity": "warning", "job": "foo"})
    a["fingerprint"] = "0000000000000000"
    b = am_alert({"foo": "bar"})
    del b["fingerprint"]  # older senders
    parsed = parse(body(am_webhook([a, b])))
    assert [(m.index, m.sent, m.computed) for m in parsed.mismatches] == [
        (0, "0000000000000000", "9266ef3da838ad95")
    ]
    assert [x.fingerprint for x in parsed.webhook.alerts] == [
        "9266ef3da838ad95",
        "3fff2c2d7595e046",
    ]


def test_unknown_fields_ignored_and_grafana_version_accepted() -> None:
    payload = am_webhook(
        [am_alert({"alertname": "A"}, valueString="x", silenceURL="y")],
        notification_reason="x",
        routeLabels={},
    )
    assert len(parse(body(payload)).webhook.alerts) == 1
    grafana = dict(payload, version="1", orgId=1, state="alerting", title="t", message="m")
    parsed = parse(body(grafana), Source.GRAFANA)
    assert parsed.webhook.alerts[0].status is Status.FIRING
    with pytest.raises(PayloadError):
        parse(body(grafana), Source.ALERTMANAGER)


def test_grafana_future_endsat_on_firing_is_not_an_end() -> None:
    a = am_alert({"alertname": "A"})
    a["endsAt"] = "2099-01-01T00:00:00Z"
    assert parse(body(am_webhook([a])), Source.GRAFANA).webhook.alerts[0].ends_at is None


def test_empty_alert_list_is_a_no_op() -> None:
    assert parse(body(am_webhook([]))).webhook.alerts == []


def test_real_fixture_status_counts() -> None:
    from tests.unit.test_fingerprint import FIXTURES

    for name, status in (
        ("alertmanager-0.25-firing.json", Status.FIRING),
        ("alertmanager-0.25-resolved.json", Status.RESOLVED),
    ):
        parsed = parse((FIXTURES / name).read_bytes())
        assert [a.status for a in parsed.webhook.alerts] == [status] * 3
        assert parsed.mismatches == []
        assert json.loads((FIXTURES / name).read_text())["groupKey"] == parsed.webhook.group_key


def test_a_big_webhook_leaves_the_memos_alone() -> None:
    # A storm of new alerts would only pay for the memos and flush the steady
    # state's entries; a small webhook uses them.
    from app.core import domain
    from app.core import fingerprint as module
    from app.ingest import wire

    many = [am_alert({"alertname": f"Big{i}"}) for i in range(wire._REMEMBER_UP_TO + 1)]
    raw = body(am_webhook(many))
    small = body(am_webhook([am_alert({"alertname": "Small"})]))
    domain._content_hashes.clear()  # after building: the helper fingerprints its alerts
    module._recent.clear()
    parsed = parse(raw, max_alerts=len(many))
    assert len(parsed.webhook.alerts) == len(many)
    assert module._recent == {} and domain._content_hashes == {}
    parse(small)
    assert len(module._recent) == 1 and len(domain._content_hashes) == 1
