"""The package's shape: an acyclic module graph (imports inside functions count), no module over
500 lines, comments that cite only documents in this repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bridge_edge

PACKAGE = Path(bridge_edge.__file__).parent
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> bridge_edge modules it imports anywhere in its body (top level or in a function)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    root = package.split(".")
                    root = root[: len(root) - node.level + 1]
                    base = ".".join(root + ([base] if base else []))
                # `from pkg import mod` imports the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("bridge_edge"):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_bridge_edge_modules():
    graph = import_graph()
    assert "bridge_edge.bridge.compose" in graph and graph["bridge_edge.bridge.compose"]
    assert cycles(graph) == []


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_comments_cite_only_documents_in_the_repository():
    repo = PACKAGE.parent
    pattern = re.compile(r"(DESIGN|DEVICES|METHOD) §")
    sources = [p for root in (PACKAGE, repo / "tests") for p in root.rglob("*.py")]
    sources += [
        p for folder in ("calibration", "recipes", "benchmarks") for p in (repo / folder).rglob("*.toml")
    ]
    hits = [
        f"{p}:{i}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert bridge_edge.__version__ == version("bridge-edge")
    assert (PACKAGE / "py.typed").exists()


# package -> packages above it that it never imports (docs/architecture.md, "Import rules"):
# the device runtime and the sources are what bench, checks and the monitor are built on
LAYERS_ABOVE = {
    "devices": {"runtime", "bench", "checks", "monitor"},
    "runtime": {"bench", "checks", "monitor"},
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_lower_layers_never_import_the_layers_above():
    graph = import_graph()
    assert "bridge_edge.bench.runtime_pipeline" in graph and "bridge_edge.checks.known_answers" in graph
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _package_of(b) in LAYERS_ABOVE.get(_package_of(a), set())
    )
    assert upward == []


def test_test_helpers_live_in_tests_not_in_the_package():
    """Stand-ins (tiny bundles, scripted sensors) are tests/fixtures modules; the package never
    ships or imports them."""
    # the fixtures beside this test (PACKAGE may be an installed copy, with no tests/ beside it)
    fixtures = {p.stem for p in (Path(__file__).resolve().parents[1] / "fixtures").glob("*.py")}
    assert {"tiny_bundle", "export_standin"} <= fixtures
    shipped = [name for name in _modules() if name.rpartition(".")[2] in fixtures | {"testing"}]
    imported = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            imported += [f"{path.name}: {n}" for n in names if n.split(".")[0] in fixtures]
    assert shipped == [] and imported == []
