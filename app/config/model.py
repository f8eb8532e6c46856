"""The YAML config file (README.md, "Configuration"): strict models, cross-checks, ``load_config``.

Unknown keys are errors; every error is reported with its YAML path, e.g.
``receivers[2].pagerduty_configs[0].routing_key: required``. Validation is
two-phase: the models first (types, required keys, secrets files), then the
cross-references (route receivers exist, thresholds are ordered), so one run
of ``check-config`` lists every problem of a phase at once.
"""

import hashlib
import hmac
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
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
    secret_from,
)
from app.config.globals import GlobalConfig
from app.config.templating import TemplateSyntaxError, text_env
from app.config.yamlload import YamlError, join_path, load_yaml
from app.core.matchers import MatcherError, parse_matchers
from app.notifiers import CONFIG_MODELS
from app.notifiers.base import IntegrationConfig

MiB = 1024 * 1024


class ConfigError(Exception):
    """Every problem found in a config file, each prefixed by its YAML path."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.source = source


_INGEST_S_PER_ALERT = 0.0005


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_size: int = Field(default=8 * MiB, ge=1024)
    max_alerts_per_request: int = Field(default=10_000, ge=1)
    # How long a webhook waits for its batch to commit before answering 503;
    # well under Alertmanager's 10 s minimum flush budget.
    ingest_timeout: Duration = timedelta(seconds=5)
    log_level: str = "info"
    # One info line per HTTP request (method, path, status, ms, client);
    # ALERTRELAY_ACCESS_LOG=1 turns it on too.
    access_log: bool = False

    def ingest_deadline_s(self, alerts: int) -> float:
        """``ingest_timeout`` plus 0.5 ms per alert in the webhook.

        A large group is work, not a busy database: without the allowance a
        slow disk answers a 10,000-alert group 503 every time, and
        Alertmanager retries the same group forever. At the default
        maximum the total stays at Alertmanager's 10 s minimum budget.
        """
        return self.ingest_timeout.total_seconds() + _INGEST_S_PER_ALERT * alerts


class IngestConfig(StrictModel):
    """``ingest:``: what the webhook endpoints tolerate from senders."""

    # A startsAt/endsAt further ahead of our clock than this is treated as a
    # wrong clock: ordered as "now" and flagged, so it cannot outrank later
    # real events of the alert.
    max_clock_skew: Duration = timedelta(minutes=5)
    # The whole body must arrive within this, or the answer is 408: a client
    # that announces more than it sends cannot hold a connection forever.
    body_timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _check(self) -> "IngestConfig":
        if self.body_timeout.total_seconds() <= 0:
            raise FieldError("body_timeout", "must be positive")
        return self


class DatabaseConfig(StrictModel):
    url: str = "sqlite:///alertrelay.db"
    # SQLite busy timeout and PostgreSQL lock/statement wait before a 503.
    busy_timeout: Duration = timedelta(seconds=5)
    pool_size: int = Field(default=5, ge=1)


def _credential(data: Any, name: str, *, required: bool = False) -> Any:
    """A configured credential never resolves to nothing (auth never fails open).

    ``webhook_token: ${TOKEN}`` with TOKEN set to "" would otherwise read as
    "no token" and open the endpoint; an empty ``*_file`` is already refused
    by :func:`secret_from`.
    """
    if not isinstance(data, dict):
        return data
    value = data.get(name)
    if name in data and value is not None and (not isinstance(value, str) or not value.strip()):
        raise FieldError(
            name, "is empty: a configured credential must have a value (is its variable set?)"
        )
    return secret_from(data, name, required=required)


def _not_empty(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(
            "is empty: a configured credential must have a value (is its variable set?)"
        )
    return value


class BasicAuthConfig(StrictModel):
    username: str
    password: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return _credential(data, "password", required=True)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: a configured credential must have a value")
        return value

    def matches(self, decoded: bytes) -> bool:
        return hmac.compare_digest(
            decoded, f"{self.username}:{self.password.get_secret_value()}".encode()
        )


class NamedUser(StrictModel):
    """One person or script with its own credential, named in the audit log.

    It authenticates with its bearer ``token``, or with basic auth as
    ``name`` and ``password``.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    token: SecretStr | None = None
    password: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        data = _credential(data, "token")
        data = _credential(data, "password")
        if isinstance(data, dict) and data.get("token") is None and data.get("password") is None:
            raise FieldError("token", "required (or token_file, password, password_file)")
        return data


class ReadAuthConfig(StrictModel):
    """``auth.read``: the credential every read needs (the admin's works too)."""

    token: SecretStr | None = None
    basic_auth: BasicAuthConfig | None = None
    users: list[NamedUser] = []
    # /metrics is read by Prometheus, which may scrape without credentials.
    metrics: bool = False

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        data = _credential(data, "token")
        if isinstance(data, dict) and not (
            data.get("token") or data.get("basic_auth") or data.get("users")
        ):
            raise FieldError("token", "required (or token_file, basic_auth or users)")
        return data


