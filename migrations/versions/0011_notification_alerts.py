"""Grouped notifications: the alerts each one was about

A grouped row's ``fingerprint`` holds its group's id; ``notification_alerts``
links it to the alerts it changed or listed, so an alert's page lists its
group messages and an ack finds the message to edit, by index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_alerts",
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column(
            "notification_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_alerts_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "fingerprint", "notification_id", name=op.f("pk_notification_alerts")
        ),
    )
    with op.batch_alter_table("notification_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_alerts_notification_id"), ["notification_id"]
        )


def downgrade() -> None:
    op.drop_table("notification_alerts")
