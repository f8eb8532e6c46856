"""``alertrelay status``: a check of a running instance, as monitoring plugins behave.

Exit codes and output follow the Nagios plugin guidelines, which Icinga,
Sensu and Zabbix read too: one line ``ALERTRELAY <STATE> - <text>``, with
performance data after ``|``, and

- 0 OK: healthy, backlog and dead letters at or under their thresholds;
- 1 WARNING: healthy, but a threshold is exceeded;
- 2 CRITICAL: unhealthy (its database is unreachable) or not answering;
- 3 UNKNOWN: the check itself could not decide: a malformed ``--url``, a
  usage error, a 404 or an answer that is not alertrelay's.

Without ``--url`` the address comes from where ``serve`` listens: the
``--config`` file (or ``ALERTRELAY_CONFIG``), then ``ALERTRELAY_HOST`` and
``ALERTRELAY_PORT``.
"""

import argparse
import json
import urllib.error
import urllib.request
from typing import Any, NoReturn
from urllib.parse import urlsplit

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - listen-anywhere addresses, not binds


def _line(code: int, text: str) -> int:
    print(f"ALERTRELAY {_NAMES[code]} - {text}")
    return code


def usage_error(message: str) -> int:
    return _line(UNKNOWN, f"usage: {message} (see alertrelay status --help)")


def _exit_usage(message: str) -> NoReturn:
    """argparse exits 2 on a usage error, which a plugin reader takes for CRITICAL."""
    raise SystemExit(usage_error(message))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="check a running instance (monitoring plugin exit codes 0-3)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.error = _exit_usage
    p.add_argument(
        "--url",
        help="base URL of the instance (default: http://HOST:PORT from --config, "
        "$ALERTRELAY_CONFIG, $ALERTRELAY_HOST and $ALERTRELAY_PORT; 127.0.0.1:8080)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file to read the listen address from (default: $ALERTRELAY_CONFIG)",
    )
    p.add_argument(
        "--warn-backlog",
        type=int,
        default=100,
        metavar="N",
        help="WARNING when more than N notifications are queued (default 100)",
    )
    p.add_argument(
        "--warn-dead",
        type=int,
        default=0,
        metavar="N",
        help="WARNING when more than N notifications are dead (default 0)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up (CRITICAL) after this many seconds (default 5)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="only check that the process answers (GET /live): for container healthchecks",
    )
    p.set_defaults(func=cmd_status)


def main(argv: list[str]) -> int:
    """``alertrelay status ARGS`` on its own: the same parser as under the
    full command line, without importing the rest of it."""
    parser = argparse.ArgumentParser(prog="alertrelay")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args, extra = parser.parse_known_args(["status", *argv])
    if extra:
        return usage_error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result


def default_url(config_path: str | None) -> str:
    """Where ``serve`` listens, as the same flags, variables and file decide it."""
    from app.config.model import load_config
    from app.config.settings import effective, load_settings

    settings = load_settings()
    loaded = load_config(config_path or settings.config, secrets_optional=True)
    eff = effective(settings, loaded.config)
    host = "127.0.0.1" if eff.host in _WILDCARDS else eff.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{eff.port}"


def _valid_url(url: str) -> str | None:
    """The problem with ``url``, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be http://HOST[:PORT] or https://HOST[:PORT]"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - operator URL
            return int(resp.status), resp.read(65536)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(65536)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def check(url: str, *, timeout: float, warn_backlog: int, warn_dead: int, live: bool) -> int:
    base = url.rstrip("/")
    path = "/live" if live else "/health?detailed=true"
    try:
        status, raw = _get(base + path, timeout)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return _line(CRITICAL, f"{base} unreachable: {reason}")
    body = _json(raw)
    if status == 404:
        return _line(UNKNOWN, f"HTTP 404 from {base}{path.split('?')[0]}: not an alertrelay URL")
    if live:
        if status == 200 and body is not None and body.get("status") == "alive":
            return _line(OK, f"{base} alive")
        if body is None or "status" not in body:
            return _line(UNKNOWN, f"HTTP {status} from {base}/live is not alertrelay's answer")
        return _line(CRITICAL, f"HTTP {status} from {base}/live ({body['status']})")
    if body is None or "status" not in body:
        return _line(UNKNOWN, f"HTTP {status} from {base}/health is not alertrelay's answer")
    if status == 503 or body["status"] == "unhealthy":
        database = body.get("database")
        error = database.get("error") if isinstance(database, dict) else None
        detail = f": database {error}" if error else ""
        return _line(CRITICAL, f"{body['status']} (HTTP {status}){detail}")
    delivery = body.get("delivery")
    if status != 200 or body["status"] != "healthy" or not isinstance(delivery, dict):
        return _line(UNKNOWN, f"HTTP {status} from {base}/health is not alertrelay's answer")
    try:
        backlog, dead = int(delivery["backlog"]), int(delivery["dead_letters"])
    except (KeyError, TypeError, ValueError):
        return _line(UNKNOWN, f"{base}/health has no delivery counts")
    perf = f"| backlog={backlog};{warn_backlog};;0 dead={dead};{warn_dead};;0"
    text = f"backlog {backlog}, dead letters {dead} {perf}"
    if backlog > warn_backlog or dead > warn_dead:
        return _line(WARNING, text)
    return _line(OK, text)


def cmd_status(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        return _line(UNKNOWN, "usage: --timeout must be positive")
    url = args.url
    if url is None:
        # Only then: the config model is most of this command's start-up.
        from app.config.model import ConfigError
        from app.config.settings import SettingsError

        try:
            url = default_url(args.config)
        except ConfigError as exc:
            first = exc.errors[0] if exc.errors else "invalid"
            return _line(UNKNOWN, f"cannot read the listen address: {exc.source}: {first}")
        except SettingsError as exc:  # e.g. ALERTRELAY_PORT=abc
            return _line(UNKNOWN, f"cannot read the listen address: {exc}")
    problem = _valid_url(url)
    if problem:
        return _line(UNKNOWN, f"invalid --url {url!r}: {problem}")
    return check(
        url,
        timeout=args.timeout,
        warn_backlog=args.warn_backlog,
        warn_dead=args.warn_dead,
        live=args.live,
    )
