"""README.md's commands and examples are the product's; they are checked here."""

import json
import re
import subprocess
import sys
from pathlib import Path

from app.cli.main import describe_routes
from app.config.compiled import compile_config
from app.config.model import parse_config
from tests.conftest import running_app
from tests.helpers import JSON

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# The per-integration reference lives in docs/; its examples are checked too.
INTEGRATIONS = (ROOT / "docs" / "integrations.md").read_text()


def blocks(lang: str, section: str | None = None) -> list[str]:
    text = README
    if section is not None:  # only the blocks of one "## " section
        text = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", INTEGRATIONS, re.S)


def test_readme_links_every_document_in_docs() -> None:
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert "integrations.md" in docs
    assert [d for d in docs if f"docs/{d}" not in README] == []


def with_secret_files(yaml_block: str, tmp_path: Path) -> str:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in re.findall(r"/run/secrets/([\w-]+)", yaml_block):
        value = (
            "https://hooks.example.com/services/T/B/X"
            if "url" in name
            else "0123456789abcdef0123456789abcdef"
        )
        (secrets / name).write_text(value + "\n")
    return yaml_block.replace("/run/secrets/", f"{secrets}/")


def small_config(tmp_path: Path) -> str:
    (yaml_block,) = [b for b in blocks("yaml", "Configuration") if "receivers:" in b]
    return with_secret_files(yaml_block, tmp_path)


def test_the_two_commands_and_ci() -> None:
    sh = blocks("sh")
    assert sh[0].strip().endswith("alertrelay serve")
    test_command = sh[1].strip().splitlines()[-1]
    assert (
        test_command
        == "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    )
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


async def test_quick_start_payload_and_fingerprint(sqlite_url: str) -> None:
    quick = blocks("sh")[2]
    payload = re.search(r"<<'EOF'\n(.*?)\nEOF", quick, re.S)
    assert payload is not None
    data = payload.group(1).encode()
    fp = json.loads(data)["alerts"][0]["fingerprint"]
    async with running_app(
        sqlite_url, "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n"
    ) as (_, client):
        first = (await client.post("/webhook/alertmanager", content=data, headers=JSON)).json()
        assert {
            k: first[k]
            for k in ("status", "accepted", "duplicates", "stale", "transitions", "notifications")
        } == {
            "status": "ok",
            "accepted": 1,
            "duplicates": 0,
            "stale": 0,
            "transitions": 1,
            "notifications": 1,
        }
        assert (
            '"status":"ok","accepted":1,"duplicates":0,"stale":0,"transitions":1,"notifications":1'
            in README
        )
        again = (await client.post("/webhook/alertmanager", content=data, headers=JSON)).json()
        assert again["duplicates"] == 1 and again["transitions"] == 0
        detail = await client.get(f"/api/v1/alerts/{fp}")
        assert detail.status_code == 200  # the README's fingerprint is the real one
        assert fp in blocks("sh")[3]


def test_small_config_is_valid_and_routes_as_documented(tmp_path: Path) -> None:
    runtime = compile_config(parse_config(small_config(tmp_path), "README", {}))
    info = describe_routes(runtime, {"alertname": "DiskFull", "severity": "critical"})
    assert [r["receiver"] for r in info["receivers"]] == ["page"]
    assert info["runbook"] == {
        "url": "https://wiki.example.com/storage#DiskFull",
        "source": "runbooks.rules[0]",
    }


def _text_block(starting: str) -> tuple[str, list[str]]:
    for block in blocks("text"):
        lines = block.rstrip("\n").splitlines()
        if lines[0].startswith(starting):
            return lines[0], lines[1:]
    raise AssertionError(f"no README block starting with {starting!r}")


def test_routes_test_output_is_what_the_command_prints(tmp_path: Path) -> None:
    command, expected = _text_block("$ alertrelay routes test")
    config = tmp_path / "alertrelay.yml"
    config.write_text(small_config(tmp_path))
    args = command.split()[2:]
    args[args.index("alertrelay.yml")] = str(config)
    out = subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


def test_check_config_output_is_what_the_command_prints(tmp_path: Path) -> None:
    command, expected = _text_block("$ alertrelay check-config")
    broken = tmp_path / "broken.yml"
    text = small_config(tmp_path)
    text = text.replace(
        "pagerduty_configs: [{routing_key_file: " + str(tmp_path / "secrets") + "/pagerduty-key}]",
        "pagerduty_configs: [{}]",
    )
    text = text.replace("""severity=~"critical|page\"""", """severity=~"(critical|page\"""")
    broken.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "app", "check-config", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == f"{broken}: invalid config, 2 problem(s)"
    assert lines[1:] == expected[1:]
    assert expected[0] == "broken.yml: invalid config, 2 problem(s)"


def test_documented_metrics_exist() -> None:
    from app.ops.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect() if m.name.startswith("alertrelay_")}
    documented = set(
        re.findall(r"`(alertrelay_[a-z_]+)", README.split("## Metrics")[1].split("##")[0])
    )
    # prometheus_client drops the _total suffix from counter family names.
    assert {d.removesuffix("_total") for d in documented} == exported


