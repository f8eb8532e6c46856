"""Fixtures: databases migrated by Alembic, and in-process apps with their lifespan."""

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from app.config.model import LoadedConfig, parse_config
from app.config.settings import Settings
from app.ops.clock import Clock
from app.store.migrate import upgrade
from app.store.tables import metadata
from app.web.app import create_app
from tests.helpers import settle_sqlite_threads, sqlite_threads

PG_URL = os.environ.get("ALERTRELAY_TEST_POSTGRES_URL")
# Every table of the schema, so a new one is emptied between tests too.
TABLES = ", ".join(t.name for t in reversed(metadata.sorted_tables))


def pg_admin_conn() -> psycopg.Connection[Any]:
    assert PG_URL
    url = make_url(PG_URL).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def create_pg_database(prefix: str = "alertrelay_t") -> str:
    """A fresh database on the test server; returns its URL."""
    assert PG_URL
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with pg_admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    with pg_admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    url = create_pg_database()
    upgrade(url)
    yield url
    drop_pg_database(url)


def _truncate_pg(url: str) -> None:
    with psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        path = tmp_path / "alertrelay.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_session_url")
    if url is None:
        pytest.skip("ALERTRELAY_TEST_POSTGRES_URL is not set")
    _truncate_pg(url)
    return str(url)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "alertrelay.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def load(text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    return parse_config(text, "test.yml", env or {})


@asynccontextmanager
async def running_app(
    db_url: str,
    config_text: str,
    *,
    clock: Clock | None = None,
    env: dict[str, str] | None = None,
    background: bool = False,
    config_path: str | None = None,
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """An app with its lifespan running, and a client that talks to it in-process.

    Background loops are off unless asked for: tests drive the sweeper and
    delivery by hand."""
    settings = Settings(database_url=db_url, config=config_path)
    app = create_app(settings, load(config_text, env), clock=clock, background=background)
    threads = sqlite_threads()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://alertrelay.test"
        ) as client:
            yield app, client
    await settle_sqlite_threads(threads)


def pytest_configure(config: pytest.Config) -> None:
    """Under CI (ALERTRELAY_TEST_REQUIRE_ALL=1) a missing service is an error, not a skip."""
    if os.environ.get("ALERTRELAY_TEST_REQUIRE_ALL") != "1":
        return
    missing = []
    if not PG_URL:
        missing.append("ALERTRELAY_TEST_POSTGRES_URL is not set")
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        missing.append("the Alertmanager binary is not installed")
    if not shutil.which("amtool"):
        missing.append("amtool is not installed")
    if not shutil.which("promtool"):
        missing.append("promtool (Debian package prometheus) is not installed")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        missing.append("chromium (Debian package chromium) is not installed")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (the test extra) is not installed")
    if missing:
        raise pytest.UsageError("ALERTRELAY_TEST_REQUIRE_ALL: " + "; ".join(missing))
