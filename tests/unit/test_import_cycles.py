"""No import circle inside app/: the module graph is a DAG.

A circle works only by the accident of which module Python happens to load
first, and it ties modules together so none can be read or moved alone.
The graph is read from the source (every import, also those inside
functions and under ``TYPE_CHECKING``), with the rule Python follows at
run time: importing ``app.a.b`` first runs the packages ``app`` and
``app.a``, so a module that imports a sibling through its package's
``__init__`` depends on that ``__init__`` too.
"""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def _name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = APP) -> dict[str, set[str]]:
    """Module → the modules of ``root`` that importing it runs."""
    modules = {_name(p, root): p for p in root.rglob("*.py") if "_migrations" not in p.parts}

    def with_packages(target: str, importer: str) -> set[str]:
        # ``import a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``; the importer's own
        # packages already ran before it (Python imports parents first).
        parts = target.split(".")
        found = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        own = {importer.rsplit(".", k)[0] for k in range(1, importer.count(".") + 1)}
        return {m for m in found if m in modules and m not in own and m != importer}

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= with_packages(alias.name, name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges |= with_packages(full if full in modules else base, name)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_inside_app() -> None:
    found = circles(import_graph())
    assert [sorted(c) for c in found] == []


def test_the_circle_check_catches_a_circle(tmp_path: Path) -> None:
    """The check can fail: a package whose modules import each other is caught."""
    pkg = tmp_path / "app"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from app.sub import b\n")
    (pkg / "a.py").write_text("def f():\n    from app.sub.b import g\n    return g\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app import a\n"
    )
    (pkg / "c.py").write_text("import app.a\n")
    found = circles(import_graph(pkg))
    # app.a runs app.sub (the package of what it imports), which runs b, which imports a.
    assert found == [frozenset({"app.a", "app.sub", "app.sub.b"})]
