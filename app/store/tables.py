"""The schema, in SQLAlchemy Core. Alembic migrations create it; never create_all."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

# One naming convention so SQLite and PostgreSQL get identical constraint and
# index names, which Alembic batch operations on SQLite rely on.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines.

    SQLite has no time zones: values are stored as naive UTC text, which
    SQLAlchemy writes with fixed-width microseconds so text comparison is
    time order. PostgreSQL stores ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # One step instead of two (this decorator, then SQLite's DATETIME
        # formatter): a 10,000-alert webhook binds some 150,000 datetimes.
        # The text is exactly SQLAlchemy's SQLite storage format.
        return remembered_text(_sqlite_text)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_text(value: datetime) -> str:
    utc = value.astimezone(UTC) if value.utcoffset() else value
    return utc.isoformat(" ", "microseconds")[:26]


# How many formatted datetimes one converter keeps (then it starts again).
REMEMBERED_TEXTS = 1024


def remembered_text(
    form: Callable[[datetime], str],
) -> Callable[[datetime | None], str | None]:
    """An aware datetime as ``form(value)`` (None stays None; a naive one is
    refused), remembered. A batch's datetimes repeat: its one ``now``
    (last_seen, created_at, received_at...), and the startsAt that one
    rule evaluation gives all of its alerts; formatting one costs ~1.5 µs,
    finding it again ~0.1 µs. Keyed by the instant: equal aware datetimes
    are one instant, which every ``form`` used here writes the same way.
    Reads and writes of one dict are safe from two threads."""
    seen: dict[datetime, str] = {}

    def process(value: datetime | None) -> str | None:
        if value is None:
            return None
        text = seen.get(value)
        if text is not None:
            return text
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        if len(seen) >= REMEMBERED_TEXTS:
            seen.clear()
        text = seen[value] = form(value)
        return text

    return process


JSONType: Any = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only aliases rowid for INTEGER PRIMARY KEY; PostgreSQL gets bigint.
BigId: Any = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column("alertname", sa.String(255), nullable=False, server_default=""),
    sa.Column("labels", JSONType, nullable=False),
    sa.Column("annotations", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=True),
    sa.Column("generator_url", sa.Text(), nullable=False, server_default=""),
    sa.Column("severity", sa.String(64), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("group_key", sa.Text(), nullable=False, server_default=""),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Column("last_changed", UTCDateTime(), nullable=False),
    sa.Column("duplicate_count", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("stale_count", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("runbook_url", sa.Text(), nullable=True),
    sa.Column("runbook_source", sa.String(255), nullable=True),
    sa.Column("incident_key", sa.String(255), nullable=True),
    sa.Column("flap_score", sa.Float(), nullable=False, server_default="0"),
    sa.Column("flap_score_at", UTCDateTime(), nullable=True),
    sa.Column("flapping", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("flap_started_at", UTCDateTime(), nullable=True),
    sa.Column("flap_transitions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_renotify_at", UTCDateTime(), nullable=True),
    sa.Column("renotify_count", sa.Integer(), nullable=False, server_default="0"),
    # domain.content_hash of annotations and generator URL (duplicate fast path).
    sa.Column("content_hash", sa.String(16), nullable=False, server_default=""),
    # Migration 0003: a startsAt/endsAt from the future (see app/dedup.py).
    sa.Column("skewed_at", UTCDateTime(), nullable=True),
    sa.Column("clock_skew", sa.String(32), nullable=True),
    # Migration 0006: the ack of the current occurrence (app/core/ack.py).
    # ack_until NULL: no expiry.
    sa.Column("ack_at", UTCDateTime(), nullable=True),
    sa.Column("ack_by", sa.String(255), nullable=True),
    sa.Column("ack_via", sa.String(16), nullable=True),
    sa.Column("ack_comment", sa.Text(), nullable=True),
    sa.Column("ack_until", UTCDateTime(), nullable=True),
    # Migration 0007: escalation of the open incident (app/core/escalation.py).
    sa.Column("escalation_since", UTCDateTime(), nullable=True),
    sa.Column("next_escalation_at", UTCDateTime(), nullable=True),
    sa.Column("escalated_to", JSONType, nullable=True),  # receivers, NULL = none
    # Lists: newest change first, the fingerprint breaking ties (keyset pages).
    sa.Index(None, "status", "last_changed", "fingerprint"),
    sa.Index(None, "last_changed", "fingerprint"),
    sa.Index(None, "status", "flapping", "severity"),  # counts read the index only
    sa.Index(None, "flapping"),
    sa.Index(None, "next_renotify_at"),
    sa.Index(None, "next_escalation_at"),
    # Migration 0009: a grouped message lists its group's alerts. A hash
    # index on PostgreSQL: a group key has no length limit, a btree entry has.
    sa.Index(None, "group_key", postgresql_using="hash"),
)

# One row per Alertmanager group that a grouped notification was decided
# for (migration 0009): when its current firing period (occurrence) began,
# which names the message destinations show for it.
alert_groups = sa.Table(
    "alert_groups",
    metadata,
    sa.Column("group_id", sa.String(32), primary_key=True),  # sha256 of group_key, cut
    sa.Column("group_key", sa.Text(), nullable=False),
    sa.Column("labels", JSONType, nullable=False),
    sa.Column("occurrence", UTCDateTime(), nullable=True),
    sa.Column("open", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "updated_at"),
)

alert_transitions = sa.Table(
    "alert_transitions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "fingerprint",
        sa.String(16),
        sa.ForeignKey("alerts.fingerprint", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("occurrence", UTCDateTime(), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("implied", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("suppressed", sa.String(32), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    # Replays and races cannot double a transition.
    sa.UniqueConstraint("fingerprint", "occurrence", "to_status"),
    sa.Index(None, "fingerprint", "id"),
    # Pruning walks the oldest first and stops at its limit.
    sa.Index(None, "received_at"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    # (fingerprint, integration) hashed: rows sharing it are delivered in id order.
    sa.Column("ordering_key", sa.String(32), nullable=False),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("integration", sa.String(32), nullable=False),
    sa.Column("integration_index", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_token", sa.String(36), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("dead_at", UTCDateTime(), nullable=True),
    sa.Column("replays", sa.Integer(), nullable=False, server_default="0"),
    # When the row last joined the queue: set by a replay; NULL means
    # created_at. max_age runs from here, so a replayed row gets its retries
    # again instead of dying on its first failure for being old.
    sa.Column("queued_at", UTCDateTime(), nullable=True),
    # Migration 0008: which chat message the row belongs to (one alert's
    # occurrence "a:<fingerprint>:<occurrence>", or a group "g:…"), and what
    # its delivery did with that message (posted, edited, skipped, threaded).
    sa.Column("message_key", sa.String(128), nullable=True),
    sa.Column("message_ref", JSONType, nullable=True),
    # Claims walk these and stop at their limit: due rows oldest first, and
    # leases that ran out.
    sa.Index(None, "status", "next_attempt_at", "id"),
    sa.Index(None, "status", "lease_expires_at", "id"),
    # Migration 0012: with the status, so the checks for an unsettled
    # sibling (claims, pruning) never read the table.
    sa.Index(None, "ordering_key", "status", "id"),
    sa.Index(None, "fingerprint", "id"),
    sa.Index(None, "status", "id"),  # lists by status, newest first
)

# Migration 0011: which alerts a grouped notification was about (changed or
# listed): a group row's own ``fingerprint`` holds its group's id, so the
# alert's page and an ack find the group messages of an alert here. Written
# in the transaction that queues the row; pruned with it.
notification_alerts = sa.Table(
    "notification_alerts",
    metadata,
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column(
        "notification_id",
        BigId,
        sa.ForeignKey("notifications.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index(None, "notification_id"),  # pruning with the notification
)

# Per destination and message key: the sink's reference to the message posted
# (Slack channel+ts, Discord message id, Mattermost post id; never a secret),
# and the outbox row whose state it last showed, so an older row never edits
# over a newer one. Written in the transaction that records the delivery.
message_refs = sa.Table(
    "message_refs",
    metadata,
    sa.Column("integration", sa.String(300), primary_key=True),  # core.domain.integration_key
    sa.Column("message_key", sa.String(128), primary_key=True),
    sa.Column("ref", JSONType, nullable=False),
    sa.Column("notification_id", sa.BigInteger(), nullable=False),
    sa.Column("state_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "updated_at"),  # pruning, oldest first
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "notification_id",
        BigId,
        sa.ForeignKey("notifications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    # Written when an attempt ends: sent, retry, dead, released or deferred;
    # interrupted (its worker died; written by the next claim) or lease_lost.
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Float(), nullable=True),
    sa.Index(None, "notification_id", "attempt"),
    sa.Index(None, "started_at"),  # pruning, oldest first
)

quarantined_alerts = sa.Table(
    "quarantined_alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("group_key", sa.Text(), nullable=False, server_default=""),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("alert_json", sa.Text(), nullable=False),
    sa.Index(None, "received_at"),
)

# Every ack, un-ack, expiry and end of an ack (action), append-only; goes
# with its alert.
alert_acks = sa.Table(
    "alert_acks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "fingerprint",
        sa.String(16),
        sa.ForeignKey("alerts.fingerprint", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("occurrence", UTCDateTime(), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # ack, unack, expired, ended
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("via", sa.String(16), nullable=False),  # api, cli, link, console, lifecycle
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("until", UTCDateTime(), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index(None, "fingerprint", "id"),
    sa.Index(None, "at"),  # pruning, oldest first
)

# Who did what: replays, reloads, prunes (and acks). Append-only; pruned by age.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255), nullable=False, server_default=""),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("details", JSONType, nullable=False),
    sa.Index(None, "at"),
    sa.Index(None, "action", "id"),
    sa.Index(None, "actor", "id"),
)

# One row per escalation step taken: the proof that a receiver was told, so a
# restart, a crash or a second replica cannot take it twice. Written in the
# transaction that queues the step's notifications.
alert_escalations = sa.Table(
    "alert_escalations",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "fingerprint",
        sa.String(16),
        sa.ForeignKey("alerts.fingerprint", ondelete="CASCADE"),
        nullable=False,
    ),
    # The incident (fingerprint and the occurrence that opened it).
    sa.Column("incident_key", sa.String(255), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("after_s", sa.Float(), nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("fired_at", UTCDateTime(), nullable=False),
    # Once per receiver and incident, whatever the step numbers after a reload.
    sa.UniqueConstraint("fingerprint", "incident_key", "receiver"),
    sa.Index(None, "fired_at"),
)

# A dead man's switch per configured heartbeat: when the last proof of life
# came, since when it is watched, and whether HeartbeatMissing fires for it.
heartbeats = sa.Table(
    "heartbeats",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("watched_since", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=True),
    sa.Column("missing", sa.Boolean(), nullable=False, server_default=sa.false()),
    # The occurrence of the HeartbeatMissing alert while missing.
    sa.Column("missing_since", UTCDateTime(), nullable=True),
)
