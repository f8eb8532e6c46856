"""The YAML config file: the route tree, receivers, cross-checks, ``load_config``.

Unknown keys are errors; every error is reported with its YAML path, e.g.
``receivers[2].pagerduty_configs[0].routing_key: required``. Validation is
two-phase: the models first (types, required keys, secrets files), then the
cross-references (route receivers exist, thresholds are ordered), so one run
of ``check-config`` lists every problem of a phase at once.
"""

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from app.config import unresolved
from app.config.fields import (
    DeliveryConfig,
    DeliveryOverride,
    Duration,
    FieldError,
    StrictModel,
    check_http_url,
)
from app.config.globals import GlobalConfig
from app.config.oncall import (
    EscalationStepConfig,
    HeartbeatConfig,
    escalation_problems,
    heartbeat_problems,
)
from app.config.sections import (
    AuthConfig,
    DatabaseConfig,
    DedupConfig,
    FlappingConfig,
    FlappingOverride,
    IngestConfig,
    RetentionConfig,
    RunbooksConfig,
    ServerConfig,
    check_matchers,
    quote_value,
)
from app.config.yamlload import YamlError, join_path, load_yaml
from app.notifiers import CONFIG_MODELS
from app.notifiers.base import IntegrationConfig

MiB = 1024 * 1024


class ConfigError(Exception):
    """Every problem found in a config file, each prefixed by its YAML path."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.source = source


_ALERTMANAGER_ONLY_ROUTE_KEYS = (
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "mute_time_intervals",
    "active_time_intervals",
)


class RouteConfig(StrictModel):
    receiver: str | None = None
    matchers: list[str] = []
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    continue_: bool = Field(default=False, alias="continue")
    routes: list["RouteConfig"] = []
    flapping: FlappingOverride | None = None
    renotify_interval: Duration | None = None
    # None: the parent's steps; [] turns escalation off below this route.
    escalate: list[EscalationStepConfig] | None = None

    # Present only to be refused with a reason (see _ALERTMANAGER_ONLY_ROUTE_KEYS).
    group_by: Any = None
    group_wait: Any = None
    group_interval: Any = None
    repeat_interval: Any = None
    mute_time_intervals: Any = None
    active_time_intervals: Any = None

    @field_validator(*_ALERTMANAGER_ONLY_ROUTE_KEYS, mode="before")
    @classmethod
    def _alertmanager_only(cls, value: Any) -> Any:
        raise ValueError("grouping and timing belong to Alertmanager; remove this key here")

    @model_validator(mode="after")
    def _check(self) -> "RouteConfig":
        check_matchers(self.matchers)
        for name, value in self.match_re.items():
            check_matchers([f"{name}=~{quote_value(value)}"], "match_re")
        return self

    def matcher_strings(self) -> list[str]:
        """All matchers, with the deprecated ``match``/``match_re`` maps folded in."""
        out = list(self.matchers)
        out += [f"{k}={quote_value(v)}" for k, v in sorted(self.match.items())]
        out += [f"{k}=~{quote_value(v)}" for k, v in sorted(self.match_re.items())]
        return out


class _Receiver(StrictModel):
    name: str = Field(min_length=1)
    delivery: DeliveryOverride | None = None

    def integrations(self) -> Iterator[tuple[str, str, int, IntegrationConfig]]:
        """Yield (config key, integration name, index, config) in delivery order."""
        for key, (name, _model) in CONFIG_MODELS.items():
            entries: list[IntegrationConfig] = getattr(self, key)
            for index, entry in enumerate(entries):
                yield key, name, index, entry


# A receiver lists any of the registered integrations: one `<name>_configs`
# list per entry of the registry (app/notifiers/__init__.py), in its order.
if TYPE_CHECKING:
    ReceiverConfig = _Receiver
else:
    ReceiverConfig = create_model(
        "ReceiverConfig",
        __base__=_Receiver,
        **{key: (list[model], []) for key, (_name, model) in CONFIG_MODELS.items()},
    )


class Config(StrictModel):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    ingest: IngestConfig = IngestConfig()
    auth: AuthConfig | None = None
    dedup: DedupConfig = DedupConfig()
    flapping: FlappingConfig = FlappingConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    runbooks: RunbooksConfig = RunbooksConfig()
    retention: RetentionConfig = RetentionConfig()
    global_: GlobalConfig = Field(default=GlobalConfig(), alias="global")
    # The URL people reach alertrelay at: acknowledge links point there.
    # ``global.external_url`` (older configs) is read when this is unset.
    external_url: str | None = None
    route: RouteConfig
    receivers: list[ReceiverConfig] = Field(min_length=1)
    heartbeats: list[HeartbeatConfig] = []

    @model_validator(mode="before")
    @classmethod
    def _share_external_url(cls, data: Any) -> Any:
        # One URL for people: the top-level key also gives PagerDuty its
        # client_url, as global.external_url (the older place) does.
        if isinstance(data, dict) and isinstance(data.get("external_url"), str):
            g = data.get("global")
            if g is None:
                data = {**data, "global": {"external_url": data["external_url"]}}
            elif isinstance(g, dict) and g.get("external_url") is None:
                data = {**data, "global": {**g, "external_url": data["external_url"]}}
        return data

    @model_validator(mode="after")
    def _check_external_url(self) -> "Config":
        if self.external_url is not None:
            check_http_url(self.external_url, "external_url")
        return self

    def public_url(self) -> str | None:
        """Where people reach alertrelay (no trailing slash), or None."""
        url = self.external_url or self.global_.external_url
        return url.rstrip("/") if url else None

    def ack_links(self) -> tuple[str, bytes] | None:
        """(public URL, link secret) when acknowledge links are on, else None."""
        url = self.public_url()
        secret = self.auth.link_secret if self.auth is not None else None
        if not url or secret is None:
            return None
        return url, secret.get_secret_value().encode()

    def receiver(self, name: str) -> ReceiverConfig | None:
        for r in self.receivers:
            if r.name == name:
                return r
        return None


BUILTIN_CONFIG = """\
# alertrelay's built-in config: every notification is one JSON line on stdout,
# with a runbook link per alert name (an alert's runbook_url annotation wins).
runbooks:
  default: "https://runbooks.example.com/{{ labels.alertname | lower }}"
