"""Run the Alembic migrations from code (``serve`` and ``migrate``)."""

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.engine import Database, DatabaseSetupError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def script_location() -> Path:
    """The migrations folder: inside an installed wheel, or at the checkout's top."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("alertrelay's migrations folder is missing from this installation")


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """``alembic upgrade`` (blocking; call it before the event loop starts)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    script = ScriptDirectory(str(script_location()))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no migration head")
    return head


async def current_revision(conn: AsyncConnection) -> str | None:
    try:
        result = await conn.execute(text("SELECT version_num FROM alembic_version"))
    except Exception:
        return None
    return result.scalar_one_or_none()


async def schema_problem(db: Database) -> str | None:
    """Why a command cannot work on ``db`` as it is (unreachable, never
    migrated, or at another revision than this alertrelay's head); None when
    it can. Commands that only read and write rows use it instead of migrating:
    ``serve`` and ``worker`` migrate on start."""
    try:
        await db.check()
        async with db.read() as conn:
            revision = await current_revision(conn)
    except DatabaseSetupError as exc:
        return str(exc)
    if revision != head_revision():
        return (
            f"the database schema is at revision {revision}, this alertrelay needs "
            f"{head_revision()}: run `alertrelay migrate` first"
        )
    return None
