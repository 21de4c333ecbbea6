"""Each lesson is written once, in notebooks/src/NN_*.md, and paired by jupytext with notebooks/NN_*.ipynb,
which carries the outputs. These tests fail when the two disagree, so an edit to one is never lost in the other.
"""
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.cli import get_formats_from_notebook_path
from jupytext.config import load_jupytext_configuration_file
from jupytext.paired_paths import paired_paths

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]_*.md"))
SYNC = "run `make notebooks` (it syncs with jupytext, then re-executes), or edit the notebook in JupyterLab"


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    notebooks = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    sources = {p.stem for p in SOURCES}
    assert len(sources) == 15
    assert notebooks == sources, (f"notebooks without a source: {sorted(notebooks - sources)}; sources without a "
                                  f"notebook: {sorted(sources - notebooks)}: {SYNC}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_is_paired_with_its_notebook(source):
    """notebooks/jupytext.toml pairs the two files, so JupyterLab saves both and `jupytext --sync` finds them."""
    formats = get_formats_from_notebook_path(str(source), None)  # what `jupytext --paired-paths` reads
    paths = {path for path, _ in paired_paths(str(source), None, formats)}
    assert paths == {str(source), str(NOTEBOOKS / f"{source.stem}.ipynb")}, f"notebooks/jupytext.toml pairs {paths}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_and_notebook_have_the_same_cells(source):
    from_source = cells(jupytext.read(source, fmt="md"))
    from_notebook = cells(nbformat.read(NOTEBOOKS / f"{source.stem}.ipynb", as_version=4))
    for i, (ours, theirs) in enumerate(zip(from_source, from_notebook)):
        assert ours == theirs, (f"cell {i} of notebooks/src/{source.name} differs from notebooks/{source.stem}.ipynb:"
                                f"\n{ours[0]}: {ours[1][:300]!r}\nvs {theirs[0]}: {theirs[1][:300]!r}\n{SYNC}")
    assert len(from_source) == len(from_notebook), (
        f"notebooks/src/{source.name} has {len(from_source)} cells, notebooks/{source.stem}.ipynb "
        f"{len(from_notebook)}: {SYNC}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_is_what_jupytext_writes(source):
    """Saving the notebook in JupyterLab rewrites the source from the notebook's cells (type and text, nothing
    else); written as jupytext writes them, the source comes back byte for byte instead of reformatted (two
    ```python fences with no blank line between them, for one, come back with one)."""
    new_cell = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    notebook = nbformat.v4.new_notebook(cells=[new_cell[kind](text) for kind, text in cells(jupytext.read(source))])
    config = load_jupytext_configuration_file(str(NOTEBOOKS / "jupytext.toml"))
    assert jupytext.writes(notebook, fmt="md", config=config) == source.read_text(), (
        f"notebooks/src/{source.name} is not in the form jupytext writes from its cells: open the notebook in "
        "`make lab` and save it, or compare with `jupytext --to md -o - " + f"notebooks/{source.stem}.ipynb`")
