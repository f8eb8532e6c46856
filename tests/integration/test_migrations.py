"""Alembic is the only way the schema is made: upgrade, downgrade, upgrade; no drift."""

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.store import migrate
from app.store.engine import sync_url
from app.store.tables import metadata
from tests.helpers import count


def test_round_trip_and_no_drift(db_url: str) -> None:
    cfg = migrate.alembic_config(db_url)
    engine = sa.create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO quarantined_alerts (received_at, source, group_key, reason, alert_json) VALUES ('2026-01-01 00:00:00', 'x', '', 'r', '{}')"))
    command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert "alerts" not in sa.inspect(conn).get_table_names()
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {"alerts", "alert_transitions", "notifications", "delivery_attempts", "quarantined_alerts"} <= names
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == migrate.head_revision()
    engine.dispose()
    assert count(db_url, "alerts") == 0


def test_constraint_names_follow_the_convention(db_url: str) -> None:
    engine = sa.create_engine(sync_url(db_url))
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        uniques = {u["name"] for u in insp.get_unique_constraints("alert_transitions")}
        indexes = {i["name"] for i in insp.get_indexes("notifications")}
    engine.dispose()
    assert "uq_alert_transitions_fingerprint_occurrence_to_status" in uniques
    assert {"ix_notifications_status_next_attempt_at_id", "ix_notifications_ordering_key_id"} <= indexes
