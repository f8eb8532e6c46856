"""The Dockerfile, checked without a Docker engine: lint, pins, context, healthcheck."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.e2e.harness import alertrelay, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOG = "route: {receiver: log}\nreceivers: [{name: log, log_configs: [{}]}]\n"


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_pinned_and_dependencies_from_the_lock_file() -> None:
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(bases) == 2 and all(
        re.fullmatch(r"python:3\.11\.\d+-slim-bookworm( AS build)?", b) for b in bases
    ), bases
    assert "--constraint constraints.txt '.[postgres,otel]'" in DOCKERFILE
    assert "--constraint /etc/alertrelay/constraints.txt 'alertrelay[postgres,otel]'" in DOCKERFILE
    # CI installs from the same file, through pip's own variable.
    assert 'export PIP_CONSTRAINT="$PWD/constraints.txt"' in (ROOT / ".ci" / "run").read_text()


def test_the_lock_file_pins_every_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraints()
    wanted = [
        *project["dependencies"],
        *(d for extra in project["optional-dependencies"].values() for d in extra),
    ]
    for spec in wanted:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {
        ".git",
        ".venv",
        "*.db",
        "*.db-wal",
        "**/__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    } <= ignored
    # Nothing the build copies is ignored.
    for copied in ("app", "migrations", "pyproject.toml", "README.md", "constraints.txt"):
        assert copied not in ignored


def healthcheck_command() -> list[str]:
    match = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", DOCKERFILE, re.M)
    assert match, "no HEALTHCHECK in exec form"
    return json.loads(match.group(1))


def run_healthcheck(env: dict[str, str]) -> int:
    # The image has the console script on PATH; here it is the venv's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTRELAY_")}
    return subprocess.run(
        healthcheck_command(), env={**clean, "PATH": path, **env}, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_follows_the_configured_port(tmp_path: Path) -> None:
    with alertrelay(tmp_path, LOG) as relay:
        port = relay.url.rsplit(":", 1)[1]
        assert run_healthcheck({"ALERTRELAY_PORT": port}) == 0
        config = tmp_path / "port.yml"
        config.write_text(f"server: {{port: {port}}}\n" + LOG)
        assert run_healthcheck({"ALERTRELAY_CONFIG": str(config)}) == 0
    # Nothing listening: Docker's "unhealthy" is exit 1 (not the plugin's 2).
    assert run_healthcheck({"ALERTRELAY_PORT": str(free_port())}) == 1


def test_readme_docker_section_config_loads(tmp_path: Path) -> None:
    from app.config.model import parse_config

    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Running in a container\n", 1)[1].split("\n## ", 1)[0]
    (yaml_text,) = re.findall(r"cat > alertrelay.yml <<'EOF'\n(.*?)\nEOF", section, re.S)
    token = tmp_path / "webhook-token"
    token.write_text("0123456789abcdef\n")
    loaded = parse_config(yaml_text.replace("/run/secrets/webhook-token", str(token)), "readme", {})
    assert loaded.config.auth is not None and loaded.config.auth.webhook_token is not None
    assert (
        "ALERTRELAY_CONFIG=/etc/alertrelay/alertrelay.yml" in section
        and "-v alertrelay-data:/var/lib/alertrelay" in section
    )
