"""SQLite on a full disk: webhooks get 503, health says why, and it recovers by itself."""

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import running_app
from tests.helpers import JSON, LOG_CONFIG, am_alert, am_webhook, body


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root: skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_health_reports_failing_writes_and_recovers(
    small_fs: Path, sqlite_template: Path
) -> None:
    db = small_fs / "alertrelay.db"
    shutil.copy(sqlite_template, db)
    filler = small_fs / "filler"
    async with running_app(f"sqlite:///{db}", LOG_CONFIG) as (_, client):
        assert (await client.get("/health")).json() == {"status": "healthy"}
        # Fill the disk, leaving SQLite almost nothing.
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        annotations = {"summary": "x" * 4000}
        codes = []
        for i in range(30):
            alerts = [
                am_alert(
                    {"alertname": f"Full{i}", "n": str(j), "u": uuid.uuid4().hex},
                    annotations=annotations,
                )
                for j in range(20)
            ]
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook(alerts)), headers=JSON
            )
            codes.append(r.status_code)
            if r.status_code == 503:
                break
        assert codes[-1] == 503, codes
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert "database writes failing" in health.json()["reason"]
        assert "full" in health.json()["reason"]
        detailed = (await client.get("/health?detailed=true")).json()
        assert detailed["status"] == "degraded" and "full" in detailed["database"]["writes"]
        ready = await client.get("/ready")
        assert ready.status_code == 503 and "database writes failing" in ready.json()["problems"][0]

        # Space comes back: the next write succeeds and health follows by itself.
        filler.unlink()
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([am_alert({"alertname": "Back"})])),
            headers=JSON,
        )
        assert r.status_code == 200, r.text
        assert (await client.get("/health")).json() == {"status": "healthy"}
        assert (await client.get("/ready")).status_code == 200
