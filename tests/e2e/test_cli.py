"""The alertrelay command line, run as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, http_json, wait_until
from tests.helpers import JSON, am_alert, am_webhook, body

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
runbooks:
  default: "https://runbooks.example.com/{{ labels.alertname | lower }}"
  rules:
    - matchers: ['alertname=~"Disk.*"']
      url: "https://wiki.example.com/storage#{{ labels.alertname }}"
route:
  receiver: chat
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: blackhole
      flapping: {enabled: false}
    - matchers: ['severity="critical"']
      receiver: page
      continue: true
    - matchers: ['severity=~"critical|warning"']
      receiver: chat
receivers:
  - name: page
    pagerduty_configs: [{routing_key: 0123456789abcdef0123456789abcdef}]
  - name: chat
    slack_configs: [{api_url: "https://hooks.slack.com/services/T/B/SECRET"}]
  - name: blackhole
"""


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "alertrelay.yml"
    path.write_text(CONFIG)
    return path


def test_check_config_ok_and_errors(tmp_path: Path, config_file: Path) -> None:
    ok = run("check-config", str(config_file))
    assert ok.returncode == 0
    assert ok.stdout.startswith(
        f"{config_file}: OK, 3 receivers, 2 integrations, 4 routes, 1 runbook rules"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(
        CONFIG.replace("routing_key: 0123456789abcdef0123456789abcdef", "url: x") + "bogus: 1\n"
    )
    result = run("check-config", str(bad))
    assert result.returncode == 1
    assert (
        "receivers[0].pagerduty_configs[0].routing_key: required (or routing_key_file)"
        in result.stderr
    )
    assert (
        "receivers[0].pagerduty_configs[0].url: 'x' must be an absolute http:// or https:// URL"
        in result.stderr
    )
    assert "bogus: unknown key" in result.stderr
    missing = run("check-config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_routes_test_like_amtool(config_file: Path) -> None:
    result = run(
        "routes", "test", "--config", str(config_file), "alertname=DiskFull", "severity=critical"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "page, chat"
    assert (
        "runbook:  https://wiki.example.com/storage#DiskFull (runbooks.rules[0])" in result.stdout
    )
    assert "page/pagerduty/0" in result.stdout and "chat/slack/0" in result.stdout
    assert "SECRET" not in result.stdout and "0123456789abcdef" not in result.stdout
    watchdog = run("routes", "test", "--config", str(config_file), "--json", "alertname=Watchdog")
    info = json.loads(watchdog.stdout)
    assert [r["receiver"] for r in info["receivers"]] == ["blackhole"]
    assert info["flapping"]["enabled"] is False
    assert info["routes"] == ["route.routes[0]"]
    usage = run("routes", "test", "--config", str(config_file), "novalue")
    assert usage.returncode == 2 and "LABEL=VALUE" in usage.stderr


def test_runbook_command(config_file: Path) -> None:
    result = run("runbook", "--config", str(config_file), "alertname=CPUHigh")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "https://runbooks.example.com/cpuhigh",
        "  from runbooks.default",
    ]


def test_example_config_prints_and_validates(tmp_path: Path) -> None:
    result = run("example-config")
    assert result.returncode == 0 and "route:" in result.stdout
    path = tmp_path / "example.yml"
    path.write_text(result.stdout)
    env = {
        "ALERTRELAY_WEBHOOK_TOKEN": "t",
        "ALERTRELAY_ADMIN_TOKEN": "a",
        "PAGERDUTY_ROUTING_KEY": "k",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "TEAMS_WEBHOOK_URL": "https://x.logic.azure.com/workflows/1",
    }
    assert run("check-config", str(path), env=env).returncode == 0
    unset = run("check-config", str(path), env={k: "" for k in env} | {"PATH": os.environ["PATH"]})
    assert unset.returncode == 1


def test_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    result = run("migrate", env={"ALERTRELAY_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(head)")
    assert (tmp_path / "m.db").exists()
    bad = run("migrate", env={"ALERTRELAY_DATABASE_URL": "mysql://x/y"})
    assert bad.returncode == 1 and "unsupported database" in bad.stderr


def test_serve_on_the_builtin_defaults_and_status(tmp_path: Path) -> None:
    """`alertrelay serve` with no config: SQLite ./alertrelay.db, one log receiver."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_json("GET", url + "/ready"), 30, what="default serve ready")
        info = http_json("GET", url + "/health?detailed=true")
        assert info["config"]["source"] == "built-in" and info["database"]["kind"] == "sqlite"
        status = run("status", "--url", url)
        assert status.returncode == 0 and status.stdout.startswith("ALERTRELAY OK")
        import urllib.request

        req = urllib.request.Request(
            url + "/webhook/alertmanager",
            data=body(am_webhook([am_alert({"alertname": "Quick"})])),
            headers=JSON,
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            assert resp.status == 200
        alerts = http_json("GET", url + "/api/v1/alerts")["alerts"]
        assert [a["alertname"] for a in alerts] == ["Quick"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert (tmp_path / "alertrelay.db").exists()
    # uvicorn finishes its shutdown, then re-raises the SIGTERM it caught.
    assert proc.returncode == -signal.SIGTERM, out.decode()
    assert b"Application shutdown complete" in out
    dead = run("status", "--url", f"http://127.0.0.1:{port}")
    assert dead.returncode == 2 and dead.stdout.startswith("ALERTRELAY CRITICAL")


def test_serve_takes_config_database_host_and_port_from_the_environment(tmp_path: Path) -> None:
    """ALERTRELAY_CONFIG, _DATABASE_URL, _HOST, _PORT, _LOG_LEVEL without flags."""
    port = free_port()
    config = tmp_path / "env.yml"
    config.write_text(
        "route: {receiver: from-env}\nreceivers: [{name: from-env, log_configs: [{}]}]\n"
    )
    db = tmp_path / "elsewhere.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env |= {
        "ALERTRELAY_CONFIG": str(config),
        "ALERTRELAY_DATABASE_URL": f"sqlite:///{db}",
        "ALERTRELAY_HOST": "127.0.0.1",
        "ALERTRELAY_PORT": str(port),
        "ALERTRELAY_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_json("GET", url + "/ready"), 30, what="serve from the environment ready"
        )
        info = http_json("GET", url + "/health?detailed=true")
        assert info["config"]["source"] == str(config), info["config"]
        import urllib.request

        req = urllib.request.Request(
            url + "/webhook/alertmanager",
            data=body(am_webhook([am_alert({"alertname": "Env"})])),
            headers=JSON,
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            assert resp.status == 200
        detail = http_json("GET", url + "/api/v1/alerts")["alerts"][0]
        detail = http_json("GET", url + f"/api/v1/alerts/{detail['fingerprint']}")
        assert {n["receiver"] for n in detail["notifications"]} == {"from-env"}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert db.exists() and not (tmp_path / "alertrelay.db").exists()
    # At warning level the info lines of start-up are not printed.
    assert b'"level": "info"' not in out and b'"level":"info"' not in out, out.decode()[:2000]


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("route: {receiver: nope}\nreceivers: [{name: r}]\n")
    result = run("serve", "--config", str(path), "--port", "1")
    assert result.returncode == 1
    assert "route.receiver: no receiver named 'nope'" in result.stderr


def test_serve_refuses_an_unwritable_database(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write read-only files")
    db = tmp_path / "ro.db"
    assert run("migrate", env={"ALERTRELAY_DATABASE_URL": f"sqlite:///{db}"}).returncode == 0
    db.chmod(0o444)
    result = run("serve", "--port", "1", env={"ALERTRELAY_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode != 0


RENDER_KEY = "f00dfeedf00dfeedf00dfeedf00dfeed"  # PagerDuty routing key: a secret
SLACK_KEY = "SLACKPATHSECRETabc123xyz"  # the credential at the end of a Slack webhook path


def _requests(stdout: str) -> dict[str, tuple[str, dict[str, str], dict[str, object]]]:
    """``--- key: METHOD URL``, header lines, a blank line, the JSON body: by integration key."""
    out = {}
    for chunk in stdout.split("\n--- ")[1:]:
        head, _, rest = chunk.partition("\n\n")
        first, *header_lines = head.splitlines()
        key, _, request_line = first.partition(": ")
        headers = dict(line.split(": ", 1) for line in header_lines)
        out[key] = (request_line, headers, json.loads(rest))
    return out


def test_routes_test_render_prints_each_request_and_sends_nothing(tmp_path: Path) -> None:
    from tests.sinks import FakePagerDuty, WebhookSink, serve

    pagerduty, slack = FakePagerDuty(), WebhookSink()
    with serve(pagerduty) as pd_url, serve(slack) as slack_url:
        slack_hook = f"{slack_url}/services/T0000/B0000/{SLACK_KEY}"
        config = tmp_path / "render.yml"
        config.write_text(f"""
runbooks:
  default: "https://runbooks.example.com/{{{{ labels.alertname | lower }}}}"
route:
  receiver: chat
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      continue: true
    - matchers: ['severity=~"critical|warning"']
      receiver: chat
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {RENDER_KEY}, url: "{pd_url}/v2/enqueue"}}]
  - name: chat
    slack_configs: [{{api_url: "{slack_hook}", title: "{{{{ labels.team }}}}: {{{{ default_title }}}}"}}]
