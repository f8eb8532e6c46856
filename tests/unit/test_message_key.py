"""Which chat message a grouping: alert row belongs to."""

from datetime import UTC, datetime

from app.core.domain import alert_message_key
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
