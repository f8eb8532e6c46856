"""Which chat message a grouping: alert row belongs to."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from app.core.domain import alert_message_key, incident_stamp
from app.core.notices import incident_key

FP = "3fff2c2d7595e046"


def test_one_message_per_occurrence() -> None:
    occ = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    assert alert_message_key(FP, occ) == f"a:{FP}:2026-01-02T03:04:05.600000Z"
    later = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
    assert alert_message_key(FP, later) != alert_message_key(FP, occ)


def test_a_notice_of_an_open_incident_lands_on_the_message_that_opened_it() -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    during_flap = datetime(2026, 1, 2, 3, 30, 0, tzinfo=UTC)
    key = incident_key(FP, first)
    assert alert_message_key(FP, during_flap, key) == alert_message_key(FP, first)
    # A key of another form (e.g. a group's dedup key) does not move it.
    assert alert_message_key(FP, during_flap, "abc") == alert_message_key(FP, during_flap)
    assert len(alert_message_key(FP, first, key)) <= 128


def _strptime_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_incident_stamps_read_back_as_the_occurrence(occ: datetime) -> None:
    # (Before the year 1000 strftime writes fewer digits and strptime misreads
    # them; incident_stamp reads those as strptime does: the next test.)
    stamp = occ.strftime("%Y%m%dT%H%M%S.%fZ")
    assert incident_stamp(stamp) == occ == _strptime_stamp(stamp)


@given(
    st.one_of(
        st.text(alphabet="0123456789T.Z-x", min_size=20, max_size=26),
        st.text(max_size=30),
        st.from_regex(r"\A[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\Z"),
        st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H%M%S.%fZ")),
    )
)
def test_incident_stamp_reads_what_strptime_reads(text: str) -> None:
    # The sliced fast path decides every string as strptime does (or better:
    # nothing it accepts is refused by strptime, and it refuses what strptime refuses).
    assert incident_stamp(text) == _strptime_stamp(text)


def test_out_of_range_stamps_are_no_stamp() -> None:
    assert incident_stamp("20261340T250000.000000Z") is None
    assert incident_stamp("00000101T000000.000000Z") is None
