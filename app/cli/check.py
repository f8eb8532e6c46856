"""``alertrelay check-config``: every problem of a config file in one run."""

import argparse
import os
import sys
from typing import Any

from app.config.model import ConfigError, load_config
from app.config.settings import SettingsError, load_settings
from app.config.yamlload import YamlError, load_yaml
from app.store.engine import url_problem

EXIT_OK, EXIT_CONFIG, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a config file: every problem at once, with its YAML path",
        description="Validate a config file the way serve reads it: the file, its secrets "
        "and the database URL (ALERTRELAY_DATABASE_URL wins over database.url, as in serve). "
        "Exit 0 with a summary, 1 with every problem, 2 on a usage error.",
    )
    p.add_argument(
        "file", nargs="?", help="config file (same as --config; default: $ALERTRELAY_CONFIG)"
    )
    p.add_argument(
        "--config",
        dest="config_flag",
        metavar="FILE",
        help="config file (default: $ALERTRELAY_CONFIG)",
    )
    p.set_defaults(func=cmd_check_config)


def _raw_database_url(path: str) -> str | None:
    """database.url from a file that did not validate, if it can be read at all."""
    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f.read(), os.environ)
    except (OSError, UnicodeDecodeError, YamlError):
        return None
    database = data.get("database")
    url = database.get("url") if isinstance(database, dict) else None
    return url if isinstance(url, str) else None


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.file and args.config_flag and args.file != args.config_flag:
        print("check-config: give the file once (FILE or --config)", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"alertrelay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = args.file or args.config_flag or settings.config
    if path is None:
        print(
            "check-config: which file? Pass FILE, --config FILE or set ALERTRELAY_CONFIG",
            file=sys.stderr,
        )
        return EXIT_USAGE
    problems: list[str] = []
    summary = None
    url: str | None
    try:
        loaded = load_config(path)
        summary = loaded.summary()
        url = settings.database_url or loaded.config.database.url
    except ConfigError as exc:
        problems.extend(exc.errors)
        url = settings.database_url or _raw_database_url(path)
    if url is not None:
        problem = url_problem(url)
        if problem:
            where = "ALERTRELAY_DATABASE_URL" if settings.database_url else "database.url"
            problems.append(f"{where}: {problem}")
    if problems:
        print(f"{path}: invalid config, {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(summary)
    return EXIT_OK
