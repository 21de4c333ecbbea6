"""Notebooks import only the public surface: `mistral_edu` and its public subpackages, at package level.

A lesson that imports `mistral_edu.viz.attention` breaks the day that file moves; one that imports
`mistral_edu.viz` does not. The README's map lists the public subpackages.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import mistral_edu

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"model", "hooks", "checkpoints", "generation", "memory", "analysis", "viz", "exercises", "default"}
IMPORT = re.compile(r"^\s*(?:from|import)\s+(mistral_edu(?:\.[A-Za-z_]+)*)", re.M)
SOURCES = sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.md"))


def private_imports(text: str) -> list[str]:
    """Every imported mistral_edu module path that is not the package or a public subpackage."""
    bad = []
    for module in IMPORT.findall(text):
        parts = module.split(".")
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in PUBLIC):
            bad.append(module)
    return bad


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebooks_import_only_public_subpackages(source):
    assert not private_imports(source.read_text()), f"{source.name} imports private modules"


def test_every_public_subpackage_exists_and_the_readme_names_it():
    readme = (ROOT / "README.md").read_text()
    for name in sorted(PUBLIC):
        assert (Path(mistral_edu.__file__).parent / name / "__init__.py").is_file(), name
        assert f"`mistral_edu/{name}/`" in readme, f"the README's map does not list mistral_edu/{name}/"


def test_the_checker_catches_a_module_import():
    assert private_imports("from mistral_edu.viz.attention import gqa_grid\nimport mistral_edu.names") == [
        "mistral_edu.viz.attention", "mistral_edu.names"]
    assert private_imports("import mistral_edu as me\nfrom mistral_edu import viz\nfrom mistral_edu.viz import x") == []


PACKAGE = Path(mistral_edu.__file__).parent
SUBPACKAGES = sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))


def declared_names(init: Path) -> list[str] | None:
    """The names in a package's __all__, or None if it declares none."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [element.value for element in node.value.elts]
    return None


def users_outside(subpackage: Path) -> str:
    """The text of everything that may use a subpackage's names: lessons, tests, benchmarks, the README,
    the docs, and the package's other rooms."""
    files = [*(ROOT / "notebooks" / "src").glob("*.md"), *(ROOT / "tests").glob("*.py"),
             *(ROOT / "benchmarks").glob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
             *(p for p in PACKAGE.rglob("*.py") if subpackage not in p.parents)]
    return "\n".join(f.read_text() for f in files)


@pytest.mark.parametrize("subpackage", SUBPACKAGES, ids=lambda p: p.name)
def test_every_subpackage_declares_all_and_each_name_has_a_user(subpackage):
    names = declared_names(subpackage / "__init__.py")
    assert names is not None, f"mistral_edu/{subpackage.name}/__init__.py declares no __all__"
    text = users_outside(subpackage)
    unused = [name for name in names if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not unused, (f"mistral_edu.{subpackage.name} exports names nothing outside it uses: {unused}; "
                        "make them private (drop them from __init__) or delete them")


def test_the_all_reader_sees_a_declaration_and_its_absence(tmp_path):
    (tmp_path / "with.py").write_text('from .a import x\n__all__ = ["x"]\n')
    (tmp_path / "without.py").write_text("from .a import x\n")
    assert declared_names(tmp_path / "with.py") == ["x"] and declared_names(tmp_path / "without.py") is None
