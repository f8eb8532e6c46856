"""Deployment knobs from the environment (``ALERTRELAY_*``), above the config file.

Precedence, highest first: command-line flags, environment variables, the
config file, built-in defaults.
"""

import os
from dataclasses import dataclass

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config.model import Config

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALERTRELAY_", extra="ignore")

    config: str | None = None
    database_url: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    log_level: str | None = None
    access_log: bool | None = None
    git_commit: str | None = None
    build_time: str | None = None
    # Names this process in leases and delivery attempts (default host:pid).
    worker_id: str | None = None

    @field_validator("config", "database_url", "host", "log_level", "access_log", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.lower() if value else value


# What each variable accepts, for errors an operator can act on.
_ACCEPTS = {
    "port": "a port number, 0 to 65535",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "access_log": "1, true, yes or on; 0, false, no or off",
}


class SettingsError(ValueError):
    """An ``ALERTRELAY_*`` variable with a value it cannot take: one line per variable."""


def load_settings() -> Settings:
    """``Settings()`` from the environment, or one clear line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = f"ALERTRELAY_{field.upper()}"
            accepts = _ACCEPTS.get(field, "a string")
            problems.append(f"{name}={os.environ.get(name, '')!r} is invalid: expected {accepts}")
        raise SettingsError("; ".join(problems)) from None


@dataclass(frozen=True)
class Effective:
    """The values in force once flags, environment and file are combined."""

    database_url: str
    host: str
    port: int
    log_level: str
    access_log: bool = False


def effective(settings: Settings, config: Config) -> Effective:
    return Effective(
        database_url=settings.database_url or config.database.url,
        host=settings.host or config.server.host,
        port=settings.port if settings.port is not None else config.server.port,
        log_level=(settings.log_level or config.server.log_level).lower(),
        access_log=(
            settings.access_log if settings.access_log is not None else config.server.access_log
        ),
    )
