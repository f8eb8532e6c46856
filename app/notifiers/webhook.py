"""Generic JSON webhook; its payload is documented in docs/integrations.md ("Webhook payload")."""

import json
from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from app.config.fields import secret_from, secret_url_from
from app.core.message import Message
from app.notifiers import http
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id

PAYLOAD_VERSION = "alertrelay/1"


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


def webhook_body(m: Message) -> dict[str, Any]:
    return {
        "version": PAYLOAD_VERSION,
        "kind": m.kind.value,
        "status": m.status.value,
        "title": m.title,
        "text": m.text,
        "fingerprint": m.fingerprint,
        "alertname": m.alertname,
        "severity": m.severity,
        "dedup_key": m.dedup_key,
        "idempotency_key": m.idempotency_key,
        "notification_id": m.notification_id,
        "attempt": m.attempt,
        "receiver": m.receiver,
        "alert": {
            "labels": m.labels,
            "annotations": m.annotations,
            "starts_at": m.starts_at,
            "ends_at": m.ends_at,
            "generator_url": m.generator_url,
            "runbook_url": m.runbook_url,
        },
        "duplicates": m.duplicates,
        "flap": {"score": m.flap_score, "transitions": m.flap_transitions, "flapping": m.flapping},
        "group_key": m.group_key,
    }


class WebhookNotifier:
    def __init__(self, config: WebhookConfig, ctx: BuildContext) -> None:
        self._url = config.url.get_secret_value()
        self._token = config.token.get_secret_value() if config.token else None
        self._http = ctx.http
        self._user_agent = f"alertrelay/{ctx.version}"
        self._secrets = config.secret_values()
        self._clock = ctx.clock

    def destination(self) -> str:
        return destination_id("webhook", self._url)

    def secrets(self) -> list[str]:
        return self._secrets

    def rate_limit(self) -> None:
        return None  # a generic endpoint publishes no limit; set rate_limit: to add one

    def prepare(self, message: Message) -> Prepared:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            # Receivers can drop retries of a notification they already have.
            "Idempotency-Key": message.idempotency_key,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = json.dumps(webhook_body(message), ensure_ascii=False).encode()
        return Prepared("POST", self._url, headers, body)

    async def send(self, message: Message) -> str | None:
        request = self.prepare(message)
        reply = await http.post(
            self._http, request.url, what="webhook", content=request.body, headers=request.headers
        )
        http.raise_for_status(reply, self._clock.now(), what="webhook", secrets=self._secrets)
        return None


def build(config: WebhookConfig, ctx: BuildContext) -> WebhookNotifier:
    return WebhookNotifier(config, ctx)
