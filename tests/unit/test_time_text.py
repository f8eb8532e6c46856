"""Datetimes as text: the RFC 3339 form payloads carry (``isoformat``) and the
forms the store binds (``remembered_text``). Both remember what they
formatted, so each is checked against a fresh formatting, including for the
same instant given in another zone and past the bound where the memory
starts again."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.domain import isoformat
from app.store.tables import REMEMBERED_TEXTS, _sqlite_text, remembered_text

_aware = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=7))]),
)


def _fresh_iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@given(_aware)
def test_isoformat_is_utc_with_a_z_whatever_it_formatted_before(ts: datetime) -> None:
    assert isoformat(ts) == _fresh_iso(ts)
    assert isoformat(ts) == _fresh_iso(ts)  # the remembered text
    assert isoformat(ts.astimezone(UTC)) == _fresh_iso(ts)


def test_isoformat_of_one_instant_in_two_zones() -> None:
    utc = datetime(2026, 12, 7, 2, 0, 0, 123456, tzinfo=UTC)
    east = utc.astimezone(timezone(timedelta(hours=2)))
    assert isoformat(east) == isoformat(utc) == "2026-12-07T02:00:00.123456Z"
    assert isoformat(utc.replace(microsecond=0)) == "2026-12-07T02:00:00Z"


def test_remembered_text_starts_again_past_its_bound_and_stays_right() -> None:
    convert = remembered_text(_sqlite_text)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values = [start + timedelta(seconds=i, microseconds=i) for i in range(REMEMBERED_TEXTS * 3)]
    for _ in range(2):
        for value in values:
            assert convert(value) == value.isoformat(" ", "microseconds")[:26]
    east = values[5].astimezone(timezone(timedelta(hours=5)))
    assert convert(east) == convert(values[5])
    assert convert(None) is None


def test_remembered_text_refuses_a_naive_datetime_even_one_it_has_seen_as_aware() -> None:
    convert = remembered_text(_sqlite_text)
    aware = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    assert convert(aware) == "2026-12-07 02:00:00.000000"
    with pytest.raises(ValueError, match="naive"):
        convert(aware.replace(tzinfo=None))