def test_documented_endpoints_exist() -> None:
    from app.web import api, audit, console, health, heartbeats

    every = [*api.routes, *audit.routes, *health.routes, *console.routes, *heartbeats.routes]
    routes = {r.path for r in every} | {
        "/webhook/alertmanager",
        "/webhook/grafana",
    }
    table = README.split("## HTTP interface")[1].split("##")[0]
    documented = set(re.findall(r"`(?:GET|POST) (/[^`?\s]*)", table))
    assert documented <= routes, documented - routes


async def test_webhook_payload_example_is_what_is_sent(sqlite_url: str) -> None:
    import asyncio

    from tests.sinks import WebhookSink, serve

    (documented,) = [json.loads(b) for b in doc_blocks("json") if '"version": "alertrelay/1"' in b]
    quick = re.search(r"<<'EOF'\n(.*?)\nEOF", blocks("sh")[2], re.S)
    assert quick is not None
    sink = WebhookSink()
    with serve(sink) as url:
        config = f"""
runbooks: {{default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"}}
route: {{receiver: page}}
receivers: [{{name: page, webhook_configs: [{{url: "{url}/hook"}}]}}]
"""
        async with running_app(sqlite_url, config) as (app, client):
            await client.post(
                "/webhook/alertmanager", content=quick.group(1).encode(), headers=JSON
            )
            async with asyncio.timeout(10):
                await app.state.services.delivery.drain()
    (sent,) = sink.bodies()
    assert len(sent["idempotency_key"]) == 64
    for varying in ("idempotency_key", "notification_id"):
        sent.pop(varying)
        documented.pop(varying)
    assert sent == documented


def test_one_receiver_of_each_kind_loads(tmp_path: Path) -> None:
    from app.delivery.preview import render_requests
    from app.notifiers import CONFIG_MODELS

    (block,) = [b for b in doc_blocks("yaml") if "name: everything" in b]
    runtime = compile_config(parse_config(with_secret_files(block, tmp_path), "README", {}))
    integrations = runtime.receivers["everything"]
    assert [i.name for i in integrations] == [name for name, _ in CONFIG_MODELS.values()]
    rendered = render_requests(
        runtime, {"alertname": "DiskFull", "severity": "critical"}, {"summary": "full"}
    )
    assert rendered.count("--- everything/") == len(CONFIG_MODELS)
    assert "0123456789abcdef0123456789abcdef" not in rendered  # secrets redacted


def test_template_example_compiles(tmp_path: Path) -> None:
    (block,) = [b for b in doc_blocks("yaml") if b.startswith("slack_configs:")]
    indented = "\n".join("    " + line for line in block.splitlines())
    text = f"route: {{receiver: r}}\nreceivers:\n  - name: r\n{indented}\n"
    loaded = parse_config(with_secret_files(text, tmp_path), "README", {})
    assert loaded.config.receivers[0].slack_configs[0].title is not None


def test_retention_block_is_the_defaults() -> None:
    import yaml

    from app.config.fields import parse_duration
    from app.config.sections import RetentionConfig

    (block,) = [b for b in blocks("yaml", "Retention and audit") if b.startswith("retention:")]
    documented = {k: parse_duration(v) for k, v in yaml.safe_load(block)["retention"].items()}
    assert documented == dict(RetentionConfig())


