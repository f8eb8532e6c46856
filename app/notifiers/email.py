"""Email over SMTP with aiosmtplib (protocols.md §4)."""

from typing import Any, ClassVar

from pydantic import Field, SecretStr, model_validator

from app.confbase import FieldError, secret_from
from app.notifiers.base import IntegrationConfig


def parse_smarthost(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FieldError(field, f"{value!r} must be host:port")
    return host.strip("[]"), int(port)


class EmailConfig(IntegrationConfig):
    send_resolved_default: ClassVar[bool] = False
    secret_fields: ClassVar[tuple[str, ...]] = ("auth_password",)

    to: str
    from_: str | None = Field(default=None, alias="from")  # default: global.smtp_from
    smarthost: str | None = None  # default: global.smtp_smarthost
    hello: str | None = None
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    require_tls: bool | None = None  # default: global.smtp_require_tls (true)
    force_implicit_tls: bool | None = None  # default: true on port 465
    tls_ca_file: str | None = None
    html: str | None = None  # Jinja2 override of the HTML body
    headers: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "auth_password", required=False)
        return data

    @model_validator(mode="after")
    def _checks(self) -> "EmailConfig":
        if not [a for a in self.to.split(",") if a.strip()]:
            raise FieldError("to", "needs at least one address")
        if self.smarthost is not None:
            parse_smarthost(self.smarthost, "smarthost")
        if self.auth_username and self.auth_password is None:
            raise FieldError("auth_password", "required when auth_username is set")
        for name in self.headers:
            if not name or any(c in name for c in ":\r\n ") or not name.isascii():
                raise FieldError("headers", f"invalid header name {name!r}")
        return self
