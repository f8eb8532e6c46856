"""Alembic environment: runs migrations with a synchronous engine.

``alertrelay migrate`` and ``serve`` call Alembic with the database URL in
``config.attributes["url"]``; the ``alembic`` command line reads
``ALERTRELAY_DATABASE_URL`` instead.
"""

import os

from alembic import context
from sqlalchemy import create_engine, pool

from app.store.engine import sqlite_use_wal, sync_url
from app.store.tables import metadata

config = context.config
url = config.attributes.get("url") or os.environ.get(
    "ALERTRELAY_DATABASE_URL", "sqlite:///alertrelay.db"
)


def run_migrations_offline() -> None:
    context.configure(
        url=sync_url(url),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # WAL belongs to the file: set it here, alone, so the app's
        # connections find it set and never race each other to switch it
        # (a second switch while the first holds the lock is "database is locked").
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            sqlite_use_wal(cursor)
            cursor.close()
        finally:
            raw.close()
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
