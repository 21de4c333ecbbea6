"""What every figure function shares: a figure that is not pyplot's, saving, and readable token labels.

Figures are made with matplotlib.figure.Figure, not pyplot: nothing global is left open, and a
notebook shows a returned figure exactly once (as the cell's value), also in VS Code, Colab and a
GitHub preview, where the PNG is stored in the notebook.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches, never larger than a screen can show."""
    return Figure(figsize=(min(width, 16), min(height, 16)), layout="constrained")


def finish(fig: Figure, save: str | Path | None, dpi: int = 100) -> Figure:
    """Save fig as PNG when a path is given (its folder is created), and return it."""
    if save is not None:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=dpi, format="png")
    return fig


def printable(piece: str, max_chars: int = 10) -> str:
    """A token piece as a label: '▁' (a leading space) shown as '·', long pieces cut, and scripts the
    default font lacks (CJK, Hangul, emoji: code points from U+2E80 on) shown as '□' instead of a warning."""
    piece = "".join(c if ord(c) < 0x2E80 else "□" for c in piece.replace("▁", "·"))
    return piece if len(piece) <= max_chars else piece[:max_chars - 1] + "…"


def token_labels(tokenizer, ids, max_chars: int = 10) -> list[str]:
    """Readable labels for token ids; without a tokenizer (e.g. random test tokens) the ids themselves."""
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [str(i) for i in ids]
    return [printable(tokenizer.id_to_piece(i), max_chars) for i in ids]


def label_font_size(n: int) -> float:
    """A font size that keeps n labels along one axis legible without overlapping (5 to 9 points)."""
    return max(5.0, min(9.0, 9.0 - (n - 30) / 15))
