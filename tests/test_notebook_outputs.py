"""Committed notebook outputs print only digits that every learner's CPU reproduces.

nbval compares each cell's text with what was committed. PyTorch picks different CPU kernels per
instruction set (AVX-512, AVX2, the portable one), which round the last digits of a float differently, so a
float printed with many decimals fails `make test` on a machine other than the one that executed the
notebooks. Cells print 2-3 decimals (a probability to 2, a score to 3) and assert the value with a tolerance;
what must vary (times, addresses) is rewritten by notebooks/sanitize.cfg. `.ci/run` re-runs nbval with the
kernels forced to other instruction sets to catch values that sit on a rounding boundary.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_DECIMALS = 4
# At most this many cells hide their output from nbval: new cells print stable text instead.
MAX_IGNORED_CELLS = 42
TEXT_TYPES = ("text/plain", "text/markdown", "text/latex")
# A decimal number with more than MAX_DECIMALS digits after the point, not part of a longer word or number
# (so "v0.10000" in an identifier or a version string is not taken for one).
LONG_FLOAT = re.compile(r"(?<![\w.])[-+]?\d+\.\d{%d,}(?:[eE][-+]?\d+)?(?![\w.])" % (MAX_DECIMALS + 1))


def output_texts(cell: dict) -> list[str]:
    """The text nbval compares for one code cell: streams and the plain-text forms of rich outputs."""
    texts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append("".join(output["text"]))
        for kind in TEXT_TYPES:
            if kind in output.get("data", {}):
                texts.append("".join(output["data"][kind]))
    return texts


def long_floats(notebook: dict) -> list[str]:
    """'cell N: <line>' for every output line that prints a float with more than MAX_DECIMALS decimals."""
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        for text in output_texts(cell):
            for line in text.splitlines():
                if LONG_FLOAT.search(line):
                    found.append(f"cell {index}: {line.strip()[:160]}")
    return found


def ignored_cells(notebook: dict) -> int:
    return sum("NBVAL_IGNORE_OUTPUT" in "".join(cell["source"])
               for cell in notebook["cells"] if cell["cell_type"] == "code")


def test_there_are_notebooks_to_scan():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_output_prints_more_than_four_decimals(path):
    found = long_floats(json.loads(path.read_text(encoding="utf-8")))
    assert not found, (
        f"{path.name} prints floats whose last digits depend on the CPU; print 2-3 decimals (f'{{x:.3f}}') and "
        "assert the value with a tolerance in the cell:\n" + "\n".join(found))


def test_hidden_outputs_do_not_grow():
    counts = {path.name: ignored_cells(json.loads(path.read_text(encoding="utf-8"))) for path in NOTEBOOKS}
    assert sum(counts.values()) <= MAX_IGNORED_CELLS, (
        f"{sum(counts.values())} cells carry NBVAL_IGNORE_OUTPUT (at most {MAX_IGNORED_CELLS}): print stable "
        f"text instead of hiding it. Per notebook: {counts}")


def test_the_scan_finds_what_flips_and_passes_what_is_stable():
    def notebook(text: str) -> dict:
        return {"cells": [{"cell_type": "code", "source": [], "outputs": [
            {"output_type": "stream", "name": "stdout", "text": [text]}]}]}
    assert long_floats(notebook("[('3.6', 0.8871785998344421)]\n")) == ["cell 0: [('3.6', 0.8871785998344421)]"]
    assert long_floats(notebook("q.k = +6.65891630\n")) == ["cell 0: q.k = +6.65891630"]
    assert long_floats(notebook("loss 1.2e-05, p = 0.93, score 0.8872, 14,483,464,192 bytes\n")) == []
    assert long_floats(notebook("torch 2.13.0+cpu, v0.12345abc\n")) == []
    rich = {"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "execute_result", "data": {"text/plain": ["0.123456"]}}]}]}
    assert long_floats(rich) == ["cell 0: 0.123456"]
    assert ignored_cells({"cells": [{"cell_type": "code", "source": ["# NBVAL_IGNORE_OUTPUT\n", "x"]},
                                    {"cell_type": "markdown", "source": ["NBVAL_IGNORE_OUTPUT"]}]}) == 1
