"""The ``log`` integration: one JSON line per notification on stdout."""

from typing import Literal

from app.notifiers.base import IntegrationConfig


class LogConfig(IntegrationConfig):
    stream: Literal["stdout", "stderr"] = "stdout"
