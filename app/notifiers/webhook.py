"""Generic JSON webhook (payload documented in README.md)."""

from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.confbase import secret_from, secret_url_from
from app.notifiers.base import IntegrationConfig


class WebhookConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "token")

    url: SecretStr
    token: SecretStr | None = None  # sent as "Authorization: Bearer <token>"

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        data = secret_url_from(data, "url")
        if isinstance(data, dict):
            data = secret_from(data, "token", required=False)
        return data
