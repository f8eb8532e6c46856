"""The ``alertrelay`` command line; ``main`` is the console script's entry point."""

from app.cli.main import main

__all__ = ["main"]
