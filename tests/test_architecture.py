"""The folder tree is the architecture: who may import whom, and no import cycles.

The data flow (DESIGN.md): client → server → runs → agent (worker thread) →
events → bus → server; rag beside the agent. Read from the source with
``ast`` (imports inside ``if TYPE_CHECKING:`` are for the type checker only
and do not count), so a violation fails here before it tangles the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "legalstream"

#: package (or module) -> legalstream packages it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "legalstream.events": ("legalstream.",),
    "legalstream.bus": (
        "legalstream.server",
        "legalstream.runs",
        "legalstream.agent",
        "legalstream.rag",
        "legalstream.app",
    ),
    "legalstream.agent": (
        "legalstream.server",
        "legalstream.bus",
        "legalstream.runs",
        "legalstream.app",
    ),
    "legalstream.rag": (
        "legalstream.server",
        "legalstream.bus",
        "legalstream.runs",
        "legalstream.agent",
        "legalstream.app",
    ),
    "legalstream.runs": ("legalstream.server", "legalstream.rag", "legalstream.app"),
    "legalstream.server": ("legalstream.agent", "legalstream.rag", "legalstream.app"),
    # An encoding of the run's event stream at the edge: pure, over events.py only.
    "legalstream.dialects": (
        "legalstream.server",
        "legalstream.bus",
        "legalstream.runs",
        "legalstream.agent",
        "legalstream.rag",
        "legalstream.app",
    ),
}
#: Third-party packages a part must never import (it would then know what it must not).
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "legalstream.server": ("crewai", "llama_index", "qdrant_edge", "qdrant_client"),
    "legalstream.bus": ("starlette", "crewai", "uvicorn"),
    "legalstream.agent": ("starlette", "uvicorn", "redis"),
    "legalstream.rag": ("starlette", "uvicorn", "crewai", "redis"),
    "legalstream.runs": ("starlette", "uvicorn", "crewai"),
    "legalstream.dialects": ("starlette", "uvicorn", "crewai", "redis", "llama_index"),
}
#: The only module of runs/ that may reach into agent/, and only its API.
RUNS_MAY_IMPORT_FROM_AGENT = ("legalstream.agent.api",)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports at run time (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


GRAPH = _graph()
ALL_IMPORTS = {
    name: _imports(p) for name, p in ((_module_name(p), p) for p in (SRC / PACKAGE).rglob("*.py"))
}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_no_part_imports_what_the_data_flow_forbids(part):
    bad = []
    for module, imports in GRAPH.items():
        if not _in(module, part):
            continue
        for target in imports:
            if any(
                target.startswith(f) if f.endswith(".") else _in(target, f) for f in FORBIDDEN[part]
            ):
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("part", sorted(FORBIDDEN_LIBRARIES))
def test_no_part_imports_a_library_it_must_not_know(part):
    bad = []
    for module, imports in ALL_IMPORTS.items():
        if not _in(module, part):
            continue
        for target in imports:
            if target.split(".")[0] in FORBIDDEN_LIBRARIES[part]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_runs_reach_the_agent_only_through_its_api():
    bad = [
        f"{module} imports {target}"
        for module, imports in GRAPH.items()
        if _in(module, "legalstream.runs")
        for target in imports
        if _in(target, "legalstream.agent")
        and target not in RUNS_MAY_IMPORT_FROM_AGENT
        and target != "legalstream.agent"
    ]
    assert not bad, "\n".join(sorted(bad))


def test_there_are_no_import_cycles():
    # Tarjan's strongly connected components over module -> imported module.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            # A package's __init__ importing its own submodules is not a cycle of concepts.
            if _in(w, v) or _in(v, w):
                continue
            if w not in index:
                strongconnect(w)
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            strongconnect(v)
    assert not cycles, "import cycles:\n" + "\n".join(" ⇄ ".join(c) for c in cycles)
