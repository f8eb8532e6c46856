"""PagerDuty Events API v2 (reference/protocols.md §2)."""

from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from app.confbase import check_http_url, secret_from
from app.notifiers.base import IntegrationConfig


class PagerDutyConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("routing_key",)

    routing_key: SecretStr
    url: str | None = None  # default: global.pagerduty_url
    dedup_by: Literal["alert", "group"] = "alert"
    client: str = "alertrelay"
    client_url: str | None = None
    source: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "routing_key", required=True)
        return data

    @field_validator("url", "client_url")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else check_http_url(value, str(info.field_name))
