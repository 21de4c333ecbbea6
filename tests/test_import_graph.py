"""No import cycle anywhere in the package, function-level imports included.

The graph is read from the source (every import statement, wherever it stands), not from what a
run happens to import, so a lazy import that closes a loop is caught before anyone hits it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import mistral_edu

PACKAGE = Path(mistral_edu.__file__).parent


def module_names() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return names


def imported_modules(module: str, is_package: bool, node: ast.AST, known: set[str]) -> set[str]:
    """The package modules an import statement loads: `from .x import y` is x.y if y is a module, else x."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names} & known


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    graph = {}
    for module, (path, is_package) in names.items():
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= imported_modules(module, is_package, node, set(names)) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with an explicit path)."""
    state: dict[str, str] = {}
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [], [(start, iter(sorted(graph[start])))]
        state[start] = "open"
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
                path.pop()
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_graph_sees_lazy_imports():
    """A function-level import counts: the check would miss the cycles it exists for otherwise."""
    source = "def f():\n    from .checkpoints import load_model\n"
    node = ast.parse(source).body[0].body[0]
    assert imported_modules("mistral_edu.tokenizer", False, node, {"mistral_edu.checkpoints"}) == {
        "mistral_edu.checkpoints"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "mistral_edu.checkpoints.load" in graph["mistral_edu.checkpoints"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
