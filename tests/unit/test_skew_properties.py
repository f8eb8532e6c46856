"""Clock skew as a property: whatever mixture of skewed and honest events an
alert receives, its last honest event decides its state, and PagerDuty holds
an incident open exactly when that event is a firing.

Runs the real ingest planner (``plan_batch``) over the stored record it
returns, so the skew bookkeeping on the record is what is under test.
"""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.compiled import compile_config
from app.config.model import parse_config
from app.core.domain import Alert, AlertRecord, NoticeKind, Source, Status, Webhook
from app.ingest.service import plan_batch
from app.ingest.wire import ParsedWebhook

F, R = Status.FIRING, Status.RESOLVED
T0 = datetime(2026, 6, 1, tzinfo=UTC)
FP = "00000000000000aa"
RUNTIME = compile_config(
    parse_config(
        """
flapping: {enabled: false}
route: {receiver: page}
receivers:
  - name: page
    pagerduty_configs: [{routing_key: k}]
""",
        "skew.yml",
        {},
    )
)
# Far enough ahead to be skewed at any point of a history (histories last < 2 days).
SKEWS = [timedelta(days=3), timedelta(days=400), datetime(9999, 1, 1, tzinfo=UTC) - T0]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[Status, datetime, datetime | None, datetime, bool]]:
    """(status, startsAt, endsAt, received at, honest?) in arrival order.

    The honest events are a real life of the alert (occurrences one after
    another, each firing then maybe resolved, repeats allowed); skewed events
    of random status and far-future timestamps are mixed in anywhere.
    """
    out = []
    now = T0
    start = T0
    for _ in range(draw(st.integers(1, 6))):
        phases = [F] * draw(st.integers(0, 2)) + [R] * draw(st.integers(0, 2)) or [F]
        for status in phases:
            for _ in range(draw(st.integers(0, 2))):  # skewed noise before this event
                now += timedelta(seconds=draw(st.integers(1, 300)))
                far = now + draw(st.sampled_from(SKEWS))
                bad = draw(st.sampled_from([F, R]))
                out.append((bad, far, far if bad is R else None, now, False))
            now += timedelta(seconds=draw(st.integers(1, 300)))
            ends = now - timedelta(seconds=1) if status is R else None
            out.append((status, start, ends, now, True))
        start = now + timedelta(seconds=draw(st.integers(1, 600)))
        now = start
    for _ in range(draw(st.integers(0, 3))):  # skewed noise after the last honest event
        now += timedelta(seconds=draw(st.integers(1, 300)))
        far = now + draw(st.sampled_from(SKEWS))
        out.append((draw(st.sampled_from([F, R])), far, None, now, False))
    return out


def one(status: Status, starts: datetime, ends: datetime | None, now: datetime) -> ParsedWebhook:
    alert = Alert(FP, {"alertname": "Skew"}, {}, status, starts, ends)
    return ParsedWebhook(Webhook(Source.ALERTMANAGER, [alert], now), [], [])


@settings(max_examples=400, deadline=None, derandomize=True)
@given(history=histories())
def test_the_last_honest_event_decides_state_and_pagerduty(
    history: list[tuple[Status, datetime, datetime | None, datetime, bool]],
) -> None:
    stored: dict[str, AlertRecord] = {}
    incidents_open: set[str] = set()
    last_honest: Status | None = None
    for status, starts, ends, now, honest in history:
        changes, _ = plan_batch([one(status, starts, ends, now)], stored, RUNTIME, now)
        for rec in changes.new + changes.changed:
            stored[rec.fingerprint] = rec
        for row in changes.notifications:  # PagerDuty's dedup rules, in order
            if row.kind is NoticeKind.RESOLVED:
                incidents_open.discard(row.dedup_key)
            else:
                incidents_open.add(row.dedup_key)
        if honest:
            last_honest = status
            rec = stored[FP]
            assert rec.status is status, (status, rec.status, rec.starts_at)
            assert bool(incidents_open) is (status is F), incidents_open
            assert len(incidents_open) <= 1
    assert last_honest is not None
