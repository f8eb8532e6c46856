"""The grouping examples of README.md and docs/integrations.md are the
product's: their configs load with the modes they claim, the sample message
is what the Slack notifier renders, and ``routes test --render`` takes
several alerts or a webhook file."""

import json
import re
from pathlib import Path

import httpx
import pytest

from app.cli.main import main
from app.config.compiled import compile_config
from app.config.model import parse_config
from app.core.domain import Status
from app.delivery.preview import PreviewAlert, render_group
from tests.unit.test_readme import README, ROOT, with_secret_files

INTEGRATIONS = (ROOT / "docs" / "integrations.md").read_text()
SECTION = INTEGRATIONS.split("\n## Grouped messages", 1)[1].split("\n## ", 1)[0]


def _yaml(text: str) -> str:
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "grouping" in b]
    return block


def test_readme_example_shows_both_modes(tmp_path: Path) -> None:
    section = README.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    runtime = compile_config(
        parse_config(with_secret_files(_yaml(section), tmp_path), "README", {})
    )
    modes = {i.key: (i.grouped, i.config.max_alerts_per_message) for i in runtime.receivers["ops"]}
    assert modes == {
        "ops/pagerduty/0": (False, 20),
        "ops/email/0": (True, 50),
        "ops/slack/0": (True, 20),
        "ops/slack/1": (False, 20),
    }
    assert runtime.console_url == "https://alertrelay.example.com"


def test_docs_example_shows_both_modes(tmp_path: Path) -> None:
    runtime = compile_config(parse_config(with_secret_files(_yaml(SECTION), tmp_path), "docs", {}))
    modes = {i.key: (i.grouped, i.config.max_alerts_per_message) for i in runtime.receivers["ops"]}
    assert modes == {
        "ops/pagerduty/0": (False, 20),
        "ops/email/0": (True, 20),
        "ops/slack/0": (True, 30),
        "ops/slack/1": (False, 20),
    }


SAMPLE_CONFIG = """
runbooks:
  default: "https://runbooks.example.com/{{ labels.alertname | lower }}"
route: {receiver: ops}
receivers:
  - name: ops
    slack_configs: [{api_url: "https://hooks.slack.com/services/T0/B0/SECRETSECRET"}]
"""

SAMPLE_ALERTS = [
    PreviewAlert(
        {"alertname": "DiskFull", "instance": "db-1", "severity": "critical"},
        {"summary": "/var is 97% full"},
    ),
    PreviewAlert(
        {"alertname": "DiskFull", "instance": "db-2", "severity": "warning"},
        {"summary": "/var is 91% full"},
    ),
    PreviewAlert(
        {"alertname": "DiskFull", "instance": "db-3", "severity": "warning"},
        {"summary": "/var is 90% full"},
        Status.RESOLVED,
    ),
]


async def test_docs_sample_is_the_slack_message() -> None:
    (sample,) = re.findall(r"```text\n(.*?)```", SECTION, re.S)
    runtime = compile_config(parse_config(SAMPLE_CONFIG, "sample", {}))
    async with httpx.AsyncClient() as http:
        (request,) = render_group(
            runtime,
            SAMPLE_ALERTS,
            http,
            group_key='{}:{alertname="DiskFull"}',
            group_labels={"alertname": "DiskFull"},
        )
    body = json.loads(request.body)
    title = body["blocks"][0]["text"]["text"]
    text = body["attachments"][0]["blocks"][0]["text"]["text"]
    assert sample == f"{title}\n{text}\n"


def _config_file(tmp_path: Path) -> str:
    path = tmp_path / "alertrelay.yml"
    path.write_text(
        SAMPLE_CONFIG + "    pagerduty_configs: [{routing_key: R0UT1NGKEY0123456789abcdef012345}]\n"
    )
    return str(path)


def test_routes_test_renders_several_alerts_as_one_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "routes",
            "test",
            "--config",
            _config_file(tmp_path),
            "--render",
            "--alert",
            "alertname=DiskFull,instance=db-1,severity=critical",
            "--alert",
            "alertname=DiskFull,instance=db-2,severity=warning",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    # One Slack message for the group, one PagerDuty event per alert.
    assert out.count("--- ops/slack/0: POST") == 1
    assert out.count("--- ops/pagerduty/0: POST") == 2
    assert "[FIRING:2] alertname=DiskFull, severity=" not in out  # severity differs: not common
    assert "*[FIRING:2] alertname=DiskFull: 2 firing*" in out
    assert "SECRETSECRET" not in out and "R0UT1NGKEY" not in out


def test_routes_test_renders_a_webhook_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = {
        "version": "4",
        "receiver": "alertrelay",
        "status": "firing",
        "groupKey": '{}:{alertname="DiskFull"}',
        "groupLabels": {"alertname": "DiskFull"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "DiskFull", "instance": f"db-{i}"},
                "annotations": {"summary": f"db-{i}"},
                "startsAt": "2026-12-04T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-04T10:05:00Z",
            }
            for i, status in enumerate(["firing"] * 25 + ["resolved"] * 2)
        ],
    }
    path = tmp_path / "webhook.json"
    path.write_text(json.dumps(webhook))
    code = main(
        ["routes", "test", "--config", _config_file(tmp_path), "--render", "--payload", str(path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "*[FIRING:25, RESOLVED:1] alertname=DiskFull: 25 firing, 2 resolved*" not in out
    assert "*[FIRING:25, RESOLVED:2] alertname=DiskFull: 25 firing, 2 resolved*" in out
    assert "…and 7 more" in out  # 20 listed of 27, no console link without external_url
    assert out.count("--- ops/pagerduty/0: POST") == 27


def test_routes_test_group_options_need_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["routes", "test", "--config", _config_file(tmp_path), "--alert", "alertname=X"]
    assert main(args) == 2
    assert "only apply with --render" in capsys.readouterr().err
    assert main(["routes", "test", "--config", _config_file(tmp_path)]) == 2
    missing = ["routes", "test", "--config", _config_file(tmp_path), "--render"]
    with pytest.raises(SystemExit) as info:
        main([*missing, "--payload", str(tmp_path / "nope.json")])
    assert info.value.code == 2
