"""Building blocks of the strict configuration models.

Every config model forbids unknown keys. A secret may be given inline or as
``<name>_file`` (read once at load, whitespace-trimmed); it is held as a
``SecretStr`` so it never prints. Errors that concern one field of a model
raise :class:`FieldError`, so the loader can name the full YAML path.
"""

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    field_validator,
)

from app.config import unresolved


class FieldError(ValueError):
    """A validation error about one named field of the model being validated."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingSecret:
    """Stands in for a required secret given neither inline nor as a file.

    Reported by a field validator rather than by the model validator that
    reads secrets, so the model's other fields are still checked and every
    error shows in one pass.
    """

    def __init__(self, message: str) -> None:
        self.message = message


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _missing_secret(cls, value: Any) -> Any:
        if isinstance(value, MissingSecret):
            raise ValueError(value.message)
        return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}


def parse_duration(value: Any) -> timedelta:
    """Parse Prometheus-style durations: ``30s``, ``1h30m``, ``500ms``, ``0``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    text = value.strip()
    if text == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use forms like 30s, 5m, 1h30m")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def read_secret_file(path: str) -> str:
    """Read a ``*_file`` secret; the message never contains the file's content."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: not UTF-8 text") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def secret_from(
    data: dict[str, Any], name: str, *, required: bool, what: str = ""
) -> dict[str, Any]:
    """Fold ``<name>_file`` into ``<name>`` in raw model input.

    Used from ``model_validator(mode="before")`` so the rest of the model
    sees one ``SecretStr`` field whichever way the secret was given.
    """
    file_key = f"{name}_file"
    inline = data.get(name)
    path = data.get(file_key)
    data = {k: v for k, v in data.items() if k != file_key}
    if inline not in (None, "") and path not in (None, ""):
        raise FieldError(name, f"set either {name} or {file_key}, not both")
    if path not in (None, ""):
        if not isinstance(path, str):
            raise FieldError(file_key, "must be a file path")
        try:
            data = {**data, name: read_secret_file(path)}
        except ValueError as exc:
            if not unresolved.note(f"{file_key}: {exc}"):
                raise FieldError(file_key, str(exc)) from None
            data = {**data, name: unresolved.PLACEHOLDER}
    elif inline in (None, ""):
        missing = MissingSecret(f"required{what} (or {file_key})") if required else None
        data = {**data, name: missing}
    return data


def check_http_url(value: str, field: str, *, secret: bool = False) -> str:
    """Require an absolute http(s) URL; never echo a secret URL in the error."""
    shown = "the URL" if secret else repr(value)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise FieldError(field, f"{shown} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FieldError(field, f"{shown} must be an absolute http:// or https:// URL")
    return value


def secret_value(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


class DeliveryOverride(StrictModel):
    """``delivery:`` under a receiver or an integration: any subset of the global keys."""

    max_attempts: int | None = None
    max_age: Duration | None = None
    initial_backoff: Duration | None = None
    max_backoff: Duration | None = None
    max_retry_after: Duration | None = None
    timeout: Duration | None = None
    lease: Duration | None = None
    concurrency: int | None = None


class DeliveryConfig(StrictModel):
    """The top-level ``delivery:`` section with its defaults."""

    max_attempts: int = 10
    max_age: Duration = timedelta(hours=1)
    initial_backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    max_retry_after: Duration = timedelta(minutes=10)
    timeout: Duration = timedelta(seconds=10)
    lease: Duration = timedelta(seconds=60)
    # Sends in flight per process; a receiver or integration value caps that
    # destination alone, so one slow sink cannot take every slot.
    concurrency: int = 16
    # SIGTERM: the longest sends in flight get to finish before they are cut
    # off and handed back (their own deadline plus 1 s, at most this). Keep it
    # under the orchestrator's kill timeout. Process-wide: not overridable.
    shutdown_grace: Duration = timedelta(seconds=30)

    def merged(self, *overrides: "DeliveryOverride | None") -> "DeliveryConfig":
        values = self.model_dump()
        for override in overrides:
            if override is not None:
                values.update(override.model_dump(exclude_none=True))
        return DeliveryConfig.model_validate(values)

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field checks, as (field, message) pairs."""
        out: list[tuple[str, str]] = []
        if self.max_attempts < 1:
            out.append(("max_attempts", "must be at least 1"))
        if self.concurrency < 1:
            out.append(("concurrency", "must be at least 1"))
        if self.timeout.total_seconds() <= 0:
            out.append(("timeout", "must be positive"))
        if self.initial_backoff > self.max_backoff:
            out.append(("initial_backoff", "must not exceed max_backoff"))
        # A lease shorter than the send deadline would hand a row to a second
        # worker while the first is still legitimately sending it.
        if self.lease < self.timeout * 2:
            out.append(("lease", "must be at least twice delivery.timeout"))
        if self.max_age.total_seconds() <= 0:
            out.append(("max_age", "must be positive"))
        if self.shutdown_grace.total_seconds() < 0:
            out.append(("shutdown_grace", "must not be negative"))
        return out


def secret_url_from(data: Any, name: str, *, required: bool = True) -> Any:
    """``secret_from`` for a URL whose path or query is the credential."""
    if not isinstance(data, dict):
        return data
    data = secret_from(data, name, required=required)
    value = data.get(name)
    if isinstance(value, str):
        check_http_url(value, name, secret=True)
    return data


def parse_smarthost(value: str, field: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host may be bracketed) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FieldError(field, f"{value!r} must be host:port")
    return host.strip("[]"), int(port)
