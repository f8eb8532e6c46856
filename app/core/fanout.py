"""From a notice to outbox rows: one per integration of every routed receiver.

Each row carries a self-contained payload (the alert as it was when the
notice was decided), so retries and replays send the same content whatever
the alert did since. Keys are deterministic:

* ``idempotency_key`` = sha256(fingerprint, notice identity, integration):
  the same notice can never be queued twice for one destination;
* ``ordering_key`` = sha256(fingerprint, integration): rows sharing it are
  delivered strictly in id order, so a resolve never overtakes its trigger.
"""

import hashlib
from datetime import datetime

from app.config.compiled import CompiledConfig, Integration
from app.core.domain import AlertRecord, NoticeKind, NotificationRow, isoformat
from app.core.escalation import escalation_key
from app.core.lifecycle import RouteOptions
from app.core.notices import Notice
from app.core.payload import EscalationPayload, NoticePayload
from app.core.routing import RouteResult


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def ordering_key(fingerprint: str, integration_key: str) -> str:
    return _sha(fingerprint, integration_key)[:32]


def notice_payload(
    rec: AlertRecord,
    notice: Notice,
    now: datetime,
    *,
    external_url: str = "",
    am_receiver: str = "",
    group_firing: int | None = None,
) -> NoticePayload:
    """The message model's input, stored with the row (JSON-safe)."""
    payload: NoticePayload = {
        "kind": notice.kind.value,
        "status": notice.status.value,
        "fingerprint": rec.fingerprint,
        "alertname": rec.alertname,
        "labels": rec.labels,
        "annotations": rec.annotations,
        "severity": rec.severity,
        "starts_at": isoformat(notice.occurrence),
        "ends_at": isoformat(rec.ends_at) if rec.ends_at else None,
        "generator_url": rec.generator_url,
        "runbook_url": rec.runbook_url,
        "dedup_key": notice.dedup_key,
        "group_key": rec.group_key,
        "external_url": external_url,
        "am_receiver": am_receiver,
        "source": rec.source,
        "group_firing": group_firing,
        "duplicates": rec.duplicate_count,
        "flap": {
            "score": round(notice.flap_score, 3),
            "flapping": notice.kind is NoticeKind.FLAPPING
            or (rec.flapping and notice.kind is not NoticeKind.STABLE),
            "transitions": notice.transitions,
        },
        "decided_at": isoformat(now),
    }
    if notice.escalation is not None:
        e = notice.escalation
        payload["escalation"] = {
            "receiver": e.receiver,
            "step": e.step,
            "after_s": e.after_s,
            "firing_for_s": round(e.firing_for_s, 3),
            "notified": list(e.notified),
            "flapping": e.flapping,
        }
    return payload


def would_send(kind: NoticeKind, integration: Integration) -> str | None:
    """None when ``integration`` takes a notice of ``kind``, else why not
    (shared by the outbox writer and ``routes test --render``)."""
    if kind is NoticeKind.RESOLVED and not integration.send_resolved:
        return "send_resolved is false"
    return None


def notification_rows(
    rec: AlertRecord,
    notice: Notice,
    payload: NoticePayload,
    routed: RouteResult[RouteOptions],
    runtime: CompiledConfig,
    now: datetime,
) -> list[NotificationRow]:
    # An escalation goes to its step's receiver only; everything else to the
    # receivers the routes reach.
    receivers = (notice.escalation.receiver,) if notice.escalation is not None else routed.receivers
    rows = _rows(rec, notice, notice.identity, notice.dedup_key, payload, receivers, runtime, now)
    for receiver in notice.escalated_to:
        # The resolve for a receiver escalated to: under the key its trigger
        # had, and an identity of its own (it may also be a routed receiver).
        key = escalation_key(notice.dedup_key, receiver)
        told: EscalationPayload = {"receiver": receiver}
        own: NoticePayload = {**payload, "dedup_key": key, "escalation": told}
        identity = f"{notice.identity}|escalated"
        rows += _rows(rec, notice, identity, key, own, (receiver,), runtime, now)
    return rows


def _rows(
    rec: AlertRecord,
    notice: Notice,
    identity: str,
    dedup_key: str,
    payload: NoticePayload,
    receivers: tuple[str, ...],
    runtime: CompiledConfig,
    now: datetime,
) -> list[NotificationRow]:
    rows: list[NotificationRow] = []
    for receiver in receivers:
        for integration in runtime.receivers.get(receiver, ()):
            if would_send(notice.kind, integration) is not None:
                continue
            key = integration.key
            rows.append(
                NotificationRow(
                    idempotency_key=_sha(rec.fingerprint, identity, key),
                    fingerprint=rec.fingerprint,
                    ordering_key=ordering_key(rec.fingerprint, key),
                    receiver=integration.receiver,
                    integration=integration.name,
                    integration_index=integration.index,
                    kind=notice.kind,
                    dedup_key=dedup_key,
                    payload=payload,
                    created_at=now,
                )
            )
    return rows
