"""Microsoft Teams via a Workflows webhook and an Adaptive Card (protocols.md §3.2)."""

from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.confbase import secret_url_from
from app.notifiers.base import IntegrationConfig


class MSTeamsConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return secret_url_from(data, "webhook_url")
