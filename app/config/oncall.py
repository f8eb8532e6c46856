"""Config of the on-call loop: a route's ``escalate`` steps and the ``heartbeats``.

Only the shapes and their own checks live here; that a step's or a
heartbeat's receiver exists is checked with the other cross-references in
:func:`app.config.model.cross_check`.
"""

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from app.config.fields import Duration, StrictModel
from app.config.sections import check_matchers

# A heartbeat's name becomes a label value and a metric label: keep it plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class EscalationStepConfig(StrictModel):
    """``after`` this long firing (or flapping) without an ack, tell ``receiver``."""

    after: Duration
    receiver: str = Field(min_length=1)

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be more than 0")
        return value


class HeartbeatConfig(StrictModel):
    """A dead man's switch: alerts matching ``matchers`` must keep coming."""

    name: str
    matchers: list[str]
    interval: Duration
    receiver: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "letters, digits and _ . : - only (up to 128, starting with a letter or digit)"
            )
        return value

    @field_validator("matchers")
    @classmethod
    def _some_matchers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one matcher (without any, every alert would prove it)")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @model_validator(mode="after")
    def _check(self) -> "HeartbeatConfig":
        check_matchers(self.matchers)
        return self


def escalation_problems(steps: list[EscalationStepConfig], own_receiver: str) -> list[str]:
    """Problems inside one route's ``escalate`` list (paths relative to it)."""
    errors: list[str] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.receiver == own_receiver:
            errors.append(
                f"[{i}].receiver: {step.receiver!r} is the route's own receiver, "
                "which is notified already; escalate to someone else"
            )
        if step.receiver in seen:
            errors.append(
                f"[{i}].receiver: {step.receiver!r} is escalated to already "
                f"(step [{seen[step.receiver]}]); a receiver is told once per occurrence"
            )
        seen.setdefault(step.receiver, i)
        if i and step.after <= steps[i - 1].after:
            errors.append(f"[{i}].after: must be later than step [{i - 1}]'s after")
    return errors


def heartbeat_problems(heartbeats: list[HeartbeatConfig]) -> list[str]:
    errors: list[str] = []
    names: dict[str, int] = {}
    for i, hb in enumerate(heartbeats):
        if hb.name in names:
            errors.append(
                f"heartbeats[{i}].name: duplicate heartbeat {hb.name!r} "
                f"(also heartbeats[{names[hb.name]}])"
            )
        names.setdefault(hb.name, i)
    return errors
