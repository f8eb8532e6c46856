"""Checks a command makes before it touches anything, so the first error is the real one."""

import socket

from app.store.engine import missing_sqlite_file, redact_url

_NOT_MIGRATED = (
    "run `alertrelay migrate` (or `serve`) first, or point at the database serve uses "
    "with --config or ALERTRELAY_DATABASE_URL"
)


def port_problem(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on host:port, found before it migrates anything."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port in TIME_WAIT is free, one that is listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def missing_database(url: str) -> str | None:
    """A SQLite file that does not exist: opening it would create an empty one."""
    if missing_sqlite_file(url):
        return f"no database at {redact_url(url)}: {_NOT_MIGRATED}"
    return None


def not_migrated_hint(message: str) -> str:
    """Add what to do to the error of a database that has no schema."""
    if "alembic_version" in message:
        return f"{message}: this database was never migrated; {_NOT_MIGRATED}"
    return message
