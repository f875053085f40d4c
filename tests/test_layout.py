"""The code's shape, as the developers' guide states it: no import circles, the bundle module as the floor, no
function much longer than a screen. Read from the source with `ast`, so that each rule fails when broken."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "food101_core"
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """Every food101_core module `path` imports, anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found |= {n for n in names if (ROOT / (n.replace(".", "/") + ".py")).exists()} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("food101_core") and m != here}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): internal_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_has_no_import_circle():
    graph = import_graph()
    graph = {m: {d for d in deps if d != "food101_core"} for m, deps in graph.items()}  # the package's version
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import circle: {' -> '.join(e.args[1])}") from None
    assert "food101_core.bundle" in order and "food101_core.app.interface" in order


def test_the_bundle_module_imports_neither_training_nor_the_app():
    graph = import_graph()
    seen, todo = set(), ["food101_core.bundle"]
    while todo:  # everything the bundle module loads, directly or not
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    for side in ("food101_core.training", "food101_core.evaluate", "food101_core.app", "food101_core.inference"):
        assert not any(m == side or m.startswith(side + ".") for m in seen), f"bundle reaches {side}"


def long_functions(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_is_longer_than_a_screen():
    paths = [*PACKAGE.rglob("*.py"), ROOT / "train.py", ROOT / "app.py"]
    assert long_functions(paths) == []


def test_each_tab_is_one_module_composed_by_build_app():
    """A new tab is one module plus one line: build_app calls each tab module's `build`."""
    tabs = sorted(p.stem for p in (PACKAGE / "app").glob("*_tab.py"))
    assert len(tabs) >= 6
    source = (PACKAGE / "app" / "interface.py").read_text()
    tree = ast.parse(source)
    build_app = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_app")
    called = {
        n.func.value.id
        for n in ast.walk(build_app)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
    }
    assert set(tabs) <= called
    assert build_app.end_lineno - build_app.lineno < 25