""")
        args = [
            "routes",
            "test",
            "--config",
            str(config),
            "--render",
            "alertname=DiskFull",
            "severity=critical",
            "team=storage",
        ]
        result = run(*args, "--annotation", "summary=Disk on db-1 is 95% full")
        resolved = run(*args, "--kind", "resolved")
        assert pagerduty.requests() == [] and slack.requests() == []  # printed, sent nowhere
    assert result.returncode == 0, result.stderr
    assert resolved.returncode == 0, resolved.stderr
    for out in (result, resolved):
        for secret in (RENDER_KEY, SLACK_KEY, slack_hook):
            assert secret not in out.stdout and secret not in out.stderr

    requests = _requests(result.stdout)
    assert list(requests) == ["page/pagerduty/0", "chat/slack/0"]
    runbook = "https://runbooks.example.com/diskfull"

    line, headers, event = requests["page/pagerduty/0"]
    assert line == f"POST {pd_url}/v2/enqueue"
    assert headers == {"Content-Type": "application/json"}
    assert event["routing_key"] == "<redacted>" and event["event_action"] == "trigger"
    assert str(event["dedup_key"]).startswith("alertrelay/")
    details = event["payload"]
    assert isinstance(details, dict)
    assert details["summary"] == "[FIRING] DiskFull (critical): Disk on db-1 is 95% full"
    assert details["severity"] == "critical"
    assert details["custom_details"]["labels"] == {
        "alertname": "DiskFull",
        "severity": "critical",
        "team": "storage",
    }
    assert event["links"] == [{"href": runbook, "text": "Runbook"}]

    line, headers, message = requests["chat/slack/0"]
    # The webhook's key is hidden; where it goes stays readable.
    assert line == f"POST {slack_url}/services/T0000/B0000/<redacted>"
    assert headers == {"Content-Type": "application/json"}
    title = "storage: [FIRING] DiskFull (critical): Disk on db-1 is 95% full"  # the title override, rendered
    assert message["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*", "verbatim": True}}
    ]
    assert str(message["text"]).startswith(title + "\nDisk on db-1 is 95% full")
    (attachment,) = message["attachments"]  # type: ignore[misc]
    buttons = [e for b in attachment["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [("Runbook", runbook)]

    later = _requests(resolved.stdout)
    assert later["page/pagerduty/0"][2]["event_action"] == "resolve"
    assert later["page/pagerduty/0"][2]["routing_key"] == "<redacted>"
    assert "[RESOLVED] DiskFull" in str(later["chat/slack/0"][2]["text"])


@pytest.mark.parametrize(
    ("url", "secrets", "shown"),
    [
        # The notifier names the credential part: only that part is hidden.
        (
            "https://hooks.slack.com/services/T0/B0/KEYKEY123",
            ["https://hooks.slack.com/services/T0/B0/KEYKEY123", "KEYKEY123"],
            "https://hooks.slack.com/services/T0/B0/<redacted>",
        ),
        (
            "https://discord.com/api/webhooks/42/TOKTOK987",
            ["https://discord.com/api/webhooks/42/TOKTOK987", "TOKTOK987"],
            "https://discord.com/api/webhooks/42/<redacted>",
        ),
        # A secret URL with no part named, or with user:password@, shows where it goes only.
        (
            "https://hook.example:8443/in?token=abcdef",
            ["https://hook.example:8443/in?token=abcdef"],
            "https://hook.example:8443/<redacted>",
        ),
        (
            "https://u:pw@mm.example/hooks/KEYKEY123",
            ["https://u:pw@mm.example/hooks/KEYKEY123", "KEYKEY123"],
            "https://mm.example/<redacted>",
        ),
        # A URL that is no secret (PagerDuty's key travels in the body) is shown as it is.
        (
            "https://events.pagerduty.com/v2/enqueue",
            ["f00dfeedf00dfeed"],
            "https://events.pagerduty.com/v2/enqueue",
        ),
    ],
)
def test_preview_urls_hide_exactly_the_secret_parts(
    url: str, secrets: list[str], shown: str
) -> None:
    from app.delivery.preview import shown_url

    assert shown_url(url, secrets) == shown


THREE_MISTAKES = """
database:
  url: mysql://root@db/alertrelay
