"""Reading circuits: the logit lens, activation patching by layer and position, and the per-position
loss that shows in-context copying (with and without ablated heads)."""
from __future__ import annotations

import torch

from .figure import annotate_cells, finish, label_font_size, new_figure, printable, text_colour_on, tidy

# The first line is thick and opaque; later ones thinner, dashed and half transparent, so that a control lying
# exactly on the model's curve shows as a thin line inside it instead of covering it.
LINE_STYLES = ({"linewidth": 3.0, "linestyle": "-"}, {"linewidth": 1.6, "linestyle": "-", "alpha": 0.85},
               {"linewidth": 1.0, "linestyle": "--", "alpha": 0.7}, {"linewidth": 1.0, "linestyle": ":", "alpha": 0.7})


def logit_lens_heatmap(lens, labels: list[str], tokenizer=None, save=None, row_labels: list[str] | None = None):
    """Rows (embed, layer 0..) x positions: colour = probability of the row's top token (or of the target).

    Each cell names its top token when a tokenizer is given and the grid is small enough to read.
    labels: one per position of the lens (the input tokens there); row_labels replace lens.rows on the y axis.
    """
    probs, ids = lens.top(1)                                                     # (rows, positions, 1)
    shown = lens.target_probs if lens.target is not None else probs[..., 0]
    shown = shown.cpu().numpy()                                                  # (rows, positions)
    n_rows, n_pos = shown.shape
    fig = new_figure(2 + 0.6 * n_pos, 1.3 + 0.35 * n_rows)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if tokenizer is not None and n_pos <= 40:
        for r in range(n_rows):
            for c in range(n_pos):
                piece = printable(tokenizer.id_to_piece(int(ids[r, c, 0])), 8)
                ax.text(c, r, piece, ha="center", va="center", fontsize=6, color=text_colour_on(image, shown[r, c]))
    ax.set_xticks(range(n_pos), labels, rotation=90, fontsize=label_font_size(n_pos))
    ax.set_yticks(range(n_rows), row_labels or lens.rows, fontsize=7)
    ax.set_xlabel("input token at the position")
    what = "p(target)" if lens.target is not None else "p(top token)"
    fig.colorbar(image, ax=ax, shrink=0.8, label=what)
    ax.set_title(f"Logit lens: {what} read off each layer", fontsize=10)
    return finish(fig, save)


def position_layer_heatmap(values: torch.Tensor, layers, position_labels, title: str, save=None,
                           ylabel: str = "layer", colorbar_label: str = "share restored"):
    """A (layers, positions) table, e.g. the share of a clean result restored by patching there.

    Centred on 0 (white) in red and blue, at least -1..1, so that 1 (fully restored) always looks the same.
    ylabel says what a row is (e.g. "stream entering layer"); colorbar_label the unit of the colour.
    """
    values = values.float().cpu().numpy()                                        # (layers, positions)
    fig = new_figure(2.2 + 0.55 * len(position_labels), 1.4 + 0.32 * len(layers))
    ax = fig.add_subplot()
    limit = max(1.0, float(abs(values).max()))
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    if values.size <= 120:
        annotate_cells(ax, image, values, fmt="{:.2f}", fontsize=6)
    ax.set_xticks(range(len(position_labels)), [printable(p) for p in position_labels], rotation=60, fontsize=8)
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=8)
    ax.set_xlabel("position (token)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label=colorbar_label)
    return finish(fig, save)


def loss_by_position_chart(losses: dict[str, torch.Tensor], period: int, save=None):
    """Per-position next-token loss on a repeated random sequence; the repeat starts after `period` tokens.

    Each later line is thinner, dashed and half transparent, drawn on top: a control that matches the model
    exactly stays visible without hiding the model's line under it.
    """
    fig = new_figure(7, 3.4)
    ax = tidy(fig.add_subplot())
    for i, (label, loss) in enumerate(losses.items()):
        style = LINE_STYLES[min(i, len(LINE_STYLES) - 1)]
        ax.plot(range(1, len(loss) + 1), loss.float().cpu().numpy(), label=label, **style)
    ax.axvline(period + 0.5, color="black", linestyle=":", label="the repeat begins")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.set_title("In-context copying: the second copy is predictable")
    ax.legend(fontsize=8)
    return finish(fig, save)
