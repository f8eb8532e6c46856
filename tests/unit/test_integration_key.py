"""The integration key ("receiver/name/index") is built by one function."""

import ast
from datetime import UTC, datetime
from pathlib import Path

from app.config.compiled import compile_config
from app.config.model import parse_config
from app.core.domain import NoticeKind, integration_key
from app.store.outbox import Claimed

APP = Path(__file__).resolve().parents[2] / "app"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_config_and_the_outbox_name_a_destination_alike() -> None:
    runtime = compile_config(
        parse_config(
            "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}, {}]}]\n", "t", {}
        )
    )
    second = runtime.receivers["r"][1]
    assert second.key == integration_key("r", "log", 1) == "r/log/1"
    row = Claimed(1, "k", "fp", "r", "log", 1, NoticeKind.FIRING, "d", {}, T0, T0, 1, "t", T0)
    assert runtime.integrations[row.integration_key] is second


def _builds_a_key(node: ast.JoinedStr) -> bool:
    parts = node.values
    return (
        len(parts) == 5
        and all(isinstance(p, ast.FormattedValue) for p in parts[::2])
        and all(isinstance(p, ast.Constant) and p.value == "/" for p in parts[1::2])
    )


def offenders(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr) and _builds_a_key(node):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_other_code_formats_the_key() -> None:
    found = offenders(APP)
    assert len(found) == 1 and found[0].startswith("core/domain.py:"), found


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text('def k(r, n, i):\n    return f"{r}/{n}/{i}"\n')
    assert offenders(tmp_path) == ["x.py:2"]
