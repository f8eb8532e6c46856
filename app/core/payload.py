"""The notice payload: what one notification says, as it crosses the outbox.

:func:`app.core.fanout.notice_payload` writes it when a notice is decided;
it is stored as JSON with each outbox row, so retries and replays send the
same content whatever the alert did since; :func:`app.core.message.build_message`
reads it back when the row is delivered (and ``routes test --render`` when
it previews one). Readers use ``.get`` with a default for every key but
``kind`` and ``status``: a row written by an older version may lack a newer key.
"""

from typing import NotRequired, TypedDict


class FlapPayload(TypedDict):
    score: float
    flapping: bool
    transitions: int  # transitions during the flap (flapping and stable notices)


class GroupAlertPayload(TypedDict):
    fingerprint: str
    alertname: str
    detail: str  # the labels that tell it from the group's other alerts
    status: str
    severity: str
    summary: str
    runbook_url: str | None
    changed: str  # its notice kind when it changed in this message, else ""
    note: NotRequired[str]  # more on the change (a flap's transitions)
    ack_url: NotRequired[str]  # the one-click acknowledge link of this alert's occurrence
    acked: NotRequired[str]  # "acknowledged by … (comment)" while an ack is in force


class GroupPayload(TypedDict):
    """A grouped notification's content (``grouping: group``)."""

    id: str  # sha256 of the group key, cut
    key: str
    labels: dict[str, str]
    occurrence: str  # when the group started firing, RFC 3339
    message_key: str
    opened: bool  # the first message of this occurrence
    changes: dict[str, int]  # notice kind -> alerts
    firing: int
    resolved: int
    alerts: list[GroupAlertPayload]
    more: int
    console_url: str | None


class AckPayload(TypedDict):
    by: str
    via: str
    at: str  # RFC 3339
    comment: str | None
    until: str | None  # RFC 3339; None: until the occurrence ends


class EscalationPayload(TypedDict, total=False):
    """On an escalation notice, and on the resolve sent to a receiver escalated to."""

    receiver: str  # the receiver escalated to
    step: int
    after_s: float
    firing_for_s: float
    notified: list[str]  # receivers told before this step
    flapping: bool


class NoticePayload(TypedDict):
    kind: str  # a NoticeKind value
    status: str  # the alert's state the notice reports (a Status value)
    fingerprint: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    starts_at: str  # the occurrence, RFC 3339
    ends_at: str | None
    generator_url: str
    runbook_url: str | None
    dedup_key: str  # the incident key
    group_key: str
    external_url: str  # the sending Alertmanager's, when decided from a webhook
    am_receiver: str
    source: str  # alertmanager or grafana
    # Firing alerts in the webhook's group when this was decided; None when
    # not decided from a webhook (sweeper notices).
    group_firing: int | None
    duplicates: int
    flap: FlapPayload
    decided_at: str
    # Only on grouped notifications; the fields above then describe the group.
    group: NotRequired[GroupPayload]
    # The ack in force when this was decided (ack and unack notices, and any
    # notice of an acknowledged occurrence); absent or None: not acknowledged.
    ack: AckPayload | None
    # The one-click acknowledge link for the receiver this row goes to (chat
    # and email, when external_url and auth.link_secret are set).
    ack_url: NotRequired[str]
    escalation: NotRequired[EscalationPayload]
