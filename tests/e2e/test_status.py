"""`alertrelay status` as a monitoring plugin: every exit code, run as a process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from tests.e2e.harness import alertrelay, free_port, http_json, wait_until
from tests.helpers import am_alert, am_webhook
from tests.sinks import Reply, WebhookSink, serve

LOG = "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n"


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "app", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def one_line(result: subprocess.CompletedProcess[str], state: str) -> str:
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ALERTRELAY {state} - "), (
        result.stdout + result.stderr
    )
    return lines[0]


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_ok_follows_alertrelay_port_and_the_config_file(tmp_path: Path) -> None:
    with alertrelay(tmp_path, LOG) as relay:
        port = port_of(relay.url)
        # ALERTRELAY_PORT, as `serve` reads it; the default :8080 is not it.
        result = status(env={"ALERTRELAY_PORT": port})
        assert result.returncode == 0
        line = one_line(result, "OK")
        assert line.endswith("backlog 0, dead letters 0 | backlog=0;100;;0 dead=0;0;;0")
        # --config with server.port, and ALERTRELAY_CONFIG the same way.
        config = tmp_path / "status.yml"
        config.write_text(f"server: {{port: {port}}}\n" + LOG)
        assert status("--config", str(config)).returncode == 0
        assert status(env={"ALERTRELAY_CONFIG": str(config)}).returncode == 0
        # A wildcard listen address is probed on loopback.
        assert status(env={"ALERTRELAY_PORT": port, "ALERTRELAY_HOST": "0.0.0.0"}).returncode == 0
        # --live: only that the process answers (the container healthcheck).
        live = status("--live", "--url", relay.url)
        assert live.returncode == 0 and one_line(live, "OK")


def test_warning_when_the_backlog_is_over_its_threshold(tmp_path: Path) -> None:
    with serve(WebhookSink()) as sink_url:
        pass  # a port that refused connections a moment ago: deliveries keep retrying
    config = f"route: {{receiver: hook}}\nreceivers: [{{name: hook, webhook_configs: [{{url: '{sink_url}/x'}}]}}]\n"
    with alertrelay(tmp_path, config) as relay:
        http_json(
            "POST",
            relay.url + "/webhook/alertmanager",
            am_webhook([am_alert({"alertname": "Stuck"})]),
        )
        wait_until(
            lambda: (
                http_json("GET", relay.url + "/health?detailed=true")["delivery"]["backlog"] == 1
            ),
            20,
            what="a backlog of 1",
        )
        result = status("--url", relay.url, "--warn-backlog", "0")
        assert result.returncode == 1
        assert "backlog 1, dead letters 0 | backlog=1;0;;0" in one_line(result, "WARNING")
        assert status("--url", relay.url).returncode == 0  # under the default threshold of 100


def test_critical_when_nothing_listens() -> None:
    result = status("--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert result.returncode == 2
    assert "unreachable" in one_line(result, "CRITICAL")


@pytest.mark.postgres
def test_critical_when_its_database_is_gone(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("ALERTRELAY_TEST_POSTGRES_URL is not set")
    db_url = create_pg_database("alertrelay_status")
    try:
        with alertrelay(tmp_path, LOG, db_url=db_url) as relay:
            assert status("--url", relay.url).returncode == 0
            drop_pg_database(db_url)  # terminates its connections; new ones fail
            wait_until(
                lambda: status("--url", relay.url).returncode == 2,
                30,
                what="CRITICAL after the database went away",
            )
            result = status("--url", relay.url)
            assert "unhealthy (HTTP 503)" in one_line(result, "CRITICAL")
    finally:
        drop_pg_database(db_url)


def test_unknown_for_what_the_check_cannot_judge(tmp_path: Path) -> None:
    for bad in (
        "localhost:8080",
        "ftp://127.0.0.1:21",
        "http://",
        "http://127.0.0.1:http",
        "http://127.0.0.1:8080/?x=1",
    ):
        result = status("--url", bad)
        assert result.returncode == 3, (bad, result.stdout)
        assert "invalid --url" in one_line(result, "UNKNOWN")
    # Usage errors: argparse's own exit 2 would read as CRITICAL.
    for args in (["--bogus"], ["--timeout", "soon"], ["--warn-backlog"], ["--timeout", "0"]):
        result = status(*args)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert "usage:" in one_line(result, "UNKNOWN")
    result = status(env={"ALERTRELAY_PORT": "eighty"})
    assert result.returncode == 3 and "ALERTRELAY_PORT='eighty'" in one_line(result, "UNKNOWN")
    # A 404: alertrelay is there, but this URL is not its root.
    with alertrelay(tmp_path, LOG) as relay:
        result = status("--url", relay.url + "/prefix")
        assert result.returncode == 3 and "HTTP 404" in one_line(result, "UNKNOWN")
    # Something else answers: 200 that is not alertrelay's health document.
    sink = WebhookSink()
    sink.default = Reply(status=200, body="<html>hello</html>")  # type: ignore[misc]
    with serve(sink) as url:
        result = status("--url", url)
        assert result.returncode == 3 and "is not alertrelay's answer" in one_line(
            result, "UNKNOWN"
        )
        sink.default = Reply(status=200, body={"status": "healthy"})  # type: ignore[misc]
        result = status("--url", url)
        assert result.returncode == 3 and one_line(result, "UNKNOWN")


def test_help_documents_the_exit_codes_and_the_environment() -> None:
    result = status("--help")
    assert result.returncode == 0
    for text in (
        "3 UNKNOWN",
        "2 CRITICAL",
        "ALERTRELAY_PORT",
        "ALERTRELAY_CONFIG",
        "--warn-backlog",
        "default 100",
        "SECONDS",
    ):
        assert text in result.stdout, text


def test_a_check_loads_none_of_the_service_it_checks() -> None:
    # Run every few seconds by a plugin runner: importing SQLAlchemy, the
    # config model and the notifiers cost ~0.6 s of CPU per check.
    code = (
        "import sys; from app.cli import main; "
        "rc = main(['status', '--live', '--url', 'http://127.0.0.1:9', '--timeout', '1']); "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} "
        "& {'sqlalchemy', 'pydantic', 'httpx', 'starlette', 'yaml', 'jinja2'}); "
        "print(rc, heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines()[-1] == "2 []", (result.stdout, result.stderr)
    assert "ALERTRELAY CRITICAL - http://127.0.0.1:9 unreachable" in result.stdout
    # And a usage error is still UNKNOWN through the full command's entry.
    result = status("--bogus")
    assert result.returncode == 3 and "unrecognized arguments: --bogus" in result.stdout
