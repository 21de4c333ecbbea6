"""Notebooks import only the public surface: `mistral_edu` and its public subpackages, at package level.

A lesson that imports `mistral_edu.viz.attention` breaks the day that file moves; one that imports
`mistral_edu.viz` does not. The README's map lists the public subpackages.
"""
from __future__ import annotations

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
