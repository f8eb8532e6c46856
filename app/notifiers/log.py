"""The ``log`` integration: one JSON line per notification on stdout (or stderr)."""

import json
import sys
from typing import Literal

from app.core.message import Message
from app.notifiers.base import BuildContext, IntegrationConfig, Prepared, destination_id


class LogConfig(IntegrationConfig):
    stream: Literal["stdout", "stderr"] = "stdout"


class LogNotifier:
    def __init__(self, config: LogConfig, ctx: BuildContext) -> None:
        self._stream = config.stream

    def destination(self) -> str:
        return destination_id("log", self._stream)

    def secrets(self) -> list[str]:
        return []

    def rate_limit(self) -> None:
        return None

    def prepare(self, message: Message) -> Prepared:
        line = {
            "notification": message.notification_id,
            "kind": message.kind.value,
            "status": message.status.value,
            "receiver": message.receiver,
            "fingerprint": message.fingerprint,
            "alertname": message.alertname,
            "severity": message.severity,
            "title": message.title,
            "text": message.text,
            "labels": message.labels,
            "runbook_url": message.runbook_url,
            "dedup_key": message.dedup_key,
            "starts_at": message.starts_at,
            "ends_at": message.ends_at,
        }
        # One line per notification: json.dumps escapes newlines in values.
        body = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        return Prepared("WRITE", self._stream, {}, body)

    async def send(self, message: Message) -> str | None:
        out = sys.stdout if self._stream == "stdout" else sys.stderr
        out.write(self.prepare(message).body.decode())
        out.flush()
        return None


def build(config: LogConfig, ctx: BuildContext) -> LogNotifier:
    return LogNotifier(config, ctx)
