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


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every package module `start` loads, directly or not."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return seen - {start}


# package -> the side it is on; `sets` scores a person's photos with the served model: the serving side
# `report` is the app's report on the command line (python -m food101_core.report)
SIDES = {"training": "training", "serving": "serving", "sets": "serving", "app": "app", "report": "app"}


def side_of(module: str) -> str:
    """The house's layers: the floor (bundle and what it reads), the training side, the serving side, the app."""
    for package, side in SIDES.items():
        if module == f"food101_core.{package}" or module.startswith(f"food101_core.{package}."):
            return side
    return "floor"


# Which layer may load which (docs/developing.md): the floor loads only the floor; each side stands on the floor;
# the app stands on the serving side; nothing loads the training side but itself.
MAY_LOAD = {"floor": {"floor"}, "training": {"floor", "training"}, "serving": {"floor", "serving"},
            "app": {"floor", "serving", "app"}}  # fmt: skip
TENSORFLOW = ("tensorflow", "keras", "tf2onnx", "tensorflow_datasets")


def test_each_side_loads_only_what_its_layer_may():
    graph = import_graph()
    graph = {m: {d for d in deps if d != "food101_core"} for m, deps in graph.items()}
    wrong = [
        f"{m} ({side_of(m)}) loads {d} ({side_of(d)})"
        for m in graph
        for d in reach(graph, m)
        if side_of(d) not in MAY_LOAD[side_of(m)]
    ]
    assert wrong == []
    assert "food101_core.bundle" in graph and side_of("food101_core.bundle") == "floor"


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_training_side_imports_tensorflow():
    """The app, the serving side and the floor never import TensorFlow or Keras, not even inside a function."""
    offenders = {
        str(p.relative_to(ROOT)): sorted(third_party_imports(p) & set(TENSORFLOW))
        for p in [*PACKAGE.rglob("*.py"), ROOT / "app.py"]
        if side_of(module_name(p)) != "training" and third_party_imports(p) & set(TENSORFLOW)
    }
    assert offenders == {}
    assert (
        third_party_imports(PACKAGE / "training" / "export.py") >= {"keras"}
        or "keras" in (PACKAGE / "training" / "export.py").read_text()
    )


def test_the_app_requirements_hold_only_what_the_app_imports():
    """requirements.txt is what a Space installs: no TensorFlow, and ONNX Runtime instead."""
    names = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert not names & {"tensorflow", "keras", "tf2onnx", "tensorflow-datasets", "umap-learn", "cleanlab"}
    assert {"gradio", "onnxruntime", "numpy", "pillow"} <= names


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


def test_one_list_of_tabs_feeds_the_page_the_browser_tests_and_the_readme():
    """`tabs.TABS` is the one list: each tab is one module (`<id>_tab.py`) that opens its tab by that list's title,
    `build_app` builds them in its order, the browser tests walk it, and the README's tab table lists the same tabs
    in the same order."""
    from browser import TABS as WALKED

    from food101_core.app.interface import BUILDERS
    from food101_core.app.tabs import TABS

    modules = sorted(p.stem for p in (PACKAGE / "app").glob("*_tab.py"))
    assert modules == sorted(t.id.replace("-", "_") + "_tab" for t in TABS)
    for t in TABS:
        source = (PACKAGE / "app" / f"{t.id.replace('-', '_')}_tab.py").read_text()
        assert f'gr.Tab(TITLE["{t.id}"], id="{t.id}")' in source, t.id
    assert list(BUILDERS) == [t.id for t in TABS if not t.needs]
    assert tuple(t.title for t in TABS if not t.needs) == WALKED
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| tab | what it does |") :].split("\n\n")[0].splitlines()[2:]
    assert [row.split("|")[1].strip() for row in table] == [t.title for t in TABS]
