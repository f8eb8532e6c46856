"""What every integration shares: its config fields, the notifier contract, redaction.

An integration module holds its config model and its notifier, nothing else
(style rule 1). The contract the delivery loop relies on lives here.
"""

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator, model_validator

from app.config.fields import DeliveryOverride, FieldError, StrictModel
from app.config.templating import TemplateSyntaxError, text_env

if TYPE_CHECKING:
    import httpx

    from app.config.globals import GlobalConfig
    from app.core.message import Message
    from app.core.ratelimit import RateLimit
    from app.ops.clock import Clock


class RateLimitConfig(StrictModel):
    """``rate_limit:`` of an integration; ``per_second: 0`` turns limiting off."""

    per_second: float = Field(ge=0)
    burst: int = Field(default=1, ge=1)


class IntegrationConfig(StrictModel):
    """Keys every ``*_configs`` entry accepts.

    ``send_resolved`` defaults per integration (true, but false for email as
    in Alertmanager). ``title`` and ``text`` are optional Jinja2 overrides of
    the default message; they are compiled at load so a typo fails
    ``check-config`` instead of a 3 a.m. delivery.
    """

    send_resolved_default: ClassVar[bool] = True
    # Chat and email are read by people: one message per Alertmanager group
    # and change. Incident tools are state machines: one event per alert.
    grouping_default: ClassVar[Literal["group", "alert"]] = "alert"
    secret_fields: ClassVar[tuple[str, ...]] = ()

    # Integrations whose sink can edit a message it posted set this; the
    # others refuse ``update_message: true`` with a message that says where
    # it works.
    can_update_message: ClassVar[bool] = False

    send_resolved: bool | None = None
    grouping: Literal["group", "alert"] | None = None
    # Alerts listed by name in one grouped message; the rest are counted
    # ("and N more") with a link to the console.
    max_alerts_per_message: int = Field(default=20, ge=1, le=1000)
    update_message: bool = False
    delivery: DeliveryOverride | None = None
    rate_limit: RateLimitConfig | None = None
    title: str | None = None
    text: str | None = None

    def cross_check(self, g: "GlobalConfig") -> list[tuple[str, str]]:
        """Problems that need the ``global:`` section too, as (field, message)."""
        return []

    @model_validator(mode="after")
    def _update_message_possible(self) -> "IntegrationConfig":
        # Integrations that can edit narrow this down (a Slack webhook URL cannot).
        if self.update_message and not self.can_update_message:
            raise FieldError("update_message", UPDATE_MESSAGE_WHERE)
        return self

    @field_validator("title", "text")
    @classmethod
    def _template_compiles(cls, source: str | None) -> str | None:
        # One validator per field, so a bad title does not hide a bad text.
        if source is None:
            return source
        try:
            text_env().from_string(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"template error: {exc.message} (line {exc.lineno})") from None
        return source

    @property
    def effective_grouping(self) -> Literal["group", "alert"]:
        return self.grouping_default if self.grouping is None else self.grouping

    @property
    def effective_send_resolved(self) -> bool:
        return self.send_resolved_default if self.send_resolved is None else self.send_resolved

    def secret_values(self) -> list[str]:
        """The secret strings this integration holds, for redaction."""
        out: list[str] = []
        for name in self.secret_fields:
            value: Any = getattr(self, name, None)
            if value is not None:
                out.append(value.get_secret_value())
        return [v for v in out if v]


UPDATE_MESSAGE_WHERE = (
    "this integration cannot edit a message it sent; update_message works with "
    "slack_configs (Web API: api_url .../chat.postMessage with a bot token), "
    "discord_configs, and mattermost_configs (REST API: api_url .../api/v4/posts "
    "with a token and channel_id)"
)


