"""Slow and broken clients against a real `alertrelay serve` process."""

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import alertrelay, http_json, wait_until
from tests.helpers import LOG_CONFIG, am_alert, am_webhook

pytestmark = pytest.mark.slow

CONFIG = "ingest: {body_timeout: 1s}\n" + LOG_CONFIG


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _headers(length: int) -> bytes:
    return (
        f"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_all(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data  # closed by the server
        data += chunk


def _webhook_codes(url: str) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("alertrelay_webhooks_total{"):
            code = line.split('code="')[1].split('"')[0]
            out[code] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_body_shorter_than_announced_gets_408_and_the_connection_closes(tmp_path: Path) -> None:
    with alertrelay(tmp_path, CONFIG) as proc:
        sock = _connect(proc.url)
        started = time.monotonic()
        sock.sendall(_headers(1000) + b'{"version"')
        answer = _read_all(sock, 10)  # raises if the server holds the connection open
        elapsed = time.monotonic() - started
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"not received within 1s" in answer
        assert 0.9 < elapsed < 5, elapsed
        # Nothing was stored, the server is fine, and the 408 is counted.
        assert http_json("GET", proc.url + "/api/v1/alerts")["alerts"] == []
        assert _webhook_codes(proc.url).get("408") == 1


def test_clients_that_disconnect_mid_body_count_as_499_without_a_traceback(tmp_path: Path) -> None:
    payload = json.dumps(am_webhook([am_alert({"alertname": "Gone"})])).encode()
    with alertrelay(tmp_path, CONFIG) as proc:
        for _ in range(20):
            sock = _connect(proc.url)
            sock.sendall(_headers(len(payload)) + payload[: len(payload) // 2])
            time.sleep(0.02)
            sock.close()
        wait_until(
            lambda: _webhook_codes(proc.url).get("499") == 20,
            10,
            what=lambda: f"20 x 499; got {_webhook_codes(proc.url)}",
        )
        codes = _webhook_codes(proc.url)
        assert "500" not in codes, codes
        log = proc.log()
        assert "Traceback" not in log, log[-3000:]
        entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert entries and not [
            e for e in entries if e["level"] in ("error", "critical") or "exc" in e
        ], log[-3000:]
        assert http_json("GET", proc.url + "/api/v1/alerts")["alerts"] == []
        # A complete request on a fresh connection still works.
        sock = _connect(proc.url)
        sock.sendall(_headers(len(payload)) + payload)
        assert b"HTTP/1.1 200" in sock.recv(65536)
        sock.close()
