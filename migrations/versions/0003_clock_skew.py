"""alerts.skewed_at and alerts.clock_skew: timestamps from the future

``skewed_at`` is the server time an occurrence whose startsAt was too far
ahead is ordered at; ``clock_skew`` names the skewed timestamps. Both are
nullable without a default, so existing rows need no rewrite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("clock_skew", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("clock_skew")
        batch_op.drop_column("skewed_at")
