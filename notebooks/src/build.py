"""Build notebooks 00-05 from their Markdown sources in notebooks/src/, then execute them in place.

A source is plain Markdown; each ```python fence becomes a code cell, the text between fences a
Markdown cell, and a line `<!-- cell -->` splits Markdown into separate cells. Fences tagged
otherwise (```text, ```py) stay inside the Markdown as displayed code.

    .venv/bin/python notebooks/src/build.py 01 03        # the sources whose names start so
    .venv/bin/python notebooks/src/build.py --all        # every source in notebooks/src/
    .venv/bin/python notebooks/src/build.py 02 --no-run  # write cells only, keep no outputs
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SRC = Path(__file__).parent
NOTEBOOKS = SRC.parent
CELL_BREAK = "<!-- cell -->"


def parse(text: str) -> list:
    """Markdown source -> notebook cells."""
    cells, markdown, code, in_code = [], [], [], False

    def flush_markdown():
        block = "\n".join(markdown).strip()
        if block:
            cells.append(nbformat.v4.new_markdown_cell(block))
        markdown.clear()

    for line in text.splitlines():
        if not in_code and line.strip() == "```python":
            flush_markdown()
            in_code = True
        elif in_code and line.strip() == "```":
            cells.append(nbformat.v4.new_code_cell("\n".join(code).strip("\n")))
            code.clear()
            in_code = False
        elif in_code:
            code.append(line)
        elif line.strip() == CELL_BREAK:
            flush_markdown()
        else:
            markdown.append(line)
    if in_code:
        raise ValueError("a ```python fence is never closed")
    flush_markdown()
    return cells


def build(source: Path, run: bool = True) -> float:
    """Write notebooks/<name>.ipynb from its source; execute it there; return the seconds it took."""
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(source.read_text())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    seconds = 0.0
    if run:
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        seconds = time.perf_counter() - start
        nb.metadata.pop("widgets", None)
    target = NOTEBOOKS / f"{source.stem}.ipynb"
    nbformat.write(nb, target)
    return seconds


def main(argv: list[str]) -> None:
    run = "--no-run" not in argv
    prefixes = [a for a in argv if not a.startswith("--")]
    if not prefixes and "--all" not in argv:
        raise SystemExit("name the notebooks to build (e.g. 00 01) or pass --all: building rewrites their outputs")
    sources = sorted(p for p in SRC.glob("[0-9][0-9]_*.md") if not prefixes or p.name.startswith(tuple(prefixes)))
    if not sources:
        raise SystemExit(f"no source in {SRC} matches {prefixes}")
    for source in sources:
        seconds = build(source, run)
        size = (NOTEBOOKS / f"{source.stem}.ipynb").stat().st_size
        print(f"{source.stem}: {seconds:.1f} s, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
