"""Acknowledgements: the current ack on each alert, and the history of acks

``alerts.ack_*`` hold the ack of the alert's current occurrence (who, when,
how, why, and until when; ``ack_until`` NULL means it does not expire). All
are nullable without a default, so existing rows need no rewrite.
``alert_acks`` keeps every ack, un-ack, expiry and end, for the alert's
history and the audit of who answered a page; it goes with its alert.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ack_by", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("ack_via", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("ack_comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ack_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "alert_acks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("occurrence", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint"],
            ["alerts.fingerprint"],
            name=op.f("fk_alert_acks_fingerprint_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_acks")),
    )
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_acks_fingerprint_id"), ["fingerprint", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_acks_fingerprint_id"))
    op.drop_table("alert_acks")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("ack_until")
        batch_op.drop_column("ack_comment")
        batch_op.drop_column("ack_via")
        batch_op.drop_column("ack_by")
        batch_op.drop_column("ack_at")
