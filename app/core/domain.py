"""Domain values shared by ingest, storage and delivery."""

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.payload import NoticePayload


class Status(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Source(enum.StrEnum):
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"
    HEARTBEAT = "heartbeat"  # alertrelay's own HeartbeatMissing alerts


class NoticeKind(enum.StrEnum):
    """Why a notification is sent."""

    FIRING = "firing"  # the alert started firing
    RESOLVED = "resolved"  # the alert resolved
    FLAPPING = "flapping"  # it started flapping; per-transition notices stop
    STABLE = "stable"  # it stopped flapping; carries the current state
    REMINDER = "reminder"  # still firing after renotify_interval
    ACK = "ack"  # someone acknowledged the occurrence (PagerDuty: acknowledge)
    UNACK = "unack"  # the ack was taken back (messages kept up to date only)
    ESCALATION = "escalation"  # nobody acknowledged it: an escalation step's receiver is told


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    DEAD = "dead"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_json_string = json.encoder.encode_basestring_ascii  # ASCII-only, as json.dumps's default


def content_hash(
    annotations: Mapping[str, str], generator_url: str, *, remember: bool = True
) -> str:
    """Digest of what may change while an alert repeats (annotations, link).

    Stored beside the alert so a duplicate can be confirmed by one indexed
    comparison in SQL, without loading and comparing the annotations.
    ``remember=False`` skips the memo (see ``fingerprint``).
    """
    # The text is byte for byte json.dumps([sorted(items), url], separators=(",", ":"))
    # (stored hashes must not change), built from json's own C string encoder:
    # every alert of every webhook is hashed, and the generic encoder took
    # ~4 us of the ~15 us an alert costs to parse.
    key = (tuple(annotations.items()), generator_url) if remember else None
    if key is not None:
        found = _content_hashes.get(key)
        if found is not None:
            return found
    esc = _json_string
    pairs = ",".join([f"[{esc(k)},{esc(v)}]" for k, v in sorted(annotations.items())])
    text = f"[[{pairs}],{esc(generator_url)}]"
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    if key is not None:
        if len(_content_hashes) >= _CONTENT_HASHES_KEPT:
            _content_hashes.clear()
        _content_hashes[key] = digest
    return digest


# Alertmanager resends the same annotations with every repeat: the digest of
# each recent set is kept (keyed by the items in their order on the wire, so
# a reordered set is a miss, never a wrong answer). Bounded, and simply
# emptied when full: a fleet with more distinct sets than this pays what it
# paid without the memo.
_CONTENT_HASHES_KEPT = 8192
_content_hashes: dict[tuple[tuple[tuple[str, str], ...], str], str] = {}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of an accepted webhook, normalized and fingerprinted."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: Status
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str = ""
    content_hash: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True, slots=True)
class Webhook:
    """The envelope of one accepted webhook request."""

    source: Source
    alerts: list[Alert]
    received_at: datetime
    receiver: str = ""
    group_key: str = ""
    external_url: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    truncated_alerts: int = 0

    @property
    def firing_count(self) -> int:
        return sum(1 for a in self.alerts if a.status is Status.FIRING)


def pagerduty_severity(severity: str) -> str:
    """Map the ``severity`` label to one of PagerDuty's four values."""
    value = severity.strip().lower()
    if value in ("critical", "page"):
        return "critical"
    if value in ("error", "warning"):
        return value
    return "info"


def integration_key(receiver: str, integration: str, index: int) -> str:
    """Names one configured destination, ``receivers[r].<integration>_configs[index]``.

    The outbox's ordering key and idempotency key hash it, the delivery loop
    counts its sends by it, and it is how operators see the destination.
    """
    return f"{receiver}/{integration}/{index}"


# Formatted instants, kept: a big webhook formats each alert's startsAt and
# the batch's ``now`` several times (payloads, message keys), at ~1.5 µs a
# call against ~0.1 µs to find one again. Bounded; safe from two threads.
_ISO_TEXTS: dict[datetime, str] = {}
_ISO_TEXTS_MAX = 1024


