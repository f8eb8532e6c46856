"""Opsgenie Alert API v2: create, and close by alias.

One Opsgenie alert per alert occurrence: the ``alias`` is the stable incident
key (``dedup_key``, docs/architecture.md), so a resolve closes what its firing opened, on every
replica and after every replay, and a repeat or a flapping notice only adds
to the open alert's count (Opsgenie dedups creates by alias). Opsgenie
answers both requests with 202 and processes them asynchronously.
"""

import json
import re
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import SecretStr, field_validator, model_validator

from app.config.fields import check_http_url, secret_from
from app.core.domain import NoticeKind, Status
from app.core.message import Message, cut
from app.core.ratelimit import RateLimit
from app.notifiers import http
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id

# Opsgenie's limits, in characters (docs.opsgenie.com, "Alerts and alert fields").
MESSAGE_LIMIT = 130
ALIAS_LIMIT = 512
DESCRIPTION_LIMIT = 15_000
ENTITY_LIMIT = 512
SOURCE = "alertrelay"  # Opsgenie allows 100 characters
NOTE_LIMIT = 25_000
TAGS_LIMIT = 20
TAG_LIMIT = 50
DETAILS_LIMIT = 8000  # keys and values together
# Our own caps, so one huge label cannot take the whole details budget.
DETAIL_KEY_LIMIT = 128
DETAIL_VALUE_LIMIT = 1000
_OMITTED_KEY = "omitted-details"
_OMITTED_RESERVE = 100  # room for the note saying how many entries were left out

_PRIORITY = {"critical": "P1", "page": "P1", "error": "P2", "warning": "P3"}
# Opsgenie renders HTML in an alert's message; "<" followed by a letter, "/",
# "!" or "?" would start a tag or comment there.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


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


def closes(m: Message) -> bool:
    """Whether the notice closes the Opsgenie alert (resolved, or stable and resolved)."""
    return m.kind is NoticeKind.RESOLVED or (
        m.kind is NoticeKind.STABLE and m.status is Status.RESOLVED
    )


def priority_for(severity: str) -> str:
    """critical/page → P1, error → P2, warning → P3, anything else → P5."""
    return _PRIORITY.get(severity.strip().lower(), "P5")


def neutralise_html(text: str) -> str:
    """Keep a message's ``<tag`` from being markup: a space after ``<`` reads the same."""
    return _TAG_OPEN.sub("< ", text)


def details_for(m: Message) -> dict[str, str]:
    """Labels as a flat map, plus links and notice facts, within 8,000 characters.

    Our keys contain "-", which a Prometheus label name cannot, so they never
    collide with a label. Entries that do not fit are left out and counted.
    """
    entries: list[tuple[str, str]] = []
    if m.runbook_url:
        entries.append(("runbook-url", m.runbook_url))
    if m.generator_url:
        entries.append(("generator-url", m.generator_url))
    entries.append(("alert-fingerprint", m.fingerprint))
    entries.append(("notice-kind", m.tag))
    if m.kind in (NoticeKind.FLAPPING, NoticeKind.STABLE) or m.flapping:
        entries.append(("flap-score", f"{m.flap_score:.2f}"))
        entries.append(("flap-transitions", str(m.flap_transitions)))
    if m.duplicates:
        entries.append(("duplicates-seen", str(m.duplicates)))
    entries += sorted(m.labels.items())
    details: dict[str, str] = {}
    used = 0
    omitted = 0
    for raw_key, raw_value in entries:
        key = cut(raw_key, DETAIL_KEY_LIMIT)
        value = cut(raw_value, DETAIL_VALUE_LIMIT)
        size = len(key) + len(value)
        if key in details or used + size > DETAILS_LIMIT - _OMITTED_RESERVE:
            omitted += 1
            continue
        details[key] = value
        used += size
    if omitted:
        details[_OMITTED_KEY] = f"{omitted} left out (Opsgenie's 8000-character limit)"
    return details


