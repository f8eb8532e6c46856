"""Logs that answer "why did my webhook not arrive?", read from real processes."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.harness import alertrelay, wait_until
from tests.helpers import am_alert, am_webhook, body

TOKEN = "s3cret-webhook-t0ken"
CONFIG = f"auth: {{webhook_token: {TOKEN}}}\nserver: {{max_body_size: 2048}}\nroute: {{receiver: log}}\nreceivers: [{{name: log, log_configs: [{{}}]}}]\n"


def lines(text: str) -> list[dict[str, Any]]:
    """The log lines (stderr); the log integration's notification lines share the file but have no "msg"."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)  # every line we write is one JSON object
            if "msg" in entry:
                out.append(entry)
    return out


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(
        url + "/webhook/alertmanager", data=data, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.headers["X-Request-Id"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["X-Request-Id"]


def test_each_rejected_webhook_is_one_warning_with_id_source_status_and_reason(
    tmp_path: Path,
) -> None:
    payload = body(am_webhook([am_alert({"alertname": "Lost"})]))
    cases = [
        (
            {"Content-Type": "application/json", "Authorization": "Bearer wrong-guess-token"},
            payload,
            401,
            "missing or invalid credentials",
        ),
        ({"Content-Type": "application/json"}, payload, 401, "missing or invalid credentials"),
        (
            {"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"},
            payload,
            415,
            "application/json",
        ),
        (
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            b"{not json",
            400,
            "malformed JSON",
        ),
        (
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            b"{" + b" " * 4096 + b"}",
            413,
            "",
        ),
    ]
    with alertrelay(tmp_path, CONFIG) as relay:
        answered = []
        for headers, data, status, _ in cases:
            code, rid = post(relay.url, data, headers)
            assert code == status
            answered.append(rid)
        good, _ = post(
            relay.url,
            payload,
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        assert good == 200
        wait_until(
            lambda: (
                sum(1 for e in lines(relay.log()) if e.get("msg") == "webhook rejected")
                >= len(cases)
            ),
            10,
            what="the warnings",
        )
        log_text = relay.log()
    rejected = [e for e in lines(log_text) if e.get("msg") == "webhook rejected"]
    assert len(rejected) == len(cases)  # the accepted one is not among them
    for entry, rid, (_, _, status, reason) in zip(rejected, answered, cases, strict=True):
        assert entry["level"] == "warning" and entry["logger"] == "app.web.webhook"
        assert entry["request_id"] == rid  # the X-Request-Id the sender got
        assert entry["status"] == status and reason in entry["reason"]
        assert entry["client"] == "127.0.0.1" and entry["source"] == "alertmanager"
        assert set(entry) >= {
            "ts",
            "level",
            "logger",
            "msg",
            "request_id",
            "status",
            "reason",
            "client",
            "source",
        }
    # Neither the right token nor the wrong guess is ever written.
    assert TOKEN not in log_text and "wrong-guess-token" not in log_text
    # Without the access log, an accepted request leaves no request line.
    assert not [e for e in lines(log_text) if e.get("msg") == "request"]


def test_access_log_at_info_from_the_environment(tmp_path: Path) -> None:
    with alertrelay(tmp_path, CONFIG, env={"ALERTRELAY_ACCESS_LOG": "1"}) as relay:
        code, rid = post(
            relay.url,
            body(am_webhook([am_alert({"alertname": "Seen"})])),
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        assert code == 200
        wait_until(
            lambda: [
                e
                for e in lines(relay.log())
                if e.get("msg") == "request" and e.get("request_id") == rid
            ],
            10,
            what="the access line",
        )
        log_text = relay.log()
    (entry,) = [
        e for e in lines(log_text) if e.get("msg") == "request" and e.get("request_id") == rid
    ]
    assert entry["level"] == "info" and entry["logger"] == "alertrelay.access"
    assert (
        entry["method"] == "POST"
        and entry["path"] == "/webhook/alertmanager"
        and entry["status"] == 200
    )
    assert entry["client"] == "127.0.0.1" and isinstance(entry["ms"], float)
    assert TOKEN not in log_text
    # Info level, not debug: no driver chatter came with it.
    assert not [e for e in lines(log_text) if e.get("level") == "debug"]


def test_access_log_from_the_config_file(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "server: {max_body_size: 2048}", "server: {max_body_size: 2048, access_log: true}"
    )
    with alertrelay(tmp_path, config) as relay:
        urllib.request.urlopen(relay.url + "/live", timeout=5).read()  # noqa: S310
        wait_until(
            lambda: [
                e for e in lines(relay.log()) if e.get("msg") == "request" and e["path"] == "/live"
            ],
            10,
            what="the access line",
        )


def test_worker_logs_start_config_version_and_shutdown(tmp_path: Path) -> None:
    config = tmp_path / "worker.yml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    env["ALERTRELAY_DATABASE_URL"] = f"sqlite:///{tmp_path}/w.db"
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(
            lambda: [
                e
                for e in lines(log_path.read_text())
                if e.get("msg") == "alertrelay worker started"
            ],
            30,
            what="the start line",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    entries = lines(log_path.read_text())
    (started,) = [e for e in entries if e.get("msg") == "alertrelay worker started"]
    assert (
        started["level"] == "info"
        and started["config"] == str(config)
        and started["db"] == "sqlite"
    )
    assert len(started["config_version"]) == 12 and started["version"] and started["worker_id"]
    assert entries[-1]["msg"] == "alertrelay worker stopped"
    assert TOKEN not in log_path.read_text()