route:
  receiver: nowhere
receivers:
  - name: chat
    slack_configs:
      - api_url: https://hooks.slack.com/services/T/B/X
        title: "{{ labels.alertname "
        text: "{% if %}"
"""


def test_check_config_reports_every_problem_in_one_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(THREE_MISTAKES)
    result = run("check-config", str(bad))
    assert result.returncode == 1
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert result.stderr.splitlines()[0] == f"{bad}: invalid config, 4 problem(s)"
    assert problems[0].startswith("receivers[0].slack_configs[0].title: template error")
    assert problems[1].startswith(
        "receivers[0].slack_configs[0].text: template error"
    )  # not hidden by the title
    assert (
        problems[2] == "route.receiver: no receiver named 'nowhere'"
    )  # a reference error beside structural ones
    assert (
        problems[3] == "database.url: unsupported database 'mysql': use sqlite:/// or postgresql://"
    )  # as serve refuses it


def test_check_config_takes_the_file_like_every_command(tmp_path: Path, config_file: Path) -> None:
    clean = {k: "" for k in os.environ if k.startswith("ALERTRELAY_")}
    assert run("check-config", str(config_file), env=clean).returncode == 0
    assert run("check-config", "--config", str(config_file), env=clean).returncode == 0
    assert run("check-config", env={**clean, "ALERTRELAY_CONFIG": str(config_file)}).returncode == 0
    none = run("check-config", env=clean)
    assert none.returncode == 2 and "ALERTRELAY_CONFIG" in none.stderr
    # The database URL from the environment is checked too, as serve would use it.
    env_db = run(
        "check-config", str(config_file), env={**clean, "ALERTRELAY_DATABASE_URL": "sqlite://"}
    )
    assert (
        env_db.returncode == 1
        and "ALERTRELAY_DATABASE_URL: SQLite needs a file path" in env_db.stderr
    )


def test_environment_errors_are_one_line_naming_the_variable(tmp_path: Path) -> None:
    for name, value, accepts in (
        ("ALERTRELAY_PORT", "http", "a port number, 0 to 65535"),
        ("ALERTRELAY_LOG_LEVEL", "loud", "one of debug, info"),
        ("ALERTRELAY_ACCESS_LOG", "maybe", "1, true"),
    ):
        result = run("serve", env={name: value}, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(
            f"alertrelay: {name}={value!r} is invalid: expected {accepts}"
        )
    assert not (tmp_path / "alertrelay.db").exists()


def test_routes_test_and_runbook_without_secrets(tmp_path: Path) -> None:
    example = ROOT / "app" / "examples" / "alertrelay.yml"
    env = {
        k: ""
        for k in (
            "SLACK_WEBHOOK_URL",
            "PAGERDUTY_ROUTING_KEY",
            "TEAMS_WEBHOOK_URL",
            "ALERTRELAY_WEBHOOK_TOKEN",
            "ALERTRELAY_ADMIN_TOKEN",
        )
    }
    clean = {k: v for k, v in os.environ.items() if k not in env}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "routes",
            "test",
            "--config",
            str(example),
            "severity=critical",
            "alertname=DiskFull",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "page"
    assert (
        "receivers[0].pagerduty_configs[0].routing_key: ${PAGERDUTY_ROUTING_KEY} is not set"
        in result.stderr
    )
    runbook = subprocess.run(
        [sys.executable, "-m", "app", "runbook", "--config", str(example), "alertname=DiskFull"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )
    assert runbook.returncode == 0 and runbook.stdout.startswith(
        "https://wiki.example.com/storage#diskfull"
    )
    # serve still refuses the same config: it would have to send.
    served = subprocess.run(
        [sys.executable, "-m", "app", "check-config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )
    assert served.returncode == 1 and "SLACK_WEBHOOK_URL is not set" in served.stderr


def test_dead_letters_without_a_migrated_database_says_what_to_do(tmp_path: Path) -> None:
    clean = {k: "" for k in os.environ if k.startswith("ALERTRELAY_")}
    result = run("dead-letters", env=clean, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "no database at sqlite:///alertrelay.db: run `alertrelay migrate`"
    )
    assert "--config" in result.stderr
    assert not (tmp_path / "alertrelay.db").exists()  # no empty file left behind
    (tmp_path / "alertrelay.db").touch()  # a file that was never migrated
    result = run("dead-letters", env=clean, cwd=tmp_path)
    assert result.returncode == 1 and "never migrated; run `alertrelay migrate`" in result.stderr


def test_serve_reports_a_port_clash_before_migrating(tmp_path: Path) -> None:
    import socket

    clean = {k: "" for k in os.environ if k.startswith("ALERTRELAY_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), env=clean, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (tmp_path / "alertrelay.db").exists()  # nothing migrated first


def test_every_commands_help_documents_config_and_the_environment() -> None:
    from app.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    commands = dict(sub.choices)
    commands["routes test"] = next(
        a for a in commands.pop("routes")._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices["test"]
    for name, command in commands.items():
        text = command.format_help()
        if any("--config" in a.option_strings for a in command._actions):
            assert "$ALERTRELAY_CONFIG" in text, name
    serve = commands["serve"].format_help()
    assert "$ALERTRELAY_PORT" in serve and "8080" in serve and "$ALERTRELAY_HOST" in serve
    assert "$ALERTRELAY_DATABASE_URL" in commands["dead-letters"].format_help()


RENDER_MAIL = """
global: {smtp_smarthost: "127.0.0.1:2525", smtp_from: "alerts@example.com", smtp_require_tls: false}
route: {receiver: r}
receivers:
  - name: r
    email_configs: [{to: "oncall@example.com", send_resolved: true}]
    webhook_configs: [{url: "http://127.0.0.1:9/hook", send_resolved: false}]
