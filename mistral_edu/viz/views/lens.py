"""The logit-lens table as a self-contained HTML view: per layer and position, the top token and its
probability; hovering a cell lists the full top-k. The probabilities are computed in Python
(analysis.logit_lens), the browser only lays them out, so nothing needs a kernel afterwards.
"""
from __future__ import annotations

import numpy as np

from ..circuits import logit_lens_heatmap
from ..figure import printable
from .page import View

MAX_CELLS = 40 * 256      # rows x positions: past this the table is wider than any screen reads


def logit_lens_table(lens, labels: list[str], tokenizer, k: int = 5) -> View:
    """lens: from analysis.logit_lens; labels: one per position of the lens (the input token there);
    tokenizer: to name the predicted tokens; k: how many tokens each cell lists on hover."""
    probs, ids = lens.top(k)                                                      # (rows, positions, k) each
    n_rows, n_pos, _ = probs.shape
    if len(labels) != n_pos:
        raise ValueError(f"{len(labels)} labels for {n_pos} positions: give one label per position of the lens")
    if n_rows * n_pos > MAX_CELLS:
        raise ValueError(f"{n_rows} x {n_pos} cells is more than a table can show ({MAX_CELLS}): "
                         "pass positions= to analysis.logit_lens")
    probs = probs.float().cpu().numpy()
    if not np.isfinite(probs).all():
        raise ValueError("the lens holds NaN or inf probabilities: the forward pass overflowed (try float32)")
    pieces = [[[printable(tokenizer.id_to_piece(int(i)), 16) for i in cell] for cell in row] for row in ids.tolist()]
    top = [[[[piece, round(float(p), 4)] for piece, p in zip(cell_pieces, cell_probs)]
            for cell_pieces, cell_probs in zip(row_pieces, row_probs)]
           for row_pieces, row_probs in zip(pieces, probs)]
    data = {"rows": list(lens.rows), "labels": [str(label) for label in labels],
            "positions": [int(p) for p in lens.positions], "top": top}
    return View("logit-lens", ["lens.js"], "buildLens", data, logit_lens_heatmap(lens, labels, tokenizer),
                "logit lens table")
