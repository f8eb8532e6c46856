"""Every shipped example config routes every shipped alert where it is meant to go.

`alertrelay routes test` runs (its command-line entry point, with no
secret in the environment, as an operator would first try it) over each config we ship, with the
labels of each alert in deploy/prometheus and in alertmanager.yml's example
rules; the receiver must be the one that config intends for that alert.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def shipped_alerts() -> list[dict[str, str]]:
    """alertname and severity of every alert rule we ship."""
    alerts = []
    for path in sorted((DEPLOY / "prometheus").glob("*.yml")):
        if path.name.endswith(".test.yml"):
            continue
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.append(
                        {"alertname": rule["alert"], "severity": rule["labels"]["severity"]}
                    )
    # alertmanager.yml's comment shows the rules it is written for.
    comment = "\n".join(
        line[1:]
        for line in (ROOT / "alertmanager.yml").read_text().splitlines()
        if line.startswith("#")
    )
    for name, severity in re.findall(r"- alert: (\w+)\n(?:.*\n)*?\s+severity: (\w+)", comment):
        alerts.append({"alertname": name, "severity": severity})
    return alerts


def kubernetes_config(tmp_path: Path) -> Path:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "alertrelay.yaml").read_text()))
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    path = tmp_path / "k8s.yml"
    path.write_text(configmap["data"]["alertrelay.yml"])
    return path


# What each config intends, by severity; Watchdog (severity none) is the
# pipeline's heartbeat and must reach the receiver that sends nothing.
INTENT: dict[str, dict[str, str]] = {
    "example": {
        "critical": "page",
        "warning": "chat-and-mail",
        "info": "chat",
        "Watchdog": "blackhole",
    },
    "kubernetes": {
        "critical": "oncall",
        "warning": "oncall",
        "info": "chat-only",
        "Watchdog": "nobody",
    },
    "built-in": {"critical": "log", "warning": "log", "info": "log", "Watchdog": "log"},
}


def routes_test(
    config: Path | None, labels: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    args = ["routes", "test", "--json"]
    if config is not None:
        args += ["--config", str(config)]
    code = main([*args, *(f"{k}={v}" for k, v in labels.items())])
    out = capsys.readouterr()
    assert code == 0, out.err
    return {"info": json.loads(out.out), "stderr": out.err}


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ALERTRELAY_") or key.endswith(("_URL", "_KEY", "_TOKEN")):
            monkeypatch.delenv(key)


def test_the_shipped_alerts_are_all_found() -> None:
    alerts = shipped_alerts()
    names = {a["alertname"] for a in alerts}
    assert {
        "AlertrelayDown",
        "ErrorBudgetFastBurn",
        "ErrorBudgetSlowBurn",
        "HighErrorRate",
        "DiskFillingUp",
        "Watchdog",
    } <= names
    assert {a["severity"] for a in alerts} == {"critical", "warning", "info", "none"}


@pytest.mark.parametrize("name", sorted(INTENT))
def test_every_shipped_alert_reaches_its_intended_receiver(
    name: str, tmp_path: Path, no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "example": ROOT / "app" / "examples" / "alertrelay.yml",
        "kubernetes": kubernetes_config(tmp_path),
        "built-in": None,
    }[name]
    intent = INTENT[name]
    wrong = []
    for alert in shipped_alerts():
        key = "Watchdog" if alert["alertname"] == "Watchdog" else alert["severity"]
        if key == "none":
            key = "info"
        out = routes_test(config, alert, capsys)
        got = [r["receiver"] for r in out["info"]["receivers"]]
        if got != [intent[key]]:
            wrong.append((alert, got, intent[key]))
        # Secrets were absent: said so, by name, never by value.
        if name != "built-in":
            assert "secret(s) not resolved" in out["stderr"]
        assert out["info"]["runbook"]["url"], alert  # every shipped config links a runbook
    assert not wrong, wrong


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool is not installed (CI installs it)"
)
def test_alertmanager_yml_hands_every_shipped_alert_to_alertrelay() -> None:
    for alert in shipped_alerts():
        result = subprocess.run(
            [
                "amtool",
                "config",
                "routes",
                "test",
                "--config.file",
                str(ROOT / "alertmanager.yml"),
                *(f"{k}={v}" for k, v in alert.items()),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0 and result.stdout.strip() == "alertrelay", (
            alert,
            result.stdout,
            result.stderr,
        )


def test_the_example_config_watches_the_watchdog_and_escalates_pages(
    no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's heartbeat is proven by the Watchdog that alertmanager.yml
    repeats, its HeartbeatMissing pages, and pages escalate."""
    from app.config.compiled import compile_config
    from app.config.model import load_config
    from app.core.heartbeats import labels as missing_labels
    from app.core.heartbeats import proven

    example = ROOT / "app" / "examples" / "alertrelay.yml"
    runtime = compile_config(load_config(str(example), secrets_optional=True))
    watchdog = [a for a in shipped_alerts() if a["alertname"] == "Watchdog"]
    assert watchdog and proven(runtime.heartbeats, watchdog) == {"alertmanager"}
    (hb,) = runtime.heartbeats
    missing = routes_test(example, missing_labels(hb.name), capsys)["info"]
    assert [r["receiver"] for r in missing["receivers"]] == ["page"]
    assert [(s["after_s"], s["receiver"]) for s in missing["escalate"]] == [
        (900.0, "chat-and-mail"),
        (2700.0, "chat"),
    ]
    # alertmanager.yml repeats Watchdog well within the heartbeat's interval.
    am = yaml.safe_load((ROOT / "alertmanager.yml").read_text())
    (route,) = [r for r in am["route"]["routes"] if r["matchers"] == ['alertname="Watchdog"']]
    assert route["receiver"] == "alertrelay"
    assert _seconds(route["repeat_interval"]) * 2 < hb.interval_s
    assert _seconds(route["group_interval"]) * 2 < hb.interval_s


def _seconds(text: str) -> float:
    from app.config.fields import parse_duration

    return parse_duration(text).total_seconds()
