"""PagerDuty Events API v2.

One incident per alert occurrence: the ``dedup_key`` is the stable incident
key (docs/architecture.md), so a resolve closes what its trigger opened, on every
replica and after every replay. ``dedup_by: group`` uses Alertmanager's own
per-group key (sha256 of the groupKey) instead; then a resolve is sent only
when no alert of the group still fires, or it would close the group's
incident under a firing alert.
"""

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from app.config.fields import check_http_url, secret_from
from app.core.domain import NoticeKind, Status, pagerduty_severity
from app.core.message import Message, compile_template, cut, render_field
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id

EVENT_LIMIT = 512_000  # bytes; PagerDuty's 512 KB as Alertmanager reads it
SUMMARY_LIMIT = 1024  # characters
DEDUP_KEY_LIMIT = 255
FIELD_LIMIT = 1024  # characters of source, component, group, class when the event is too large
_TOO_LARGE = "custom details removed: the event was over PagerDuty's 512 KB limit"


class PagerDutyConfig(IntegrationConfig):
    secret_fields: ClassVar[tuple[str, ...]] = ("routing_key",)

    routing_key: SecretStr
    url: str | None = None  # default: global.pagerduty_url
    dedup_by: Literal["alert", "group"] = "alert"
    client: str = "alertrelay"
    client_url: str | None = None  # default: global.external_url
    source: str | None = None  # Jinja2; default: the instance, job or host label
    component: str | None = None  # Jinja2; default: the job label
    group: str | None = None  # Jinja2; default: the namespace or cluster label
    class_: str | None = Field(default=None, alias="class")  # Jinja2; default: alertname

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


def event_action(m: Message) -> str:
    if m.kind is NoticeKind.ACK:
        return "acknowledge"
    resolved = m.kind is NoticeKind.RESOLVED or (
        m.kind is NoticeKind.STABLE and m.status is Status.RESOLVED
    )
    return "resolve" if resolved else "trigger"


class PagerDutyNotifier:
    def __init__(self, config: PagerDutyConfig, ctx: BuildContext) -> None:
        self._config = config
        self._key = config.routing_key.get_secret_value()
        self._url = config.url or ctx.global_config.pagerduty_url
        self._client_url = config.client_url or ctx.global_config.external_url
        self._http = ctx.http
        self._clock = ctx.clock
        self._templates = {
            name: compile_template(getattr(config, name))
            for name in ("source", "component", "group", "class_")
        }

    def destination(self) -> str:
        return destination_id("pagerduty", self._url, self._key)

    def secrets(self) -> list[str]:
        return [self._key]

    def rate_limit(self) -> RateLimit:
        # About 120 events a minute per routing key, over a 60 s window: a
        # burst of 10 plus 1.8/s stays under it in any window.
        return RateLimit(per_second=1.8, burst=10)

    def prepare(self, message: Message) -> Prepared:
        return Prepared(
            "POST", self._url, {"Content-Type": "application/json"}, self.encode(message)
        )

    def dedup_key(self, m: Message) -> str:
        if self._config.dedup_by == "group":
            base = m.group_key or m.fingerprint
            escalated = m.payload.get("escalation")
            if isinstance(escalated, dict) and escalated.get("receiver"):
                # A receiver escalated to has an incident of its own.
                base = f"{base}\x1fescalated\x1f{escalated['receiver']}"
            return hashlib.sha256(base.encode()).hexdigest()
        return m.dedup_key[:DEDUP_KEY_LIMIT]

    def event(self, m: Message) -> dict[str, Any]:
        action = event_action(m)
        body: dict[str, Any] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": self.dedup_key(m),
        }
        if action in ("resolve", "acknowledge"):
            # Both name the incident by dedup_key only; PagerDuty reads nothing else.
            return body
        labels = m.labels
        field = self._field
        details: dict[str, Any] = {
            "text": m.text,
            "kind": m.kind.value,
            "status": m.status.value,
            "fingerprint": m.fingerprint,
            "labels": labels,
            "annotations": m.annotations,
            "starts_at": m.starts_at,
            "duplicates": m.duplicates,
        }
        if m.kind in (NoticeKind.FLAPPING, NoticeKind.STABLE) or m.flapping:
            details["flap"] = {"score": m.flap_score, "transitions": m.flap_transitions}
        escalated = m.payload.get("escalation")
        if m.kind is NoticeKind.ESCALATION and isinstance(escalated, dict):
            details["escalation"] = escalated
        payload: dict[str, Any] = {
            "summary": cut(m.title, SUMMARY_LIMIT),
            "source": field(
                "source",
                m,
                labels.get("instance") or labels.get("job") or labels.get("host") or "alertrelay",
            ),
            "severity": pagerduty_severity(m.severity),
            "timestamp": m.starts_at,
            "custom_details": details,
        }
        for name, key, default in (
            ("component", "component", labels.get("job", "")),
            ("group", "group", labels.get("namespace") or labels.get("cluster", "")),
            ("class_", "class", m.alertname),
        ):
            value = field(name, m, default)
            if value:
                payload[key] = value
        body["payload"] = payload
        links = []
        if m.runbook_url:
            links.append({"href": m.runbook_url, "text": "Runbook"})
        if m.generator_url:
            links.append({"href": m.generator_url, "text": "Source"})
        if links:
            body["links"] = links
        body["client"] = self._config.client
        if self._client_url:
            body["client_url"] = self._client_url
        return body

    def _field(self, name: str, m: Message, default: str) -> str:
        return render_field(self._templates[name], m, default, f"pagerduty.{name}")

    def encode(self, m: Message) -> bytes:
        """The request body, within PagerDuty's size limit (custom details go first)."""
        body = self.event(m)
        encoded = json.dumps(body, ensure_ascii=False).encode()
        if len(encoded) <= EVENT_LIMIT:
            return encoded
        body["payload"]["custom_details"] = {"error": _TOO_LARGE, "fingerprint": m.fingerprint}
        encoded = json.dumps(body, ensure_ascii=False).encode()
        if len(encoded) > EVENT_LIMIT:  # only absurd link or label sizes get here
            # The other payload fields come from labels too (a huge job or
            # namespace label); cut each, so the event always fits.
            body.pop("links", None)
            payload = body["payload"]
            for key in ("source", "component", "group", "class"):
                if key in payload:
                    payload[key] = cut(payload[key], FIELD_LIMIT)
            encoded = json.dumps(body, ensure_ascii=False).encode()
        return encoded

    async def send(self, message: Message) -> str | None:
        if (
            self._config.dedup_by == "group"
            and event_action(message) == "resolve"
            and (message.group_firing or 0) > 0
        ):
            return f"not resolved: {message.group_firing} alert(s) of its group still firing"
        request = self.prepare(message)
        reply = await http.post(
            self._http, request.url, what="pagerduty", content=request.body, headers=request.headers
        )
        detail = None
        if reply.status == 400:
            # PagerDuty says why in {"status","message","errors":[...]}.
            data = reply.json()
            if isinstance(data, dict):
                errors = data.get("errors")
                joined = ", ".join(str(e) for e in errors) if isinstance(errors, list) else ""
                detail = cut(f"{data.get('message', '')}: {joined}".strip(": "), 1000)
        http.raise_for_status(
            reply, self._clock.now(), what="pagerduty", secrets=self.secrets(), detail=detail
        )
        return None


def build(config: PagerDutyConfig, ctx: BuildContext) -> PagerDutyNotifier:
    return PagerDutyNotifier(config, ctx)
