"""Messages that update in place: notifications.message_key and message_refs

``notifications.message_key`` names the chat message a row belongs to
(``a:<fingerprint>:<occurrence>`` for one alert's occurrence, ``g:…`` for
an Alertmanager group). ``message_refs`` keeps, per destination and
message key, what the sink answered when the message was first posted
(Slack channel and ts, a Discord message id, a Mattermost post id), and
which outbox row last wrote it, so a later row edits that message (or
replies in its thread) and an older row never overwrites a newer state.
It is written in the same transaction as the delivery outcome. It holds
no secrets: no tokens, no webhook URLs. ``notifications.message_ref``
records what one row's delivery did with the message (posted, edited,
skipped as stale, threaded) and the reference it used.

Nullable columns without defaults: existing rows need no rewrite.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04 22:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("message_ref", _json(), nullable=True))
    op.create_table(
        "message_refs",
        sa.Column("integration", sa.String(length=300), nullable=False),
        sa.Column("message_key", sa.String(length=128), nullable=False),
        sa.Column("ref", _json(), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("integration", "message_key", name=op.f("pk_message_refs")),
    )
    with op.batch_alter_table("message_refs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_refs_updated_at"), ["updated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_refs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_refs_updated_at"))
    op.drop_table("message_refs")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("message_ref")
        batch_op.drop_column("message_key")
