"""The package's import graph, read from the source with ast: no cycles, and model/ stays the model.

Every import counts, including those inside functions: a lazy import hides a cycle from Python's
import machinery, not from a reader who has to understand both modules together.
"""
from __future__ import annotations

import ast
from pathlib import Path

import mistral_edu

PACKAGE = Path(mistral_edu.__file__).parent
# What the readable model may import from the rest of the package: its config, and the hook points
# with the mixins that attach hook behaviour to it (hooks/ imports nothing from model/).
MODEL_MAY_IMPORT = {"mistral_edu.config", "mistral_edu.hooks"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that one module imports (a name imported from a package that is itself a
    module, e.g. `from . import memory`, counts as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between modules, ignoring a package's own __init__ re-exporting its children.

    `mistral_edu/model/__init__.py` importing `model.attention`, which imports `model.rope`, is how a
    package presents its contents, not a dependency between ideas; a child importing a sibling through
    the package (`from . import x`) still counts, because it names the sibling module.
    """
    return {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in edges.items()}


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(without_package_inits(graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def room(module: str) -> str:
    """The room a module lives in: its subpackage (mistral_edu.model.attention -> model), or itself if top-level."""
    return module.split(".")[1]


def room_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between rooms. The package's own __init__ is left out: it is the facade that re-exports them all."""
    rooms: dict[str, set[str]] = {}
    for module, targets in edges.items():
        if module == "mistral_edu":
            continue
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if t != "mistral_edu")
    return {r: targets - {r} for r, targets in rooms.items()}


def test_the_rooms_have_no_import_loop():
    """Data below the code that reads it, loaders below generation, training above all it uses."""
    cycle = find_cycle(room_graph(graph()))
    assert cycle is None, "import loop between rooms: " + " -> ".join(cycle)


def test_the_room_graph_sees_a_loop_made_of_acyclic_modules():
    edges = {"mistral_edu.a.x": {"mistral_edu.b.y"}, "mistral_edu.b.z": {"mistral_edu.a.w"},
             "mistral_edu.a.w": set(), "mistral_edu.b.y": set()}
    assert find_cycle(without_package_inits(edges)) is None
    assert find_cycle(room_graph(edges)) == ["a", "b", "a"]


def test_model_imports_only_config_and_the_hook_point():
    edges = graph()
    outside = {f"{m} imports {t}" for m, targets in edges.items() if m.startswith("mistral_edu.model")
               for t in targets if not t.startswith("mistral_edu.model") and t not in MODEL_MAY_IMPORT}
    assert not outside, sorted(outside)
