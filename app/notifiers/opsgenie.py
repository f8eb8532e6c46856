"""Opsgenie Alert API v2: create, and close by alias."""

from typing import Any, ClassVar, Literal

from pydantic import SecretStr, field_validator, model_validator

from app.confbase import check_http_url, secret_from
from app.notifiers.base import IntegrationConfig


class OpsgenieConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    api_key: SecretStr
    api_url: str | None = None  # default: global.opsgenie_api_url
    priority: Literal["P1", "P2", "P3", "P4", "P5"] | None = None
    tags: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "api_key", required=True)
        return data

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return value if value is None else check_http_url(value, "api_url")
