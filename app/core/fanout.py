"""From a notice to outbox rows: one per integration of every routed receiver.

Each row carries a self-contained payload (the alert as it was when the
notice was decided), so retries and replays send the same content whatever
the alert did since. Keys are deterministic:

* ``idempotency_key`` = sha256(fingerprint, notice identity, integration):
  the same notice can never be queued twice for one destination;
* ``ordering_key`` = sha256(fingerprint, integration): rows sharing it are
  delivered strictly in id order, so a resolve never overtakes its trigger.

Integrations with ``grouping: group`` get no row here for an alert that
belongs to an Alertmanager group: :mod:`app.core.grouping` writes one row
for the group's change instead.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from app.config.compiled import CompiledConfig, Integration
from app.core.ack import is_acked
from app.core.acklink import LinkClaims, Signer, ack_url, signer_for
from app.core.domain import (
    AlertRecord,
    NoticeKind,
    NotificationRow,
    alert_message_key,
    isoformat,
)
from app.core.escalation import escalation_key
from app.core.lifecycle import RouteOptions
from app.core.notices import Notice
from app.core.payload import AckPayload, EscalationPayload, NoticePayload
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
        "ack": ack_payload(rec, now),
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


def ack_payload(rec: AlertRecord, now: datetime) -> AckPayload | None:
    """The ack in force on ``rec`` at ``now``, as notifications carry it."""
    if not is_acked(rec, now) or rec.ack_at is None:
        return None
    return {
        "by": rec.ack_by or "",
        "via": rec.ack_via or "",
        "at": isoformat(rec.ack_at),
        "comment": rec.ack_comment,
        "until": isoformat(rec.ack_until) if rec.ack_until else None,
    }


_ACK_KINDS = frozenset({NoticeKind.ACK, NoticeKind.UNACK})
# Integrations that are incident state machines with an acknowledge of their own.
ACKNOWLEDGING = frozenset({"pagerduty", "opsgenie"})
# Integrations people read: their notifications carry the acknowledge link.
READ_BY_PEOPLE = frozenset({"slack", "msteams", "googlechat", "discord", "mattermost", "email"})
# Notices about an occurrence that can still be acknowledged (a link in them works).
_ACKABLE_KINDS = frozenset(
    {
        NoticeKind.FIRING,
        NoticeKind.REMINDER,
        NoticeKind.FLAPPING,
        NoticeKind.STABLE,
        NoticeKind.ESCALATION,
    }
)


def would_send(kind: NoticeKind, integration: Integration) -> str | None:
    """None when ``integration`` takes a notice of ``kind``, else why not
    (shared by the outbox writer and ``routes test --render``)."""
    if kind is NoticeKind.RESOLVED and not integration.send_resolved:
        return "send_resolved is false"
    if kind in (NoticeKind.ACK, NoticeKind.UNACK):
        # An ack changes an incident's state (PagerDuty, Opsgenie) or the
        # message that announced it (update_message); a new chat message
        # saying so would only be noise.
        if kind is NoticeKind.ACK and integration.name in ACKNOWLEDGING:
            return None
        if integration.name in ACKNOWLEDGING:
            return f"{integration.name} has no un-acknowledge"
        if getattr(integration.config, "update_message", False):
            return None
        return "an ack only edits a kept message (update_message is off)"
    return None


class AckLinks:
    """The acknowledge links of one notice, one per receiver (made once each).

    ``None`` from :meth:`for_notice` when links are off or the notice is not
    about an occurrence that can be acked (a resolve)."""

    def __init__(self, signer: Signer, base: str, claims: LinkClaims) -> None:
        self._signer = signer
        self._base = base
        self._claims = claims
        self._made: dict[str, str] = {}

    @classmethod
    def for_notice(
        cls, payload: NoticePayload, runtime: CompiledConfig, now: datetime
    ) -> "AckLinks | None":
        links = runtime.config.ack_links()
        auth = runtime.config.auth
        if (
            links is None
            or auth is None
            or NoticeKind(payload["kind"]) not in _ACKABLE_KINDS
            or (payload["status"] != "firing" and not payload["flap"]["flapping"])
        ):
            return None
        base, secret = links
        claims = LinkClaims(
            fingerprint=payload["fingerprint"],
            occurrence=_parse(payload["starts_at"]),
            receiver="",
            expires=now + auth.link_ttl,
        )
        return cls(signer_for(secret), base, claims)

    def url(self, receiver: str) -> str:
        found = self._made.get(receiver)
        if found is None:
            claims = replace(self._claims, receiver=receiver)
            found = self._made[receiver] = ack_url(self._base, self._signer.token(claims))
        return found


def with_ack_link(
    payload: NoticePayload, integration: Integration, links: "AckLinks | None"
) -> NoticePayload:
    """``payload`` with the acknowledge link for ``integration``'s receiver, for
    the integrations people read."""
    if links is None or integration.name not in READ_BY_PEOPLE:
        return payload
    return {**payload, "ack_url": links.url(integration.receiver)}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


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
    integrations = [
        integration
        for receiver in receivers
        for integration in runtime.receivers.get(receiver, ())
        # A grouping integration gets one row for the group's change instead
        # (app.core.grouping), unless the alert names no group.
        if not (integration.grouped and rec.group_key and notice.escalation is None)
    ]
    rows = rows_for(rec, notice, payload, integrations, runtime, now)
    return rows + escalated_rows(rec, notice, payload, runtime, now)


def escalated_rows(
    rec: AlertRecord,
    notice: Notice,
    payload: NoticePayload,
    runtime: CompiledConfig,
    now: datetime,
) -> list[NotificationRow]:
    """``notice`` (a resolve, an ack) for each receiver in ``notice.escalated_to``:
    under the incident key its escalation had, and an identity of its own (the
    receiver may be a routed receiver too)."""
    rows: list[NotificationRow] = []
    for receiver in notice.escalated_to:
        key = escalation_key(notice.dedup_key, receiver)
        told: EscalationPayload = {"receiver": receiver}
        own: NoticePayload = {**payload, "dedup_key": key, "escalation": told}
        theirs = replace(notice, dedup_key=key, identity=f"{notice.identity}|escalated")
        integrations = runtime.receivers.get(receiver, ())
        rows += rows_for(rec, theirs, own, integrations, runtime, now)
    return rows


def rows_for(
    rec: AlertRecord,
    notice: Notice,
    payload: NoticePayload,
    integrations: Iterable[Integration],
    runtime: CompiledConfig,
    now: datetime,
) -> list[NotificationRow]:
    """One outbox row per integration that takes a notice of this kind."""
    rows: list[NotificationRow] = []
    message_key = alert_message_key(rec.fingerprint, notice.occurrence, notice.dedup_key)
    links = AckLinks.for_notice(payload, runtime, now)
    for integration in integrations:
        if would_send(notice.kind, integration) is not None:
            continue
        if integration.grouped and rec.group_key and notice.kind in _ACK_KINDS:
            continue  # grouped messages do not carry one alert's ack
        key = integration.key
        row_payload = with_ack_link(payload, integration, links)
        rows.append(
            NotificationRow(
                idempotency_key=_sha(rec.fingerprint, notice.identity, key),
                fingerprint=rec.fingerprint,
                ordering_key=ordering_key(rec.fingerprint, key),
                receiver=integration.receiver,
                integration=integration.name,
                integration_index=integration.index,
                kind=notice.kind,
                dedup_key=notice.dedup_key,
                payload=row_payload,
                created_at=now,
                message_key=message_key,
            )
        )
    return rows