def isoformat(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds only when present."""
    text = _ISO_TEXTS.get(ts)
    if text is None:
        if len(_ISO_TEXTS) >= _ISO_TEXTS_MAX:
            _ISO_TEXTS.clear()
        utc = ts if ts.tzinfo is UTC else ts.astimezone(UTC)
        text = _ISO_TEXTS[ts] = utc.isoformat().replace("+00:00", "Z")
    return text


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """The stored state of one alert (one row per fingerprint)."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: Status
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    source: str
    group_key: str
    first_seen: datetime
    last_seen: datetime
    last_changed: datetime
    duplicate_count: int = 0
    stale_count: int = 0
    runbook_url: str | None = None
    runbook_source: str | None = None
    incident_key: str | None = None
    flap_score: float = 0.0
    flap_score_at: datetime | None = None
    flapping: bool = False
    flap_started_at: datetime | None = None
    flap_transitions: int = 0
    next_renotify_at: datetime | None = None
    renotify_count: int = 0
    content_hash: str = ""
    # Clock skew of the current occurrence: when its startsAt was beyond the
    # allowed skew, the server time it is ordered at; and which of the
    # alert's timestamps were ("startsAt", "endsAt", comma-separated).
    skewed_at: datetime | None = None
    clock_skew: str | None = None
    # The ack of the current occurrence (app/core/ack.py): when, who, how
    # (api, cli, link, console), why, and until when (None: no expiry).
    ack_at: datetime | None = None
    ack_by: str | None = None
    ack_via: str | None = None
    ack_comment: str | None = None
    ack_until: datetime | None = None
    # Escalation of the open incident (app/core/escalation.py): when its
    # clock started, when the next step is due, and who was escalated to.
    escalation_since: datetime | None = None
    next_escalation_at: datetime | None = None
    escalated_to: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")[:64]

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")[:255]


@dataclass(frozen=True, slots=True)
class TransitionRow:
    fingerprint: str
    occurrence: datetime
    from_status: Status | None
    to_status: Status
    at: datetime
    received_at: datetime
    implied: bool
    suppressed: str | None
    source: str


class AckAction(enum.StrEnum):
    """What happened to an ack (a row of its history)."""

    ACK = "ack"  # someone acknowledged
    UNACK = "unack"  # someone took it back
    EXPIRED = "expired"  # its ``for`` ran out while the alert still fired
    ENDED = "ended"  # the alert resolved or a new occurrence began


@dataclass(frozen=True, slots=True)
class AckRow:
    """One row of an alert's ack history."""

    fingerprint: str
    occurrence: datetime
    action: AckAction
    actor: str
    via: str
    comment: str | None
    until: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class NotificationRow:
    idempotency_key: str
    fingerprint: str
    ordering_key: str
    receiver: str
    integration: str
    integration_index: int
    kind: NoticeKind
    dedup_key: str
    payload: NoticePayload
    created_at: datetime
    # The chat message this row belongs to; see ``alert_message_key``.
    message_key: str | None = None
    # A grouped row: the fingerprints of the alerts its message is about.
    alerts: tuple[str, ...] = ()


def alert_message_key(fingerprint: str, occurrence: datetime, dedup_key: str = "") -> str:
    """The message of one alert occurrence (``grouping: alert``).

    Every notice of that occurrence (firing, resolved, reminders) edits or
    threads under one message; a new occurrence starts a new one. A notice
    that carries an incident key (``alertrelay/<fingerprint>/<stamp>``)
    belongs to the occurrence that opened the incident, so a flap's
    flapping and stable notices land on the message the flap began in, as
    they land on one PagerDuty incident. Group messages use keys ``g:…``.
    """
    prefix = f"alertrelay/{fingerprint}/"
    if dedup_key.startswith(prefix):
        stamp = incident_stamp(dedup_key[len(prefix) :])
        if stamp is not None:
            occurrence = stamp
    return f"a:{fingerprint}:{isoformat(occurrence)}"


_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def incident_stamp(text: str) -> datetime | None:
    """The occurrence an incident key's stamp names (``20261206T025950.866324Z``).

    Our own keys always have that exact shape, read here by slicing: every
    notice of a big webhook passes through, and ``strptime`` cost ~15 us a
    call. Anything else takes ``strptime``, which decides as before.
    """
    if (
        len(text) == 23
        and text.isascii()
        and text[8] == "T"
        and text[15] == "."
        and text[22] == "Z"
        and text[:8].isdigit()
        and text[9:15].isdigit()
        and text[16:22].isdigit()
    ):
        try:
            return datetime(
                int(text[0:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[9:11]),
                int(text[11:13]),
                int(text[13:15]),
                int(text[16:22]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
    try:
        return datetime.strptime(text, _STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    received_at: datetime
    source: str
    group_key: str
    reason: str
    alert_json: str
