"""The `retention:` section: defaults, durations, and a floor against typos."""

from datetime import timedelta

import pytest

from app.config.model import ConfigError, parse_config

BASE = "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n"


def test_defaults() -> None:
    r = parse_config(BASE, "t.yml", {}).config.retention
    assert (r.resolved_alerts, r.transitions, r.notifications, r.dead_letters) == (
        timedelta(days=30),
        timedelta(days=90),
        timedelta(days=30),
        timedelta(days=90),
    )
    assert (r.delivery_attempts, r.quarantine, r.audit) == (
        timedelta(days=14),
        timedelta(days=14),
        timedelta(days=365),
    )


def test_overrides_and_errors_name_their_path() -> None:
    r = parse_config(
        BASE + "retention: {transitions: 1y, audit: 2w}\n", "t.yml", {}
    ).config.retention
    assert r.transitions == timedelta(days=365) and r.audit == timedelta(days=14)
    with pytest.raises(ConfigError) as err:
        parse_config(
            BASE + "retention: {notifications: 0, dead_letters: 5m, forever: 1d}\n", "t.yml", {}
        )
    text = "\n".join(err.value.errors)
    assert "retention.forever" in text
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "retention: {notifications: 0}\n", "t.yml", {})
    assert err.value.errors == ["retention.notifications: must be at least 1h"]
