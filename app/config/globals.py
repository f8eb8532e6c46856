"""The ``global:`` section: defaults the integrations share.

Its own module so that the integrations, which read it, and the config
model, which lists the integrations, do not import each other.
"""

from typing import Any

from pydantic import SecretStr, model_validator

from app.config.fields import StrictModel, check_http_url, parse_smarthost, secret_from


class GlobalConfig(StrictModel):
    smtp_smarthost: str | None = None
    smtp_from: str | None = None
    smtp_hello: str = "localhost"
    smtp_auth_username: str | None = None
    smtp_auth_password: SecretStr | None = None
    smtp_require_tls: bool = True
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    opsgenie_api_url: str = "https://api.opsgenie.com/"
    # Shown as the "source"/client link of notifications when set.
    external_url: str | None = None
    # Outbound HTTP goes through this proxy when set; HTTP(S)_PROXY in the
    # environment is never used, so nothing redirects alerts by accident.
    proxy_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "smtp_auth_password", required=False)
        return data

    @model_validator(mode="after")
    def _check(self) -> "GlobalConfig":
        check_http_url(self.pagerduty_url, "pagerduty_url")
        check_http_url(self.opsgenie_api_url, "opsgenie_api_url")
        if self.external_url is not None:
            check_http_url(self.external_url, "external_url")
        if self.proxy_url is not None:
            check_http_url(self.proxy_url, "proxy_url")
        if self.smtp_smarthost is not None:
            parse_smarthost(self.smtp_smarthost, "smtp_smarthost")
        return self
