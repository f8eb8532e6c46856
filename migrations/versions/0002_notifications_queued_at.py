"""notifications.queued_at: max_age restarts when a dead notification is replayed

Nullable and without a default, so existing rows need no rewrite (on
PostgreSQL adding it only touches the catalogue) and mean ``created_at``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # On SQLite batch mode copies the table without the column.
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("queued_at")
