"""Alembic is the only way the schema is made: upgrade, downgrade, upgrade; no drift."""

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.store import migrate
from app.store.engine import sync_url
from app.store.tables import metadata
from tests.helpers import count, table_rows


def test_round_trip_and_no_drift(db_url: str) -> None:
    cfg = migrate.alembic_config(db_url)
    engine = sa.create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO quarantined_alerts (received_at, source, group_key, reason, alert_json) VALUES ('2026-01-01 00:00:00', 'x', '', 'r', '{}')"
            )
        )
    command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert "alerts" not in sa.inspect(conn).get_table_names()
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {
            "alerts",
            "alert_transitions",
            "notifications",
            "delivery_attempts",
            "quarantined_alerts",
        } <= names
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
        assert diff == []
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            == migrate.head_revision()
        )
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
    assert {
        "ix_notifications_status_next_attempt_at_id",
        "ix_notifications_ordering_key_status_id",
    } <= indexes


def test_sqlite_datetimes_are_written_in_sqlalchemys_own_format() -> None:
    """UTCDateTime formats SQLite text itself; it must be byte-for-byte SQLAlchemy's
    (fixed-width, so text order is time order, and rows written before read back)."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from app.store.tables import UTCDateTime

    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    east = timezone(timedelta(hours=5, minutes=30))
    for value in [
        datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=east),
    ]:
        assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None)), value
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2024, 1, 1))  # noqa: DTZ001


def test_alerts_firing_at_the_upgrade_start_their_escalation_clock_then(db_url: str) -> None:
    """0007 marks open incidents' escalation as due at the upgrade (the first
    sweep decides it with the config), not at their old startsAt."""
    from datetime import UTC, datetime

    cfg = migrate.alembic_config(db_url)
    command.downgrade(cfg, "0008")
    engine = sa.create_engine(sync_url(db_url))
    with engine.begin() as conn:
        for fp, key in (("00000000000000aa", "alertrelay/aa/x"), ("00000000000000bb", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, "
                    "source, first_seen, last_seen, last_changed, incident_key) VALUES "
                    "(:fp, '{}', '{}', 'firing', '2020-01-01 00:00:00.000000', 'alertmanager', "
                    "'2020-01-01 00:00:00.000000', '2020-01-01 00:00:00.000000', "
                    "'2020-01-01 00:00:00.000000', :key)"
                ),
                {"fp": fp, "key": key},
            )
    before = datetime.now(UTC)
    command.upgrade(cfg, "head")
    rows = {r["fingerprint"]: r for r in table_rows(db_url, "alerts", "fingerprint")}
    engine.dispose()
    opened = rows["00000000000000aa"]
    assert opened["escalation_since"] >= before.replace(microsecond=0)
    assert opened["next_escalation_at"] == opened["escalation_since"]
    assert rows["00000000000000bb"]["escalation_since"] is None
