"""The package layout: inet/'s import graph has no cycle, and the layers only import downwards.

Layers (docs/engine.md): the core (top-level modules but cli, compose, api, reproduce, ablations),
inet/cu (learners) and inet/tasks (Environments, curriculum, KPIs) sit at the bottom;
inet/run (runner and the run's outputs) above them; inet/analysis (report, viewer,
sweep records) above that; inet.compose, inet.api (the Python API), inet.cli, inet.reproduce, inet.ablations and the package
itself (inet/__init__.py, which re-exports the API) at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

PACKAGE = Path(__file__).resolve().parent.parent / "inet"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> List[ast.stmt]:
    """Every import statement, in functions too, except those under `if TYPE_CHECKING:`."""
    found: List[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(name: str, modules: Set[str]) -> Optional[str]:
    """The inet module `name` denotes: itself, or the longest module that contains it (`pkg.attr`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    """module -> the inet modules it imports (relative and absolute)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: Dict[str, Set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: Set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
                targets = [f"{prefix}.{a.name}" for a in node.names]
            for target in targets:
                dep = _resolve(target, modules)
                if dep is not None and dep != mod:
                    deps.add(dep)
        graph[mod] = deps
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle as [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(mod: str) -> Optional[List[str]]:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state:
            cycle = visit(mod)
            if cycle:
                return cycle
    return None


def _layer(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1:
        return "entry"  # inet/__init__.py: the Python API
    if parts[1] in ("cu", "tasks", "run", "analysis"):
        return parts[1]
    if parts[1] in ("cli", "compose", "api", "reproduce", "ablations"):
        return "entry"
    return "core"


# what each layer may not import
FORBIDDEN = {
    "core": {"run", "analysis", "entry"},
    "cu": {"run", "analysis", "entry"},
    "tasks": {"run", "analysis", "entry"},
    "run": {"analysis", "entry"},
}


def layering_violations(graph: Dict[str, Set[str]]) -> List[str]:
    return [f"{mod} ({_layer(mod)}) imports {dep} ({_layer(dep)})"
            for mod, deps in sorted(graph.items()) for dep in sorted(deps)
            if _layer(dep) in FORBIDDEN.get(_layer(mod), ())]


def test_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "inet.compose" in graph["inet.cli"]  # absolute-style name, module level
    assert "inet.run.runner" in graph["inet.cli"]  # inside a function
    assert "inet.run.checkpoint" in graph["inet.cli"]  # `from .run import checkpoint`
    assert "inet.tasks.kpi_registry" in graph["inet.cu.dqn"]  # `..`
    assert "inet.engine" not in graph["inet.evaluation"]  # under TYPE_CHECKING only


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in inet/: " + " -> ".join(cycle)


def test_layers_import_downwards():
    violations = layering_violations(import_graph())
    assert not violations, "layering broken:\n" + "\n".join(violations)


def test_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "inet"
    (pkg / "run").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "run" / "__init__.py").write_text("")
    (pkg / "engine.py").write_text("def f():\n    from .run import runner\n")
    (pkg / "run" / "runner.py").write_text("from ..engine import f\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["inet.engine", "inet.run.runner", "inet.engine"]
    assert layering_violations(graph) == ["inet.engine (core) imports inet.run.runner (run)"]
