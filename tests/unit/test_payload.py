"""The notice payload that crosses the outbox is one typed structure."""

from datetime import UTC, datetime

from app.core.domain import AlertRecord, NoticeKind, Status
from app.core.fanout import notice_payload
from app.core.message import build_message
from app.core.notices import Notice, incident_key
from app.core.payload import FlapPayload, NoticePayload

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record() -> AlertRecord:
    return AlertRecord(
        fingerprint="00000000000000aa",
        labels={"alertname": "Down", "severity": "critical"},
        annotations={"summary": "down"},
        status=Status.FIRING,
        starts_at=T0,
        ends_at=None,
        generator_url="http://prometheus/graph",
        source="alertmanager",
        group_key="{}:{}",
        first_seen=T0,
        last_seen=T0,
        last_changed=T0,
    )


def test_the_writer_writes_exactly_the_typed_keys() -> None:
    notice = Notice(NoticeKind.FIRING, Status.FIRING, T0, incident_key("00000000000000aa", T0), "x")
    payload = notice_payload(record(), notice, T0, external_url="http://am", group_firing=2)
    # Every key but the per-destination ones (the ack link is added per
    # receiver) and those of escalation notices.
    assert set(payload) == set(NoticePayload.__required_keys__)
    assert NoticePayload.__optional_keys__ == {"ack_url", "escalation", "group"}
    assert set(payload["flap"]) == set(FlapPayload.__annotations__)
    message = build_message(
        payload, notification_id=1, idempotency_key="k", receiver="r", attempt=1
    )
    assert (message.alertname, message.severity, message.group_firing) == ("Down", "critical", 2)
    assert message.dedup_key == payload["dedup_key"]


def test_an_escalation_payload_says_who_was_told_and_how_long() -> None:
    from app.core.escalation import EscalationInfo
    from app.core.message import escalation_line

    info = EscalationInfo(
        step=0,
        receiver="second",
        after_s=900,
        firing_for_s=905.5,
        notified=("page",),
        flapping=False,
    )
    key = incident_key("00000000000000aa", T0) + "/escalated/second"
    notice = Notice(NoticeKind.ESCALATION, Status.FIRING, T0, key, "e", escalation=info)
    payload = notice_payload(record(), notice, T0)
    assert payload["escalation"] == {
        "receiver": "second",
        "step": 0,
        "after_s": 900,
        "firing_for_s": 905.5,
        "notified": ["page"],
        "flapping": False,
    }
    message = build_message(
        payload, notification_id=1, idempotency_key="k", receiver="second", attempt=1
    )
    assert message.title == "[ESCALATED] Down (critical): down"
    assert escalation_line(message) == ("Escalated: firing for 15m 5s, notified: page")
    assert message.text.startswith(escalation_line(message))
