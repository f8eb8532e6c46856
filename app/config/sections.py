"""The config file's simple sections: server, ingest, database, auth, retention,
dedup, flapping and runbooks (their models and defaults; see ``model`` for the
route tree, receivers and loading)."""

import functools
import hmac
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from app.config.fields import (
    Duration,
    FieldError,
    StrictModel,
    secret_from,
)
from app.config.templating import TemplateSyntaxError, text_env
from app.core.matchers import MatcherError, parse_matchers

MiB = 1024 * 1024


def quote_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def check_matchers(entries: list[str], field: str = "matchers") -> None:
    for i, entry in enumerate(entries):
        try:
            parse_matchers(entry)
        except MatcherError as exc:
            raise FieldError(f"{field}[{i}]", str(exc)) from None


def check_template(source: str, field: str) -> None:
    try:
        text_env().from_string(source)
    except TemplateSyntaxError as exc:
        raise FieldError(field, f"template error: {exc.message} (line {exc.lineno})") from None


# --------------------------------------------------------------------------
# Loading


MiB = 1024 * 1024


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
    # Signs the one-click acknowledge links notifications carry (with the
    # top-level external_url). Holding it lets anyone mint links: keep it as
    # secret as the admin token.
    link_secret: SecretStr | None = None
    # How long an acknowledge link stays valid after its notification was
    # decided (it also stops working when its occurrence ends).
    link_ttl: Duration = timedelta(days=7)

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        data = _credential(data, "webhook_token")
        data = _credential(data, "admin_token")
        data = _credential(data, "link_secret")
        return data

    @model_validator(mode="after")
    def _check_link(self) -> "AuthConfig":
        if self.link_secret is not None and len(self.link_secret.get_secret_value()) < 16:
            # A short secret can be guessed offline from one link.
            raise FieldError("link_secret", "too short: use at least 16 characters (32 random)")
        if self.link_ttl < timedelta(minutes=1):
            raise FieldError("link_ttl", "must be at least 1m")
        return self

    # Built once per loaded config (the model is frozen): every webhook
    # request asks for them, twice. Not a field, so never dumped or compared.
    @functools.cached_property
    def webhook_secrets(self) -> tuple[bytes, ...]:
        tokens = [self.webhook_token, *self.webhook_tokens]
        return tuple(t.get_secret_value().encode() for t in tokens if t is not None)

    def has_webhook_credential(self) -> bool:
        return bool(self.webhook_secrets) or self.basic_auth is not None

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
        check_matchers(self.matchers)
        check_template(self.url, "url")
        return self


class RunbooksConfig(StrictModel):
    default: str | None = None
    rules: list[RunbookRuleConfig] = []

    @model_validator(mode="after")
    def _check(self) -> "RunbooksConfig":
        if self.default is not None:
            check_template(self.default, "default")
        return self


# Alertmanager route keys that make no sense here: grouping and timing are
# Alertmanager's job upstream. Named explicitly so the error says why.