class OpsgenieNotifier:
    def __init__(self, config: OpsgenieConfig, ctx: BuildContext) -> None:
        self._config = config
        self._key = config.api_key.get_secret_value()
        base = config.api_url or ctx.global_config.opsgenie_api_url
        self._base = base if base.endswith("/") else base + "/"
        self._http = ctx.http
        self._clock = ctx.clock

    def destination(self) -> str:
        return destination_id("opsgenie", self._base, self._key)

    def secrets(self) -> list[str]:
        return [self._key]

    def rate_limit(self) -> RateLimit:
        # Opsgenie limits per account and plan, per minute and per second, with
        # token buckets of its own (docs.opsgenie.com/docs/api-rate-limiting).
        # 10/s with a burst of 10 is a conservative default for one API key;
        # a 429 is retried after its Retry-After.
        return RateLimit(per_second=10.0, burst=10)

    def alias(self, m: Message) -> str:
        # Sliced, not cut with a marker: the alias must be the same for create and close.
        return m.dedup_key[:ALIAS_LIMIT]

    def url(self, m: Message) -> str:
        if m.kind is NoticeKind.ACK:
            action = "acknowledge"
        elif closes(m):
            action = "close"
        else:
            return f"{self._base}v2/alerts"
        # The alias is one path segment: "/" and everything else reserved is escaped.
        alias = quote(self.alias(m), safe="")
        return f"{self._base}v2/alerts/{alias}/{action}?identifierType=alias"

    def body(self, m: Message) -> dict[str, Any]:
        if m.kind is NoticeKind.ACK:
            out = {"source": SOURCE, "note": cut(m.title, NOTE_LIMIT)}
            if m.ack_by:
                out["user"] = cut(m.ack_by, 100)
            return out
        if closes(m):
            return {"source": SOURCE, "note": cut(f"{m.title}\n{m.text}".strip(), NOTE_LIMIT)}
        body: dict[str, Any] = {
            "message": cut(neutralise_html(m.title.strip()), MESSAGE_LIMIT),
            "alias": self.alias(m),
            "description": cut(m.text, DESCRIPTION_LIMIT),
            "details": details_for(m),
            "priority": self._config.priority or priority_for(m.severity),
            "tags": self.tags(m),
            "source": SOURCE,
        }
        instance = m.labels.get("instance", "").strip()
        if instance:
            body["entity"] = cut(instance, ENTITY_LIMIT)
        return body

    def tags(self, m: Message) -> list[str]:
        """The configured tags and the severity: at most 20, each at most 50 characters."""
        out: list[str] = []
        for tag in [*self._config.tags, m.severity]:
            tag = cut(tag.strip(), TAG_LIMIT)
            if tag and tag not in out:
                out.append(tag)
        return out[:TAGS_LIMIT]

    def prepare(self, message: Message) -> Prepared:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"GenieKey {self._key}",
        }
        body = json.dumps(self.body(message), ensure_ascii=False).encode()
        return Prepared("POST", self.url(message), headers, body)

    async def send(self, message: Message) -> str | None:
        request = self.prepare(message)
        reply = await http.post(
            self._http, request.url, what="opsgenie", content=request.body, headers=request.headers
        )
        detail = None
        if not 200 <= reply.status < 300:
            data = reply.json()
            if isinstance(data, dict):
                detail = _error_detail(data)
        http.raise_for_status(
            reply, self._clock.now(), what="opsgenie", secrets=self.secrets(), detail=detail
        )
        return None


def _error_detail(data: dict[str, Any]) -> str | None:
    """Opsgenie's ``message``, its field ``errors`` and the ``requestId`` support asks for."""
    message = str(data.get("message", "")).strip()
    if not message:
        return None
    errors = data.get("errors")
    if isinstance(errors, dict) and errors:
        message += ": " + "; ".join(f"{k}: {v}" for k, v in errors.items())
    request_id = data.get("requestId")
    if request_id:
        message += f" (requestId {request_id})"
    return cut(message, 1000)


def build(config: OpsgenieConfig, ctx: BuildContext) -> OpsgenieNotifier:
    return OpsgenieNotifier(config, ctx)
