"""What every figure function shares: one figure style, saving, and readable labels.

Figures are matplotlib.figure.Figure objects, not pyplot's: nothing global is left open or changed
(no rcParams), and a notebook shows a returned figure exactly once, as the cell's value, also in
VS Code, Colab and a GitHub preview, where the PNG is stored in the notebook.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

DPI = 110           # ~770 px for a 7-inch figure: sharp text, and a notebook of PNGs stays well under 1 MB
GIB = 2**30
KIB = 2**10


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches at DPI, never larger than a screen can show."""
    return Figure(figsize=(min(width, 16), min(height, 16)), dpi=DPI, layout="constrained")


def tidy(ax: Axes, grid: bool = True) -> Axes:
    """The house style for charts (not images): a faint grid behind the data, no top or right frame."""
    ax.grid(grid, alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def integer_ticks(axis) -> None:
    """Ticks only at whole numbers (layers, heads, positions), never at 2.5."""
    axis.set_major_locator(MaxNLocator(integer=True))


def text_colour_for(rgba) -> str:
    """Black on light colours, white on dark ones, judged by the colour's luminance (Rec. 709 weights)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def text_colour_on(image: AxesImage, value: float) -> str:
    """The text colour that reads on the cell colour `image` gives `value`."""
    return text_colour_for(image.cmap(image.norm(value)))


def annotate_cells(ax: Axes, image: AxesImage, table, fmt: str = "{:.2f}", fontsize: float = 7) -> None:
    """Print each cell's value on a heatmap, in the colour its own background needs."""
    for row in range(table.shape[0]):
        for col in range(table.shape[1]):
            value = float(table[row, col])
            ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=fontsize,
                    color=text_colour_on(image, value))


def finish(fig: Figure, save: str | Path | None) -> Figure:
    """Save fig as PNG when a path is given (its folder is created), and return it."""
    if save is not None:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=DPI, format="png")
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
