"""Discord webhooks with embeds (protocols.md §3.4)."""

from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.confbase import secret_url_from
from app.notifiers.base import IntegrationConfig


class DiscordConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: SecretStr
    username: str | None = None
    avatar_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "webhook_url")