"""


def test_render_shows_each_mail_header_once_and_says_what_would_not_send(tmp_path: Path) -> None:
    config = tmp_path / "mail.yml"
    config.write_text(RENDER_MAIL)
    base = ["routes", "test", "--config", str(config), "--render"]
    firing = run(*base, "alertname=DiskFull")
    resolved = run(*base, "--kind", "resolved", "alertname=DiskFull")
    assert firing.returncode == 0 and resolved.returncode == 0, firing.stderr + resolved.stderr
    for out in (firing.stdout, resolved.stdout):
        # The mail's headers are part of its body: printed once, not twice.
        for header in ("From: alerts@example.com", "To: oncall@example.com", "Subject: "):
            assert len([ln for ln in out.splitlines() if ln.startswith(header)]) == 1, (header, out)
    assert "--- r/webhook/0: POST http://127.0.0.1:9/<redacted>" in firing.stdout
    assert (
        "--- r/webhook/0: would not send a resolved notice (send_resolved is false)"
        in resolved.stdout
    )
    assert "Subject: [RESOLVED] DiskFull" in resolved.stdout  # the mail still goes


def test_kind_without_render_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "mail.yml"
    config.write_text(RENDER_MAIL)
    result = run("routes", "test", "--config", str(config), "--kind", "resolved", "alertname=X")
    assert result.returncode == 2
    assert "--kind only applies with --render" in result.stderr
    assert result.stdout == ""