route:
  receiver: log
receivers:
  - name: log
    log_configs: [{}]
"""


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: str  # the file path, or "built-in"
    version: str  # sha256 of the file text, shortened; changes on every edit
    # Secrets left as placeholders (loaded with secrets_optional): never sent.
    unresolved: tuple[str, ...] = ()

    def summary(self) -> str:
        c = self.config
        integrations = sum(1 for r in c.receivers for _ in r.integrations())
        routes = _count_routes(c.route)
        return (
            f"{self.source}: OK, {len(c.receivers)} receivers, {integrations} integrations, "
            f"{routes} routes, {len(c.runbooks.rules)} runbook rules (version {self.version})"
        )


def _count_routes(route: RouteConfig) -> int:
    return 1 + sum(_count_routes(r) for r in route.routes)


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown key",
}

_AM_DOC = "see docs/alertmanager-config.md"
# Keys an operator pastes from alertmanager.yml, keyed by (section, key): the
# error says what alertrelay uses instead. Section "" is the top level,
# "receiver" a receiver, "integration" any *_configs entry.
_ALERTMANAGER_KEYS = {
    ("", "templates"): "Alertmanager's Go templates do not apply: alertrelay's templates are "
    f"Jinja2, in each integration's title and text ({_AM_DOC})",
    ("", "inhibit_rules"): "inhibition stays in Alertmanager, which runs before alertrelay: "
    f"keep inhibit_rules in alertmanager.yml ({_AM_DOC})",
    ("", "time_intervals"): "muting by time stays in Alertmanager: keep time_intervals in "
    f"alertmanager.yml ({_AM_DOC})",
    ("", "mute_time_intervals"): "muting by time stays in Alertmanager: keep "
    f"mute_time_intervals in alertmanager.yml ({_AM_DOC})",
    ("global", "resolve_timeout"): "alertrelay takes each alert's endsAt as Alertmanager "
    f"sends it; resolve_timeout configures Alertmanager: keep it there ({_AM_DOC})",
    ("global", "slack_api_url"): "set api_url (or api_url_file) on each slack_configs "
    f"entry ({_AM_DOC})",
    ("global", "slack_api_url_file"): f"set api_url_file on each slack_configs entry ({_AM_DOC})",
    ("global", "opsgenie_api_key"): f"set api_key on each opsgenie_configs entry ({_AM_DOC})",
    ("global", "http_config"): "for a proxy, set global.proxy_url; credentials go in each "
    f"integration's own key ({_AM_DOC})",
    ("integration", "http_config"): "credentials go in the integration's own key (for "
    "webhook_configs: token or token_file, sent as a bearer token); a proxy is "
    f"global.proxy_url ({_AM_DOC})",
}
_INTEGRATION_LISTS = frozenset(CONFIG_MODELS)


def _alertmanager_hint(loc: tuple[str | int, ...]) -> str | None:
    if not loc:
        return None
    key = str(loc[-1])
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    if not parents:
        section = ""
    elif parents[-1] == "global":
        section = "global"
    elif parents[-1] in _INTEGRATION_LISTS:
        section = "integration"
    else:
        section = parents[-1]
    return _ALERTMANAGER_KEYS.get((section, key))


def _format_validation(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        loc: tuple[str | int, ...] = tuple(err["loc"])
        message = _MESSAGES.get(err["type"], err["msg"])
        if err["type"] == "extra_forbidden":
            message = _alertmanager_hint(loc) or message
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            # Raised by a model validator about one of its fields, or by the
            # field's own validator (whose location already names it).
            if not loc or loc[-1] != cause.field:
                loc = (*loc, cause.field)
            message = cause.message
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append(f"{join_path(loc)}: {message}")
    return out


def _raw_reference_errors(data: Any) -> list[str]:
    """Routes naming a receiver that is not defined, read from the unvalidated document."""
    if not isinstance(data, dict) or not isinstance(data.get("receivers"), list):
        return []
    names = {r.get("name") for r in data["receivers"] if isinstance(r, dict)}
    errors: list[str] = []

    def walk(route: Any, path: str) -> None:
        if not isinstance(route, dict):
            return
        receiver = route.get("receiver")
        if isinstance(receiver, str) and receiver not in names:
            errors.append(f"{path}.receiver: no receiver named {receiver!r}")
        children = route.get("routes")
        if isinstance(children, list):
            for i, child in enumerate(children):
                walk(child, f"{path}.routes[{i}]")

    walk(data.get("route"), "route")
    return errors


def _walk_routes(
    route: RouteConfig, path: str, receiver: str = ""
) -> Iterator[tuple[RouteConfig, str, str]]:
    """Every route with its path and its effective (possibly inherited) receiver."""
    receiver = route.receiver or receiver
    yield route, path, receiver
    for i, child in enumerate(route.routes):
        yield from _walk_routes(child, f"{path}.routes[{i}]", receiver)


def cross_check(config: Config) -> list[str]:
    """Reference and ordering checks that span sections."""
    errors: list[str] = []
    names: dict[str, int] = {}
    for i, receiver in enumerate(config.receivers):
        if receiver.name in names:
            errors.append(
                f"receivers[{i}].name: duplicate receiver {receiver.name!r} "
                f"(also receivers[{names[receiver.name]}])"
            )
        names.setdefault(receiver.name, i)

    root = config.route
    if root.receiver is None:
        errors.append("route.receiver: required on the root route (it is the default receiver)")
    if root.matcher_strings():
        errors.append(
            "route.matchers: the root route must match everything; move matchers to a child"
        )
    for route, path, own in _walk_routes(root, "route"):
        if route.receiver is not None and route.receiver not in names:
            errors.append(f"{path}.receiver: no receiver named {route.receiver!r}")
        for i, step in enumerate(route.escalate or []):
            if step.receiver not in names:
                errors.append(f"{path}.escalate[{i}].receiver: no receiver named {step.receiver!r}")
        errors += [f"{path}.escalate{e}" for e in escalation_problems(route.escalate or [], own)]
        merged = config.flapping.merged(route.flapping)
        if route.flapping is not None:
            errors += [f"{path}.flapping.{f}: {m}" for f, m in merged.problems()]

    for i, hb in enumerate(config.heartbeats):
        if hb.receiver is not None and hb.receiver not in names:
            errors.append(f"heartbeats[{i}].receiver: no receiver named {hb.receiver!r}")
    errors += heartbeat_problems(config.heartbeats)
    errors += [f"flapping.{f}: {m}" for f, m in config.flapping.problems()]
    errors += [f"delivery.{f}: {m}" for f, m in config.delivery.problems()]

    g = config.global_
    for i, receiver in enumerate(config.receivers):
        rpath = f"receivers[{i}]"
        if receiver.delivery is not None:
            merged_d = config.delivery.merged(receiver.delivery)
            errors += [f"{rpath}.delivery.{f}: {m}" for f, m in merged_d.problems()]
        for key, _name, j, entry in receiver.integrations():
            ipath = f"{rpath}.{key}[{j}]"
            if entry.delivery is not None:
                merged_d = config.delivery.merged(receiver.delivery, entry.delivery)
                errors += [f"{ipath}.delivery.{f}: {m}" for f, m in merged_d.problems()]
            errors += [f"{ipath}.{f}: {m}" for f, m in entry.cross_check(g)]
    return errors


def parse_config(
    text: str,
    source: str,
    env: Mapping[str, str] | None = None,
    *,
    secrets_optional: bool = False,
) -> LoadedConfig:
    """Validate config ``text``; raise :class:`ConfigError` with every problem.

    With ``secrets_optional`` (commands that only route), secrets that cannot
    be resolved are listed in ``LoadedConfig.unresolved`` instead of failing."""
    optional: AbstractContextManager[list[str]] = (
        unresolved.secrets_optional() if secrets_optional else nullcontext([])
    )
    with optional as missing:
        try:
            data = load_yaml(text, os.environ if env is None else env)
        except YamlError as exc:
            raise ConfigError(exc.errors, source) from None
        try:
            config = Config.model_validate(data)
        except ValidationError as exc:
            # The references are checked on the raw document too, so one run
            # lists a typo'd receiver beside a bad template.
            errors = _format_validation(exc) + _raw_reference_errors(data)
            raise ConfigError(errors, source) from None
    errors = cross_check(config)
    if errors:
        raise ConfigError(errors, source)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return LoadedConfig(config, source, version, tuple(missing))


def load_config(
    path: str | None, env: Mapping[str, str] | None = None, *, secrets_optional: bool = False
) -> LoadedConfig:
    """Load ``path``, or the built-in config when ``path`` is None."""
    if path is None:
        return parse_config(BUILTIN_CONFIG, "built-in", env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], path) from None
    except UnicodeDecodeError:
        raise ConfigError([f"cannot read {path}: not UTF-8 text"], path) from None
    return parse_config(text, path, env, secrets_optional=secrets_optional)


def example_config_text() -> str:
    return (Path(__file__).parent.parent / "examples" / "alertrelay.yml").read_text(
        encoding="utf-8"
    )
