"""Google Chat incoming webhooks with one thread per alert (protocols.md §3.3)."""

from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.confbase import secret_url_from
from app.notifiers.base import IntegrationConfig


class GoogleChatConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: SecretStr
    threading: bool = True

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "url")
