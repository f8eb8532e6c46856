"""What every integration shares: its config fields and the notifier contract.

An integration module holds its config model and its notifier, nothing else
(style rule 1). The contract the delivery loop relies on lives here.
"""

from typing import Any, ClassVar

from pydantic import model_validator

from app.confbase import DeliveryOverride, FieldError, StrictModel
from app.templating import TemplateSyntaxError, text_env


class IntegrationConfig(StrictModel):
    """Keys every ``*_configs`` entry accepts.

    ``send_resolved`` defaults per integration (true, but false for email as
    in Alertmanager). ``title`` and ``text`` are optional Jinja2 overrides of
    the default message; they are compiled at load so a typo fails
    ``check-config`` instead of a 3 a.m. delivery.
    """

    send_resolved_default: ClassVar[bool] = True
    secret_fields: ClassVar[tuple[str, ...]] = ()

    send_resolved: bool | None = None
    delivery: DeliveryOverride | None = None
    title: str | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _templates_compile(self) -> "IntegrationConfig":
        for name in ("title", "text"):
            source = getattr(self, name)
            if source is None:
                continue
            try:
                text_env().from_string(source)
            except TemplateSyntaxError as exc:
                raise FieldError(
                    name, f"template error: {exc.message} (line {exc.lineno})"
                ) from None
        return self

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
