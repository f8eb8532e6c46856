"""The ``alertrelay`` command (README.md, "Commands")."""

import argparse
import asyncio
import gc
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from app.cli import check, preflight, status
from app.config.compiled import CompiledConfig, compile_config
from app.config.model import ConfigError, LoadedConfig, example_config_text, load_config
from app.config.settings import Settings, SettingsError, effective, load_settings
from app.core.escalation import format_duration
from app.core.lifecycle import escalation_steps
from app.ops import logs
from app.ops.version import version_info
from app.store.engine import DatabaseSetupError, redact_url

log = logging.getLogger("alertrelay")

EXIT_OK, EXIT_CONFIG, EXIT_USAGE = 0, 1, 2

CONFIG_HELP = (
    "config file (default: $ALERTRELAY_CONFIG, else the built-in config); the database is "
    "$ALERTRELAY_DATABASE_URL, else database.url, else sqlite:///alertrelay.db"
)


def _fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(message, file=sys.stderr)
    return code


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise SystemExit(_fail(f"alertrelay: {exc}", EXIT_USAGE)) from None


def _load(path: str | None, *, secrets_optional: bool = False) -> LoadedConfig:
    try:
        loaded = load_config(path, secrets_optional=secrets_optional)
    except ConfigError as exc:
        print(f"{exc.source or path}: invalid config", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if loaded.unresolved:
        # Routing needs no secret; say which ones were skipped, never their values.
        print(
            f"note: {len(loaded.unresolved)} secret(s) not resolved (not needed here):",
            file=sys.stderr,
        )
        for item in loaded.unresolved:
            print(f"  {item}", file=sys.stderr)
    return loaded


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(_fail(f"expected LABEL=VALUE, got {pair!r}", EXIT_USAGE))
        labels[name] = value
    return labels


# ------------------------------------------------------------------ commands


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.store.migrate import upgrade
    from app.web.app import create_app

    settings = _settings()
    config_path = args.config or settings.config
    loaded = _load(config_path)
    settings = settings.model_copy(
        update={
            "config": config_path,
            "host": args.host or settings.host,
            "port": args.port if args.port is not None else settings.port,
        }
    )
    eff = effective(settings, loaded.config)
    logs.configure(eff.log_level)
    # A port clash is the real error: report it before migrating anything.
    clash = preflight.port_problem(eff.host, eff.port)
    if clash:
        return _fail(clash)
    try:
        upgrade(eff.database_url)
    except DatabaseSetupError as exc:
        return _fail(str(exc))
    except Exception as exc:
        return _fail(f"cannot migrate {redact_url(eff.database_url)}: {str(exc).splitlines()[0]}")
    app = create_app(settings, loaded, handle_sighup=True)
    _settle_heap()
    config = uvicorn.Config(
        app,
        host=eff.host,
        port=eff.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="auto",
        http="auto",
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=15,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except DatabaseSetupError as exc:
        return _fail(str(exc))
    # uvicorn exits cleanly when the lifespan fails; report it as a failure.
    return EXIT_OK if server.started else EXIT_CONFIG


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.store.migrate import head_revision, upgrade

    settings = _settings()
    loaded = _load(args.config or settings.config)
    eff = effective(settings, loaded.config)
    logs.configure("warning")
    try:
        upgrade(eff.database_url)
    except Exception as exc:
        return _fail(f"cannot migrate {redact_url(eff.database_url)}: {str(exc).splitlines()[0]}")
    print(f"{redact_url(eff.database_url)}: at revision {head_revision()} (head)")
    return EXIT_OK


def _settle_heap() -> None:
    """Move what start-up built (modules, config, SQL constructs) out of the
    collector's reach, so the full collections a busy process triggers scan
    only what requests made. Measured: ingest p99 85 -> 27-41 ms at the same
    throughput (repeats, 1 alert per request, SQLite; docs/performance.md)."""
    gc.collect()
    gc.freeze()


def _run(main: "Coroutine[Any, Any, int]") -> int:
    """Run on uvloop when it is installed, as `serve` does through uvicorn."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def cmd_worker(args: argparse.Namespace) -> int:
    from app.cli.outbox_commands import run_worker

    settings = _settings()
    config_path = args.config or settings.config
    loaded = _load(config_path)
    settings = settings.model_copy(update={"config": config_path})
    eff = effective(settings, loaded.config)
    logs.configure(eff.log_level)
    from app.store.migrate import upgrade

    try:
        upgrade(eff.database_url)
    except Exception as exc:
        return _fail(f"cannot migrate {redact_url(eff.database_url)}: {str(exc).splitlines()[0]}")
    _settle_heap()
    return _run(run_worker(settings, loaded))


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from app.cli.outbox_commands import dead_letters

    settings = _settings()
    loaded = _load(args.config or settings.config)
    eff = effective(settings, loaded.config)
    logs.configure("warning")
    missing = preflight.missing_database(eff.database_url)
    if missing:
        return _fail(missing)
    return asyncio.run(
        dead_letters(eff.database_url, loaded, replay=args.replay, replay_all=args.replay_all)
    )


def cmd_ack(args: argparse.Namespace) -> int:
    from app.cli.ack_commands import ack_command
    from app.config.fields import parse_duration

    undo = args.command == "unack"
    duration = None
    if not undo and args.duration:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            return _fail(f"--for: {exc}", EXIT_USAGE)
        if duration <= timedelta(0):
            return _fail("--for: must be more than 0", EXIT_USAGE)
    settings = _settings()
    loaded = _load(args.config or settings.config, secrets_optional=True)
    eff = effective(settings, loaded.config)
    logs.configure("warning")
    missing = preflight.missing_database(eff.database_url)
    if missing:
        return _fail(missing)
    return asyncio.run(
        ack_command(
            eff.database_url,
            loaded,
            args.fingerprint,
            undo=undo,
            by=getattr(args, "by", None),
            duration=duration,
            comment=getattr(args, "comment", None),
        )
    )


def cmd_prune(args: argparse.Namespace) -> int:
    from app.sweeper.prune import prune_command

    settings = _settings()
    loaded = _load(args.config or settings.config)
    eff = effective(settings, loaded.config)
    logs.configure("warning")
    return asyncio.run(prune_command(eff.database_url, loaded, dry_run=args.dry_run))


def cmd_example_config(args: argparse.Namespace) -> int:
    sys.stdout.write(example_config_text())
    return EXIT_OK


def describe_routes(runtime: CompiledConfig, labels: dict[str, str]) -> dict[str, Any]:
    result = runtime.route(labels)
    runbook = runtime.runbook(labels, {})
    options = result.options
    receivers = []
    for name in result.receivers:
        receivers.append(
            {
                "receiver": name,
                "integrations": [
                    {"integration": i.key, "send_resolved": i.send_resolved}
                    for i in runtime.receivers.get(name, ())
                ],
            }
        )
    flap = options.flap if options else None
    return {
        "labels": labels,
        "routes": [r.path for r in result.routes],
        "receivers": receivers,
        "runbook": {"url": runbook.url, "source": runbook.source},
        "flapping": None
        if flap is None
        else {
            "enabled": flap.enabled,
            "half_life_s": flap.half_life_s,
            "enter_score": flap.enter_score,
            "exit_score": flap.exit_score,
            "max_score": flap.max_score,
        },
        "renotify_interval_s": options.renotify_s if options else None,
        "escalate": [
            {
                "after_s": step.after_s,
                "receiver": step.receiver,
                "integrations": [i.key for i in runtime.receivers.get(step.receiver, ())],
            }
            for step in escalation_steps(result)
        ],
    }


def _print_routes(info: dict[str, Any]) -> None:
    print(", ".join(r["receiver"] for r in info["receivers"]))
    print(f"  routes:   {', '.join(info['routes'])}")
    for r in info["receivers"]:
        for i in r["integrations"]:
            print(f"  {i['integration']:<30} send_resolved={str(i['send_resolved']).lower()}")
    rb = info["runbook"]
    print(f"  runbook:  {rb['url'] or '(none)'} ({rb['source']})")
    flap = info["flapping"]
    if flap is not None:
        state = "on" if flap["enabled"] else "off"
        print(
            f"  flapping: {state}, half-life {flap['half_life_s']:g}s, "
            f"enter {flap['enter_score']:g}, exit {flap['exit_score']:g}, max {flap['max_score']:g}"
        )
    renotify = info["renotify_interval_s"]
    print(f"  renotify: {'never' if not renotify else f'every {renotify:g}s'}")
    steps = info["escalate"]
    if not steps:
        print("  escalate: none")
    for i, step in enumerate(steps):
        print(
            f"  escalate: [{i}] after {format_duration(step['after_s'])} "
            f"unacknowledged -> {step['receiver']}"
        )


def cmd_routes_test(args: argparse.Namespace) -> int:
    settings = _settings()
    runtime = compile_config(_load(args.config or settings.config, secrets_optional=True))
    if args.kind is not None and not args.render:
        print("alertrelay routes test: --kind only applies with --render", file=sys.stderr)
        return EXIT_USAGE
    group = _group_args(args)
    if not args.labels and group is None:
        print(
            "alertrelay routes test: give an alert's labels, --alert or --payload", file=sys.stderr
        )
        return EXIT_USAGE
    if group is not None and not args.render:
        print(
            "alertrelay routes test: --alert and --payload only apply with --render",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.labels:
        labels = _labels(args.labels)
    else:
        assert group is not None
        labels = group[0][0].labels  # the first alert's route is described
    info = describe_routes(runtime, labels)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_routes(info)
    if args.render and group is not None:
        from app.delivery.preview import render_group_requests

        alerts, group_key, group_labels = group
        print()
        print(
            render_group_requests(
                runtime, alerts, group_key=group_key, group_labels=group_labels, kind=args.kind
            )
        )
    elif args.render:
        from app.delivery.preview import render_requests

        annotations = _labels(args.annotation or [])
        print()
        print(render_requests(runtime, labels, annotations, kind=args.kind or "firing"))
    return EXIT_OK


def _group_args(args: argparse.Namespace) -> tuple[list[Any], str, dict[str, str]] | None:
    """The alerts of ``--alert`` (repeated) or ``--payload``, as one group."""
    from app.delivery.preview import PreviewAlert

    annotations = _labels(args.annotation or [])
    if args.payload:
        from app.core.domain import Source
        from app.ingest.wire import PayloadError, parse_webhook
        from app.ops.clock import SystemClock

        try:
            with open(args.payload, "rb") as f:
                raw = f.read()
            parsed = parse_webhook(raw, Source.ALERTMANAGER, SystemClock().now(), 100_000)
        except OSError as exc:
            raise SystemExit(_fail(f"--payload: {exc.strerror or exc}", EXIT_USAGE)) from None
        except PayloadError as exc:
            raise SystemExit(_fail(f"--payload: {exc}", EXIT_USAGE)) from None
        webhook = parsed.webhook
        if not webhook.alerts:
            raise SystemExit(_fail("--payload: the webhook holds no valid alert", EXIT_USAGE))
        alerts = [
            PreviewAlert(a.labels, {**a.annotations, **annotations}, a.status)
            for a in webhook.alerts
        ]
        return alerts, webhook.group_key, webhook.group_labels
    if args.alert:
        alerts = [
            PreviewAlert(_labels([p for p in entry.split(",") if p]), annotations)
            for entry in args.alert
        ]
        return alerts, "", {}
    return None


def cmd_runbook(args: argparse.Namespace) -> int:
    settings = _settings()
    runtime = compile_config(_load(args.config or settings.config, secrets_optional=True))
    runbook = runtime.runbook(_labels(args.labels), {})
    if runbook.url is None:
        print("no runbook (no rule matched and no default)")
        return EXIT_OK
    print(runbook.url)
    print(f"  from {runbook.source}")
    return EXIT_OK


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertrelay",
        description="Durable Alertmanager webhook relay: dedup, flapping, runbooks, delivery.",
    )
    parser.add_argument(
        "--version", action="version", version=f"alertrelay {version_info().version}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run migrations, then serve HTTP and deliver")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument(
        "--host",
        help="listen address (default: $ALERTRELAY_HOST, else server.host, else 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        help="listen port (default: $ALERTRELAY_PORT, else server.port, else 8080)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="deliver the outbox and sweep, without the HTTP server")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dead-letters", help="list dead notifications, or replay them")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--replay", type=int, metavar="ID", help="replay one dead notification")
    group.add_argument("--replay-all", action="store_true", help="replay every dead notification")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("ack", help="acknowledge an alert's current occurrence")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.add_argument("--by", metavar="NAME", help="who acknowledges (default: cli)")
    p.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="expire after this long (e.g. 30m, 2h); default: until it resolves",
    )
    p.add_argument("--comment", metavar="TEXT", help="why, or what is being done")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("unack", help="take back an alert's acknowledgement")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("prune", help="delete history past its retention now")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument(
        "--dry-run", action="store_true", help="only count, per table, what would be deleted"
    )
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("migrate", help="upgrade the database schema to head")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("example-config", help="print the example configuration")
    p.set_defaults(func=cmd_example_config)

    check.add_parser(sub)

    p = sub.add_parser("routes", help="route tools")
    routes_sub = p.add_subparsers(dest="routes_command", required=True)
    t = routes_sub.add_parser("test", help="which receivers an alert with these labels reaches")
    t.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.add_argument(
        "--render", action="store_true", help="print the exact request each integration would send"
    )
    t.add_argument(
        "--kind",
        default=None,
        choices=["firing", "resolved", "flapping", "stable", "reminder", "escalation", "ack"],
        help="which notification to render (needs --render; default firing)",
    )
    t.add_argument(
        "--annotation", action="append", metavar="NAME=VALUE", help="an annotation (repeatable)"
    )
    t.add_argument(
        "--alert",
        action="append",
        metavar="LABEL=VALUE,...",
        help="one alert's labels, comma-separated; repeat for the alerts of one group "
        "(with --render: the grouped message)",
    )
    t.add_argument(
        "--payload",
        metavar="FILE",
        help="an Alertmanager webhook (JSON): render its alerts as the group they are",
    )
    t.add_argument("labels", nargs="*", metavar="LABEL=VALUE")
    t.set_defaults(func=cmd_routes_test)

    p = sub.add_parser("runbook", help="the runbook URL an alert with these labels gets")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("labels", nargs="+", metavar="LABEL=VALUE")
    p.set_defaults(func=cmd_runbook)

    status.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command == "status":  # a monitoring plugin's usage error is UNKNOWN
            return status.usage_error(f"unrecognized arguments: {' '.join(extra)}")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result: int = args.func(args)
    except DatabaseSetupError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return result
