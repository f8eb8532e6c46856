"""House rules that can be checked mechanically."""

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


def _modules_imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = [
        str(p.relative_to(APP))
        for p in APP.rglob("*.py")
        if "sqlalchemy" in _imports(p) and p.parent.name != "store" and "_migrations" not in p.parts
    ]
    assert offenders == []


_IO = {"sqlalchemy", "httpx", "starlette", "asyncio", "os", "time", "socket", "subprocess"}
_IO |= {"aiosmtplib", "smtplib", "pathlib", "uvicorn", "prometheus_client"}


def test_pure_modules_do_no_io() -> None:
    """Everything in app/core/ is pure: no I/O, no clock, no database, no network."""
    core = sorted((APP / "core").glob("*.py"))
    assert len(core) > 10
    offenders = {p.name: sorted(_imports(p) & _IO) for p in core if _imports(p) & _IO}
    assert offenders == {}


def test_core_does_not_reach_the_edges() -> None:
    """The pure core never imports the loops or the edges built around it."""
    edges = ("app.store", "app.web", "app.notifiers", "app.delivery", "app.ingest", "app.cli")
    offenders = {
        p.name: sorted(m for m in _modules_imported(p) if m.startswith(edges))
        for p in (APP / "core").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_wall_clock_outside_clock_py() -> None:
    pattern = re.compile(r"datetime\.now\(|datetime\.utcnow\(|time\.time\(")
    offenders = [
        str(p.relative_to(APP))
        for p in APP.rglob("*.py")
        if p.name != "clock.py" and pattern.search(p.read_text())
    ]
    assert offenders == []


def test_no_mock_patch_of_our_modules() -> None:
    tests = Path(__file__).resolve().parents[1]
    offenders = [
        str(p)
        for p in tests.rglob("*.py")
        if re.search(r"mock\.patch\(\s*['\"]app\.", p.read_text())
    ]
    assert offenders == []


REPO = Path(__file__).resolve().parents[2]


def _reaches_outside(path: Path) -> list[str]:
    """Ways a module climbs above the repository from its own ``__file__``.

    A user's clone has nothing beside it, so ``Path(__file__).parents[k]`` or a
    chain of ``.parent`` that climbs past the repository root, or a literal
    naming a sibling folder, breaks there while passing on a developer's
    machine."""
    depth = len(path.relative_to(REPO).parts) - 1  # folders between the file and REPO
    tree = ast.parse(path.read_text())
    found: list[str] = []

    def anchored(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node))

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
            and anchored(node.value)
            and node.slice.value > depth
        ):
            found.append(f"line {node.lineno}: parents[{node.slice.value}]")
        if isinstance(node, ast.Attribute) and node.attr == "parent" and anchored(node):
            climbs, inner = 0, node
            while isinstance(inner, ast.Attribute) and inner.attr == "parent":
                climbs, inner = climbs + 1, inner.value
            # `.parent` of the file itself is its folder: depth + 1 climbs leave REPO.
            if climbs > depth + 1:
                found.append(f"line {node.lineno}: {climbs} x .parent")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and anchored(node.left)
            and isinstance(node.right, ast.Constant)
            and node.right.value == "shared"
        ):
            found.append(f"line {node.lineno}: a folder named 'shared' beside the file's tree")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if re.search(
                r"(^|/)\.\./(shared|reference|fixtures)\b|\bshared/(fixtures|reference)\b", text
            ):
                found.append(f"line {node.lineno}: {text[:60]!r}")
    return found


def test_no_file_reaches_outside_the_repository() -> None:
    offenders = {
        str(p.relative_to(REPO)): hits
        for folder in ("app", "tests", "migrations")
        for p in (REPO / folder).rglob("*.py")
        if ".venv" not in p.parts and (hits := _reaches_outside(p))
    }
    assert offenders == {}


def test_the_outside_check_catches_a_sibling_folder(tmp_path: Path) -> None:
    """The check above can fail: a copy of the old fixture path is caught."""
    probe = REPO / "tests" / "unit" / "_probe_outside.py"
    # The sibling's name is split so this file does not itself read as a
    # path out of the repository; the probe's text is the same.
    sibling = "sha" + "red"
    probe.write_text(
        f'from pathlib import Path\nX = Path(__file__).resolve().parents[3] / "{sibling}" / "fixtures"\n'
    )
    try:
        hits = _reaches_outside(probe)
    finally:
        probe.unlink()
    assert any("parents[3]" in h for h in hits) and any("shared" in h for h in hits)


# Documents that live outside the repository (the design notes it was built
# from): a reader of a clone cannot follow a citation of them. The names are
# split so this file does not match itself.
_OUTSIDE = re.compile(
    "|".join(
        [
            "SP" + r"EC\s*§",
            "SP" + r"EC\.md",
            r"\b(?:reliability|protocols|landscape|style-anchors|pitfalls)" + r"\.md",
            "ARCHI" + r"TECTURE(?:\.md| rule)",
            # the item ids of the reliability catalogue those notes hold
            r"\b(?:OBX|SEC|DUP|FLAP|SINK|CRASH|IN|ING|TIME|DLQ)" + r"-\d{2}\b",
        ]
    )
)
_TEXT = {".py", ".md", ".toml", ".yml", ".yaml", ".html", ".txt", ".sh", ".ini", ".cfg", ""}


def _citations(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    return [
        f"line {n}: {m.group(0)}"
        for n, line in enumerate(text.splitlines(), 1)
        for m in _OUTSIDE.finditer(line)
    ]


def _repository_text_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml", REPO / "Dockerfile", REPO / ".ci" / "run"]
    for folder in ("app", "tests", "migrations", "deploy", "docs"):
        files += [
            p
            for p in (REPO / folder).rglob("*")
            if p.is_file() and p.suffix in _TEXT and ".venv" not in p.parts
        ]
    return [p for p in files if p.is_file()]


def test_nothing_cites_a_document_outside_the_repository() -> None:
    offenders = {
        str(p.relative_to(REPO)): hits for p in _repository_text_files() if (hits := _citations(p))
    }
    assert offenders == {}


def test_the_citation_check_catches_one(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""See ' + "SP" + "EC §4 and reliability" + ".md OBX" + '-05."""\n')
    assert len(_citations(probe)) == 3
