"""House rules that can be checked mechanically (ARCHITECTURE.md)."""

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = [
        str(p.relative_to(APP))
        for p in APP.rglob("*.py")
        if "sqlalchemy" in _imports(p) and p.parent.name != "store" and "_migrations" not in p.parts
    ]
    assert offenders == []


def test_pure_modules_do_no_io() -> None:
    pure = ["fingerprint", "matchers", "routing", "dedup", "flapping", "notices", "runbooks"]
    for name in pure:
        imports = _imports(APP / f"{name}.py")
        assert not imports & {"sqlalchemy", "httpx", "starlette", "asyncio", "os", "time"}, name


def test_no_wall_clock_outside_clock_py() -> None:
    pattern = re.compile(r"datetime\.now\(|datetime\.utcnow\(|time\.time\(")
    offenders = [
        str(p.relative_to(APP)) for p in APP.rglob("*.py") if p.name != "clock.py" and pattern.search(p.read_text())
    ]
    assert offenders == []


def test_no_mock_patch_of_our_modules() -> None:
    tests = Path(__file__).resolve().parents[1]
    offenders = [str(p) for p in tests.rglob("*.py") if re.search(r"mock\.patch\(\s*['\"]app\.", p.read_text())]
    assert offenders == []
