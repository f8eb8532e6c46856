"""The built wheel carries what the code reads from beside itself: console
templates and static files, the email template, the example config and the
migrations. An editable install (the tests') reads them from the tree, so a
missing file would only show in a user's `pip install .` or the image."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def files(folder: str) -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def test_the_wheel_carries_every_file_the_package_reads(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("alertrelay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p for p in files("app") if not p.endswith(".py")]
    assert "app/web/console/templates/overview.html" in data  # the list is not empty
    assert "app/web/console/static/console.css" in data
    missing = [p for p in data if p not in names]
    assert missing == [], missing
    migrations = [p for p in files("migrations") if p.endswith(".py")]
    assert len(migrations) >= 10
    missing = [
        p for p in migrations if p.replace("migrations/", "app/_migrations/", 1) not in names
    ]
    assert missing == [], missing
