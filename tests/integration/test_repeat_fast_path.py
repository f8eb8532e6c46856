"""The repeat fast path: duplicates and stale copies counted by one SQL statement.

Each case builds a stored alert through webhooks, then sends one more copy.
What the fast path answers and stores must be what the life cycle decides
(``app.core.dedup.decide``) — a duplicate, a stale copy, or a transition it
leaves to the full path — and a copy it confirms must not load the alert.
"""

from datetime import datetime, timedelta
from typing import Any

import pytest

from app.core.dedup import Position, Verdict, decide
from app.core.domain import Alert, Status, content_hash
from app.core.fingerprint import fingerprint
from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import LOG_CONFIG, T0, am_alert, am_webhook, sent_statements, table_rows
from tests.integration.test_ingest import post

LABELS = {"alertname": "FastPath", "severity": "warning"}
FP = fingerprint(LABELS)
NOW = T0 + timedelta(hours=2)
T1 = T0 + timedelta(hours=1)
FUTURE = NOW + timedelta(hours=3)  # beyond the default 5 minutes of allowed skew

# (name, webhooks that build the stored state, the copy sent last)
CASES: list[tuple[str, list[tuple[str, datetime]], tuple[str, datetime]]] = [
    ("repeat of a firing alert", [("firing", T0)], ("firing", T0)),
    ("repeat of a resolved alert", [("firing", T0), ("resolved", T0)], ("resolved", T0)),
    ("resolve of an older occurrence", [("firing", T0), ("firing", T1)], ("resolved", T0)),
    ("firing of an older occurrence", [("firing", T1)], ("firing", T0)),
    ("late firing of a resolved occurrence", [("firing", T0), ("resolved", T0)], ("firing", T0)),
    ("a real resolve", [("firing", T0)], ("resolved", T0)),
    ("a new occurrence", [("firing", T0), ("resolved", T0)], ("firing", T1)),
    # A skewed stored occurrence orders by arrival: an honest resolve of an
    # older startsAt supersedes it (not stale), which only the full path knows.
    ("older resolve after a skewed occurrence", [("firing", FUTURE)], ("resolved", T0)),
    # A skewed copy counts as arriving now: later than the stored T0.
    ("skewed copy after an honest occurrence", [("firing", T0)], ("firing", FUTURE)),
]


def _position(stored: dict[str, Any]) -> Position:
    # table_rows reads as the app does: aware UTC datetimes.
    return Position(Status(stored["status"]), stored["starts_at"], stored["skewed_at"])


@pytest.mark.parametrize(("name", "history", "last"), CASES, ids=[c[0] for c in CASES])
async def test_repeat_fast_path_decides_as_the_life_cycle(
    db_url: str, name: str, history: list[tuple[str, datetime]], last: tuple[str, datetime]
) -> None:
    clock = ManualClock(NOW)
    async with running_app(db_url, LOG_CONFIG, clock=clock) as (app, client):
        for status, starts in history:
            r = await post(client, am_webhook([am_alert(LABELS, status=status, starts_at=starts)]))
            assert r.status_code == 200, r.text
            clock.advance(60)
        (stored,) = table_rows(db_url, "alerts", "fingerprint")
        status, starts = last
        sent = am_alert(LABELS, status=status, starts_at=starts)
        incoming = Alert(
            fingerprint=FP,
            labels=LABELS,
            annotations=sent["annotations"],
            status=Status(status),
            starts_at=starts,
            ends_at=None,
            generator_url=sent["generatorURL"],
            content_hash=content_hash(sent["annotations"], sent["generatorURL"]),
        )
        expected = decide(_position(stored), incoming, clock.now()).verdict
        transitions_before = len(table_rows(db_url, "alert_transitions"))

        # Three copies in one webhook: the fast path counts all three.
        engine = app.state.services.db.write_engine
        with sent_statements(engine) as statements:
            r = await post(client, am_webhook([sent, sent, sent]))
        assert r.status_code == 200, r.text
        answer = r.json()

    (after,) = table_rows(db_url, "alerts", "fingerprint")
    loaded = [s for s, _ in statements if s.lstrip().upper().startswith("SELECT") and "alerts" in s]
    if expected is Verdict.DUPLICATE:
        assert (answer["duplicates"], answer["stale"], answer["transitions"]) == (3, 0, 0)
        assert after["duplicate_count"] == stored["duplicate_count"] + 3
        assert after["stale_count"] == stored["stale_count"]
    elif expected is Verdict.STALE:
        assert (answer["duplicates"], answer["stale"], answer["transitions"]) == (0, 3, 0)
        assert after["stale_count"] == stored["stale_count"] + 3
        assert after["duplicate_count"] == stored["duplicate_count"]
    else:
        assert expected is Verdict.TRANSITION
        assert answer["transitions"] >= 1
        assert len(table_rows(db_url, "alert_transitions")) > transitions_before
    if expected in (Verdict.DUPLICATE, Verdict.STALE):
        # Counted in SQL: the alert was never loaded, and nothing else moved.
        assert loaded == [], loaded
        assert len(table_rows(db_url, "alert_transitions")) == transitions_before
        assert (after["status"], after["starts_at"]) == (stored["status"], stored["starts_at"])
        assert after["last_seen"] != stored["last_seen"]
    else:
        assert loaded, "a transition takes the full path, which loads the alert"