class AuthConfig(StrictModel):
    """Webhook credentials (bearer tokens or basic auth), the admin token, reads.

    ``webhook_tokens`` lists extra accepted tokens so a token can be rotated
    without a window where Alertmanager is refused. ``admin_users`` are named
    admin credentials, so the audit log can say who acted.
    """

    webhook_token: SecretStr | None = None
    webhook_tokens: list[Annotated[SecretStr, BeforeValidator(_not_empty)]] = []
    basic_auth: BasicAuthConfig | None = None
    admin_token: SecretStr | None = None
    admin_users: list[NamedUser] = []
    read: ReadAuthConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        data = _credential(data, "webhook_token")
        data = _credential(data, "admin_token")
        return data

    def webhook_secrets(self) -> list[bytes]:
        tokens = [self.webhook_token, *self.webhook_tokens]
        return [t.get_secret_value().encode() for t in tokens if t is not None]

    def has_webhook_credential(self) -> bool:
        return bool(self.webhook_secrets()) or self.basic_auth is not None

    def has_admin_credential(self) -> bool:
        return self.admin_token is not None or bool(self.admin_users)


class RetentionConfig(StrictModel):
    """How long history is kept; the sweeper prunes past it in small batches."""

    resolved_alerts: Duration = timedelta(days=30)  # with their transitions
    transitions: Duration = timedelta(days=90)
    notifications: Duration = timedelta(days=30)  # sent ones
    dead_letters: Duration = timedelta(days=90)
    delivery_attempts: Duration = timedelta(days=14)
    quarantine: Duration = timedelta(days=14)
    audit: Duration = timedelta(days=365)

    @model_validator(mode="after")
    def _check(self) -> "RetentionConfig":
        for name, value in self:
            # A typo such as `0` or `5m` would otherwise delete what people
            # are still looking at.
            if value < timedelta(hours=1):
                raise FieldError(name, "must be at least 1h")
        return self


class DedupConfig(StrictModel):
    renotify_interval: Duration = timedelta(hours=4)


class FlappingOverride(StrictModel):
    enabled: bool | None = None
    half_life: Duration | None = None
    enter_score: float | None = None
    exit_score: float | None = None
    max_score: float | None = None


class FlappingConfig(StrictModel):
    enabled: bool = True
    half_life: Duration = timedelta(minutes=30)
    enter_score: float = 4.0
    exit_score: float = 1.5
    max_score: float = 8.0
    sweep_interval: Duration = timedelta(seconds=30)

    def merged(self, override: FlappingOverride | None) -> "FlappingConfig":
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.half_life.total_seconds() <= 0:
            out.append(("half_life", "must be positive"))
        if self.sweep_interval.total_seconds() <= 0:
            out.append(("sweep_interval", "must be positive"))
        if not 0 < self.exit_score < self.enter_score:
            out.append(("exit_score", "must be above 0 and below enter_score"))
        if self.max_score < self.enter_score:
            out.append(("max_score", "must be at least enter_score"))
        return out


class RunbookRuleConfig(StrictModel):
    matchers: list[str]
    url: str

    @model_validator(mode="after")
    def _check(self) -> "RunbookRuleConfig":
        _check_matchers(self.matchers)
        _check_template(self.url, "url")
        return self


class RunbooksConfig(StrictModel):
    default: str | None = None
    rules: list[RunbookRuleConfig] = []

    @model_validator(mode="after")
    def _check(self) -> "RunbooksConfig":
        if self.default is not None:
            _check_template(self.default, "default")
        return self


# Alertmanager route keys that make no sense here: grouping and timing are
# Alertmanager's job upstream. Named explicitly so the error says why.
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
        _check_matchers(self.matchers)
        for name, value in self.match_re.items():
            _check_matchers([f"{name}=~{_quote(value)}"], "match_re")
        return self

    def matcher_strings(self) -> list[str]:
        """All matchers, with the deprecated ``match``/``match_re`` maps folded in."""
        out = list(self.matchers)
        out += [f"{k}={_quote(v)}" for k, v in sorted(self.match.items())]
        out += [f"{k}=~{_quote(v)}" for k, v in sorted(self.match_re.items())]
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
    route: RouteConfig
    receivers: list[ReceiverConfig] = Field(min_length=1)

    def receiver(self, name: str) -> ReceiverConfig | None:
        for r in self.receivers:
            if r.name == name:
                return r
        return None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _check_matchers(entries: list[str], field: str = "matchers") -> None:
    for i, entry in enumerate(entries):
        try:
            parse_matchers(entry)
        except MatcherError as exc:
            raise FieldError(f"{field}[{i}]", str(exc)) from None


def _check_template(source: str, field: str) -> None:
    try:
        text_env().from_string(source)
    except TemplateSyntaxError as exc:
        raise FieldError(field, f"template error: {exc.message} (line {exc.lineno})") from None


# --------------------------------------------------------------------------
# Loading


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


def _walk_routes(route: RouteConfig, path: str) -> Iterator[tuple[RouteConfig, str]]:
    yield route, path
    for i, child in enumerate(route.routes):
        yield from _walk_routes(child, f"{path}.routes[{i}]")


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
    for route, path in _walk_routes(root, "route"):
        if route.receiver is not None and route.receiver not in names:
            errors.append(f"{path}.receiver: no receiver named {route.receiver!r}")
        merged = config.flapping.merged(route.flapping)
        if route.flapping is not None:
            errors += [f"{path}.flapping.{f}: {m}" for f, m in merged.problems()]

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
