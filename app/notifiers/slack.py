"""Slack incoming webhooks (reference/protocols.md §3.1)."""

from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.confbase import secret_url_from
from app.notifiers.base import IntegrationConfig


class SlackConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("api_url",)

    api_url: SecretStr
    # App webhooks ignore these; legacy custom-integration webhooks honour them.
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "api_url")