class DeliveryError(Exception):
    """A send that did not succeed.

    ``retryable`` decides between another attempt (connection errors,
    timeouts, 408, 429, 5xx) and the dead-letter queue (any other 4xx, a
    redirect, an invalid request). ``retry_after`` is the sink's own wish in
    seconds, when it said one. The message must never contain a secret; the
    delivery loop scrubs it again with :func:`redact` before storing it.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class MessageGone(DeliveryError):
    """The message a stored reference names is gone (deleted in the chat).

    Raised by :meth:`Referencing.edit`; the delivery attempt then posts a
    new message and keeps its reference instead.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message, retryable=False, status_code=status_code)


# What a sink answered when a message was posted, enough to edit it or to
# reply in its thread: Slack {"channel", "ts"}, Discord {"message_id"},
# Mattermost {"post_id"}. Never a secret: it is stored and shown.
MessageRef = dict[str, str]


class MessageMode(enum.StrEnum):
    EDIT = "edit"  # later notifications of a message edit it (update_message: true)
    THREAD = "thread"  # later notifications reply in its thread


@dataclass(frozen=True)
class BuildContext:
    """What a notifier factory gets besides its own config."""

    global_config: "GlobalConfig"
    http: "httpx.AsyncClient"
    clock: "Clock"
    version: str = "dev"


@dataclass(frozen=True)
class Prepared:
    """The exact request an integration sends for a message.

    For HTTP integrations: method, URL, headers and body. For email: method
    ``SMTP``, an ``smtp://host:port`` URL, the message headers and the whole
    message. ``alertrelay routes test --render`` prints it with secrets
    redacted; ``send`` sends it.
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class Notifier(Protocol):
    """One configured integration, ready to send.

    ``send`` raises :class:`DeliveryError` on failure and returns an optional
    note for the delivery log (for example why nothing needed sending).
    ``prepare`` builds, without sending, what ``send`` would send.
    ``destination`` names the remote endpoint without revealing it (rate
    limits and isolation are per destination); ``rate_limit`` is the
    service's published limit (an integration's ``rate_limit:`` overrides
    it); ``secrets`` lists what must never be logged.
    """

    def destination(self) -> str: ...

    def secrets(self) -> list[str]: ...

    def rate_limit(self) -> "RateLimit | None": ...

    def prepare(self, message: "Message") -> Prepared: ...

    async def send(self, message: "Message") -> str | None: ...


@runtime_checkable
class Referencing(Protocol):
    """A notifier that can post a message and then edit it, or reply in its thread.

    ``message_mode`` is None when this integration's config asks for
    neither (the notifier is then used through ``send`` alone). ``post``
    returns the new message's reference; with ``thread`` it replies in the
    thread of that message. ``edit`` replaces the message's content and
    raises :class:`MessageGone` when it no longer exists. The ``prepare_*``
    methods build the same requests without sending them.
    """

    def message_mode(self) -> MessageMode | None: ...

    def prepare_post(self, message: "Message", thread: MessageRef | None) -> Prepared: ...

    def prepare_edit(self, message: "Message", ref: MessageRef) -> Prepared: ...

    async def post(self, message: "Message", thread: MessageRef | None) -> MessageRef: ...

    async def edit(self, message: "Message", ref: MessageRef) -> None: ...


def destination_id(*parts: str) -> str:
    """A stable, non-reversible name for a destination (URL, key, host)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def secret_variants(secret: str) -> list[str]:
    """The forms a secret may take in an error: whole, and a URL's path and query parts."""
    out = {secret}
    if "://" in secret:
        parts = urlsplit(secret)
        for piece in (parts.path, parts.query, parts.path + "?" + parts.query):
            if len(piece) >= 6:
                out.add(piece)
        for segment in parts.path.split("/"):
            if len(segment) >= 6:
                out.add(segment)
        for _, value in parse_qsl(parts.query, keep_blank_values=False):
            if len(value) >= 6:
                out.add(value)
    return sorted(out, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """Replace every form of every secret in ``text``."""
    for secret in secrets:
        for variant in secret_variants(secret):
            if variant and variant in text:
                text = text.replace(variant, "<redacted>")
    return text
