"""Retention and audit: the audit log, indexes that let pruning stop early,
and SQLite incremental auto-vacuum

Pruning walks each table from its oldest rows and stops at its limit, so the
columns it orders by need an index: ``alert_transitions.received_at`` and
``delivery_attempts.started_at`` (notifications, quarantine and alerts
already have one that serves).

SQLite only hands freed pages back to the file system when ``auto_vacuum``
is ``INCREMENTAL``, and that mode can only be switched on for an existing
file by rewriting it with ``VACUUM``. A new database is nearly empty here,
so that costs nothing. For an existing one ``VACUUM`` needs free disk space
about the size of the file and holds the write lock while it runs; this
runs before ``serve`` accepts anything, and it is skipped (with a warning;
pruning still reuses freed pages inside the file) when the disk has not
enough room.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:10:00.000000
"""

import logging
import os
import shutil
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alertrelay.migrations")

_INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_action_id"), ["action", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_actor_id"), ["actor", "id"], unique=False)
    with op.batch_alter_table("alert_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_transitions_received_at"), ["received_at"], unique=False
        )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_started_at"), ["started_at"], unique=False
        )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_incremental_vacuum()


def _sqlite_incremental_vacuum() -> None:
    bind = op.get_bind()
    if bind.exec_driver_sql("PRAGMA auto_vacuum").scalar() == _INCREMENTAL:
        return
    page_size = int(bind.exec_driver_sql("PRAGMA page_size").scalar() or 4096)
    pages = int(bind.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    size = page_size * pages
    path = bind.engine.url.database or ""
    folder = os.path.dirname(os.path.abspath(path))
    # VACUUM writes a full copy (the WAL) before the old pages are let go.
    free = shutil.disk_usage(folder).free
    if free < 2 * size + 64 * 1024 * 1024:
        log.warning(
            "SQLite auto_vacuum not switched on: VACUUM needs about %d MiB free beside %s, "
            "%d MiB are; pruned space is reused inside the file but not returned",
            (2 * size) // 2**20,
            path,
            free // 2**20,
        )
        return
    with op.get_context().autocommit_block():
        bind.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
        bind.exec_driver_sql("VACUUM")


def downgrade() -> None:
    # auto_vacuum stays as it is: it changes no schema and harms nothing.
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_started_at"))
    with op.batch_alter_table("alert_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_transitions_received_at"))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
    op.drop_table("audit_log")
