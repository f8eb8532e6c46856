"""Real processes on 127.0.0.1: alertrelay ``serve`` and the Alertmanager binary.

Every wait is bounded in time; every process is killed by PID at the end.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None, reason="Alertmanager binary not installed"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], T | None],
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str | Callable[[], str] = "",
) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
        time.sleep(interval)
    described = what() if callable(what) else what
    raise AssertionError(
        f"timed out after {timeout}s waiting for {described or check}: {last_error}"
    )


def http_json(
    method: str,
    url: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        body = resp.read()
    return json.loads(body) if body else None


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)


@contextlib.contextmanager
def alertrelay(
    tmp: Path,
    config: str,
    db_url: str | None = None,
    env: dict[str, str] | None = None,
    name: str = "alertrelay",
) -> Iterator[Proc]:
    port = free_port()
    config_path = tmp / f"{name}.yml"
    config_path.write_text(config)
    log_path = tmp / f"{name}.log"
    full_env = {
        **os.environ,
        "ALERTRELAY_DATABASE_URL": db_url or f"sqlite:///{tmp}/{name}.db",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    proc = Proc(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(
            lambda: process.poll() is None and http_json("GET", proc.url + "/ready"),
            30,
            what=lambda: f"{name} ready; its log:\n{proc.log()}",
        )
        yield proc
    finally:
        proc.kill(signal.SIGTERM) if process.poll() is None else None
        if process.poll() is None:
            proc.kill()


@contextlib.contextmanager
def alertmanager(tmp: Path, config: str, name: str = "am") -> Iterator[Proc]:
    assert ALERTMANAGER
    port = free_port()
    config_path = tmp / f"{name}.yml"
    config_path.write_text(config)
    storage = tmp / f"{name}-data"
    storage.mkdir(exist_ok=True)
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                f"--storage.path={storage}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc = Proc(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(
            lambda: process.poll() is None and http_json("GET", proc.url + "/api/v2/status"),
            30,
            what="alertmanager up",
        )
        yield proc
    finally:
        proc.kill(signal.SIGTERM) if process.poll() is None else None


def am_post_alerts(am: Proc, alerts: list[dict[str, Any]]) -> None:
    http_json("POST", am.url + "/api/v2/alerts", alerts)


def alertmanager_config(
    webhook_url: str,
    token_file: Path,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "2s",
) -> str:
    return f"""
route:
  receiver: alertrelay
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: alertrelay
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {token_file}
"""
