"""deploy/: what operators run beside alertrelay stays true to what it exports and serves."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config.model import load_config
from app.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_NAME = re.compile(r"\balertrelay_[a-z_]+\b")


def _exported() -> set[str]:
    """Every sample name alertrelay's /metrics can carry (families and their suffixes)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        suffixes = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_count", "_sum", "_created"],
        }
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alertrelay-rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_use_only_exported_metrics_and_are_complete() -> None:
    exported = _exported()
    rules = _rules()
    assert len({r["alert"] for r in rules}) == len(rules) >= 8
    for rule in rules:
        used = set(_NAME.findall(rule["expr"]))
        assert used <= exported, (rule["alert"], used - exported)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    # The delivery guarantees an operator must watch are covered.
    watched = {name for r in rules for name in _NAME.findall(r["expr"])}
    assert {
        "alertrelay_outbox_pending",
        "alertrelay_outbox_dead",
        "alertrelay_notifications_total",
    } <= watched


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (CI installs it)"
)
def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    """PromQL that Prometheus accepts, and alerts that fire when they should (and not before)."""
    rules_dir = DEPLOY / "prometheus"
    for args in (
        ["check", "rules", "alertrelay-rules.yml"],
        ["test", "rules", "alertrelay-rules.test.yml"],
    ):
        result = subprocess.run(
            ["promtool", *args], cwd=rules_dir, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    tested = set(
        re.findall(r"alertname: (\w+)", (rules_dir / "alertrelay-rules.test.yml").read_text())
    )
    assert {
        "AlertrelayDown",
        "AlertrelayOutboxBacklog",
        "AlertrelayDeadLetters",
        "AlertrelayDeliveryRetrying",
    } <= tested


def test_dashboard_queries_use_only_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "alertrelay-dashboard.json").read_text())
    exported = _exported()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    used: set[str] = set()
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            used.update(_NAME.findall(target["expr"]))
    assert used and used <= exported, used - exported
    # Every documented metric family is on the dashboard but build_info (used for the instance picker).
    families = {n.removesuffix("_bucket") for n in used}
    for name in [
        "alertrelay_webhooks_total",
        "alertrelay_alerts_received_total",
        "alertrelay_alerts_deduplicated_total",
        "alertrelay_alert_transitions_total",
        "alertrelay_alerts_flapping",
        "alertrelay_notifications_total",
        "alertrelay_notification_duration_seconds",
        "alertrelay_outbox_pending",
        "alertrelay_outbox_dead",
        "alertrelay_webhook_duration_seconds",
    ]:
        assert name in families, name
    assert "alertrelay_build_info" in json.dumps(dash["templating"])


def _manifests() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "alertrelay.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_kubernetes_config_loads_with_its_secrets(tmp_path: Path) -> None:
    docs = _manifests()
    text = docs["ConfigMap"]["data"]["alertrelay.yml"]
    mount = "/etc/alertrelay/secrets"
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert any(m["mountPath"] == mount for m in container["volumeMounts"])
    for name in set(re.findall(mount + r"/([a-z-]+)", text)):
        (tmp_path / name).write_text(f"secret-{name}")
    config_file = tmp_path / "alertrelay.yml"
    config_file.write_text(text.replace(mount, str(tmp_path)))
    loaded = load_config(str(config_file), {})
    assert loaded.config.auth.webhook_token is not None
    assert loaded.config.auth.webhook_token.get_secret_value() == "secret-webhook-token"
    names = [r.name for r in loaded.config.receivers]
    assert names == ["oncall", "chat-only", "nobody"]


async def test_kubernetes_deployment_matches_the_image_and_the_app(sqlite_url: str) -> None:
    from tests.conftest import running_app
    from tests.helpers import LOG_CONFIG

    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert container["args"] == cmd
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    assert (
        docs["Deployment"]["spec"]["replicas"] == 1
        and docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
    )
    assert (
        pod["terminationGracePeriodSeconds"] > 30
    )  # the worker's shutdown grace is capped at 30 s
    port = container["ports"][0]["containerPort"]
    assert f"EXPOSE {port}" in dockerfile
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    paths = [
        container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")
    ]
    paths.append(annotations["prometheus.io/path"])
    assert (
        docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    )
    async with running_app(sqlite_url, LOG_CONFIG) as (_, client):
        for path in paths:
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text)
