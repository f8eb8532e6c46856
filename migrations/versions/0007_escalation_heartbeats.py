"""Escalation and heartbeats: alerts' escalation columns, alert_escalations, heartbeats

``alerts.escalation_since`` / ``next_escalation_at`` / ``escalated_to`` hold
the escalation state of the open incident (nullable, so existing rows need
no rewrite; the index lets the sweeper find due steps without reading every
firing alert). ``alert_escalations`` records each step taken, unique per
incident and receiver, so no step is taken twice. ``heartbeats`` holds each
dead man's switch: last proof of life, since when it is watched, missing.

Alerts whose incident is open at the upgrade start their escalation clock at
the upgrade (not at their startsAt, which would escalate every old alert to
everyone at once): their next step is marked due now, and the first sweep
decides it with the config in force, so the steps fire ``after`` from now.

Revision ID: 0007
Revises: 0008
Create Date: 2026-12-04 22:40:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escalation_since", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_escalation_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("escalated_to", _JSON, nullable=True))
        batch_op.create_index(
            batch_op.f("ix_alerts_next_escalation_at"), ["next_escalation_at"], unique=False
        )
    now = datetime.now(UTC)
    bind = op.get_bind()
    # SQLite keeps naive UTC text in SQLAlchemy's format (app/store/tables.py).
    stamp: object = (
        now.replace(tzinfo=None).isoformat(" ", "microseconds")
        if bind.dialect.name == "sqlite"
        else now
    )
    op.execute(
        sa.text(
            "UPDATE alerts SET escalation_since = :now, next_escalation_at = :now "
            "WHERE incident_key IS NOT NULL"
        ).bindparams(now=stamp)
    )
    op.create_table(
        "alert_escalations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("incident_key", sa.String(255), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("after_s", sa.Float(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint"],
            ["alerts.fingerprint"],
            name=op.f("fk_alert_escalations_fingerprint_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_escalations")),
        sa.UniqueConstraint(
            "fingerprint",
            "incident_key",
            "receiver",
            name=op.f("uq_alert_escalations_fingerprint_incident_key_receiver"),
        ),
    )
    op.create_index(
        op.f("ix_alert_escalations_fired_at"), "alert_escalations", ["fired_at"], unique=False
    )
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("watched_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("missing", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_index(op.f("ix_alert_escalations_fired_at"), table_name="alert_escalations")
    op.drop_table("alert_escalations")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_next_escalation_at"))
        batch_op.drop_column("escalated_to")
        batch_op.drop_column("next_escalation_at")
        batch_op.drop_column("escalation_since")