def test_prune_dry_run_output_is_what_the_command_prints(tmp_path: Path) -> None:
    import os

    command, expected = _text_block("$ alertrelay prune --dry-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env["ALERTRELAY_DATABASE_URL"] = f"sqlite:///{tmp_path / 'alertrelay.db'}"
    migrate = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert migrate.returncode == 0, migrate.stderr
    out = subprocess.run(
        [sys.executable, "-m", "app", *command.split()[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


async def test_quick_start_shows_the_builtin_runbook(sqlite_url: str) -> None:
    """The quick start runs on the built-in config; the runbook link it promises is the one served."""
    from app.config.model import BUILTIN_CONFIG

    quick = blocks("sh")[2]
    payload = re.search(r"<<'EOF'\n(.*?)\nEOF", quick, re.S)
    assert payload is not None
    async with running_app(sqlite_url, BUILTIN_CONFIG) as (_, client):
        await client.post("/webhook/alertmanager", content=payload.group(1).encode(), headers=JSON)
        fp = json.loads(payload.group(1))["alerts"][0]["fingerprint"]
        detail = (await client.get(f"/api/v1/alerts/{fp}")).json()
    assert detail["runbook_url"] == "https://runbooks.example.com/diskfull"
    assert '"runbook_url": "https://runbooks.example.com/diskfull"' in README


async def test_acknowledge_example_answers_as_documented(sqlite_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from app.ops.clock import ManualClock

    section = README.split("\n## Acknowledge\n", 1)[1].split("\n## ", 1)[0]
    (yaml_block,) = blocks("yaml", "Acknowledge")
    config = parse_config(
        with_secret_files(yaml_block, tmp_path)
        + "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n",
        "readme",
    ).config
    assert config.ack_links() == (
        "https://alertrelay.example.com",
        b"0123456789abcdef0123456789abcdef",
    )
    curl, cli = blocks("sh", "Acknowledge")
    ack_body = re.search(r"-d '(\{.*?\})'", curl)
    assert ack_body is not None
    quick = re.search(r"<<'EOF'\n(.*?)\nEOF", blocks("sh")[2], re.S)
    assert quick is not None
    fp = json.loads(quick.group(1))["alerts"][0]["fingerprint"]
    assert f"/api/v1/alerts/{fp}/ack" in curl and f"ack {fp} --by carol --for 2h" in cli
    admin = "readme-admin-token-0123456789"
    clock = ManualClock(datetime(2026, 11, 22, 10, 5, tzinfo=UTC))
    app_config = (
        f"auth: {{admin_token: {admin}}}\n"
        "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n"
    )
    async with running_app(sqlite_url, app_config, clock=clock) as (_, client):
        r = await client.post("/webhook/alertmanager", content=quick.group(1), headers=JSON)
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {admin}", **JSON}
        r = await client.post(
            f"/api/v1/alerts/{fp}/ack", content=ack_body.group(1), headers=headers
        )
        assert r.status_code == 200
        assert json.dumps(r.json(), separators=(",", ":")) in section
        r = await client.delete(f"/api/v1/alerts/{fp}/ack", headers=headers)
        assert r.status_code == 200 and r.json()["ack"] is None


def test_escalate_and_heartbeats_examples() -> None:
    from app.core.heartbeats import labels as missing_labels
    from app.core.heartbeats import proven

    routes, beats = blocks("yaml", "Escalate and heartbeats")
    runtime = compile_config(parse_config(routes + beats, "readme"))
    info = describe_routes(runtime, {"alertname": "DiskFull", "severity": "critical"})
    assert [(s["after_s"], s["receiver"]) for s in info["escalate"]] == [
        (900.0, "page-secondary"),
        (2700.0, "engineering-manager"),
    ]
    watchdog = {"alertname": "Watchdog", "cluster": "prod"}
    assert proven(runtime.heartbeats, [watchdog]) == {"prod-alertmanager"}
    assert proven(runtime.heartbeats, [{**watchdog, "cluster": "dev"}]) == set()
    missing = describe_routes(runtime, missing_labels("prod-alertmanager"))
    assert [r["receiver"] for r in missing["receivers"]] == ["page"]
    section = README.split("\n## Escalate and heartbeats\n", 1)[1].split("\n## ", 1)[0]
    assert "Escalated: firing for 15m, notified: page" in section
