"""The ``alertrelay`` command line; ``main`` is the console script's entry point."""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``alertrelay`` command; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["status"]:
        # A monitoring check, run every few seconds by a plugin runner or by
        # the image's HEALTHCHECK, needs none of the service's modules:
        # loading them (SQLAlchemy, the config model, every notifier) was
        # ~0.6 s of CPU per check.
        from app.cli.status import main as status_main

        return status_main(args[1:])
    from app.cli.main import main as full

    return full(args)


__all__ = ["main"]
