"""The ``log`` integration: one JSON line per notification on stdout (or stderr)."""

import json
import sys
from typing import Literal

from app.notifiers.base import BuildContext, IntegrationConfig, destination_id
from app.render import Message


class LogConfig(IntegrationConfig):
    stream: Literal["stdout", "stderr"] = "stdout"


class LogNotifier:
    def __init__(self, config: LogConfig, ctx: BuildContext) -> None:
        self._stream = config.stream

    def destination(self) -> str:
        return destination_id("log", self._stream)

    def secrets(self) -> list[str]:
        return []

    async def send(self, message: Message) -> str | None:
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
        out = sys.stdout if self._stream == "stdout" else sys.stderr
        # One line per notification: json.dumps escapes newlines in values.
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
        return None


def build(config: LogConfig, ctx: BuildContext) -> LogNotifier:
    return LogNotifier(config, ctx)
