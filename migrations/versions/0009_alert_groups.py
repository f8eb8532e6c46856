"""Grouped notifications: the groups' firing periods, and alerts found by group

``alert_groups`` holds, per Alertmanager group, when its current firing
period began (it names the message each destination shows for it); the
index on ``alerts.group_key`` lets a grouped message list its group's
alerts without reading every alert (a hash index on PostgreSQL, whose
btree entries cannot hold a long group key).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04 22:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_groups",
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("occurrence", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_alert_groups")),
    )
    with op.batch_alter_table("alert_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_groups_updated_at"), ["updated_at"])
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alerts_group_key"), ["group_key"], postgresql_using="hash"
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_group_key"))
    op.drop_table("alert_groups")
