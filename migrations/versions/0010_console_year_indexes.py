"""Indexes the console and retention need at a year of data

Alert lists are sorted by (last_changed, fingerprint), newest first, with
the fingerprint breaking ties so keyset pages never skip or repeat a row.
The index on (status, last_changed) lacked the fingerprint, so every page
sorted all the alerts of that state (a year keeps about 100,000 resolved
ones), and the unfiltered list had no index to walk at all. These two walk
the newest first and stop at the page size.

Old ack history is pruned oldest first, by the time of the ack.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_status_last_changed"))
        batch_op.create_index(
            batch_op.f("ix_alerts_status_last_changed_fingerprint"),
            ["status", "last_changed", "fingerprint"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_alerts_last_changed_fingerprint"),
            ["last_changed", "fingerprint"],
            unique=False,
        )
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_acks_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_acks_at"))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_last_changed_fingerprint"))
        batch_op.drop_index(batch_op.f("ix_alerts_status_last_changed_fingerprint"))
        batch_op.create_index(
            batch_op.f("ix_alerts_status_last_changed"), ["status", "last_changed"], unique=False
        )
