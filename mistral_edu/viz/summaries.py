"""Whole-model summaries: residual norms by layer, per-head score tables, logit lens and patching maps."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..analysis.heads import first_token_score, head_entropy
from .figure import finish, label_font_size, new_figure, printable


def residual_norms(cache, save=None):
    """The residual stream's L2 norm entering each layer and after the last, per position (log scale).

    Needs every layer's resid_pre and the last layer's resid_post. Position 0 is drawn apart: in
    trained models the first token's stream often grows far larger than the rest (the attention sink).
    """
    n_layers = cache.n_layers
    streams = [cache["resid_pre", layer][0] for layer in range(n_layers)] + [cache["resid_post", n_layers - 1][0]]
    norms = torch.stack([s.float().norm(dim=-1) for s in streams]).cpu().numpy()  # (n_layers + 1, seq)
    fig = new_figure(6.5, 3.2)
    ax = fig.add_subplot()
    x = np.arange(n_layers + 1)
    if norms.shape[1] > 1:
        rest = norms[:, 1:]
        ax.fill_between(x, rest.min(1), rest.max(1), color="C0", alpha=0.2, label="positions 1.. (range)")
        ax.plot(x, np.median(rest, 1), color="C0", label="positions 1.. (median)")
    ax.plot(x, norms[:, 0], color="C3", marker="o", markersize=3, label="position 0")
    ax.set_xticks(x, [f"in {i}" for i in range(n_layers)] + ["out"], rotation=90 if n_layers > 8 else 0, fontsize=7)
    ax.set_xlabel("residual stream entering layer")
    ax.set_ylabel("L2 norm")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Residual stream norm by layer", fontsize=10)
    return finish(fig, save)


def head_summaries(cache) -> dict[str, torch.Tensor]:
    """(n_layers, n_heads) tables: mean attention entropy and sink mass (analysis.heads.first_token_score)."""
    patterns = [cache["pattern", layer] for layer in range(cache.n_layers)]
    return {"entropy (nats)": torch.stack([head_entropy(p) for p in patterns]),
            "sink mass (attention to token 0)": torch.stack([first_token_score(p) for p in patterns])}


def head_scores(scores: dict[str, torch.Tensor], save=None):
    """One (n_layers, n_heads) heatmap per named score table, side by side; numbers shown on small grids."""
    fig = new_figure(0.5 + 4.2 * len(scores), 3.6)
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    for ax, (name, table) in zip(axes, scores.items()):
        table = table.float().cpu().numpy()
        image = ax.imshow(table, cmap="viridis", aspect="auto", interpolation="nearest")
        n_layers, n_heads = table.shape
        if table.size <= 64:
            for layer in range(n_layers):
                for head in range(n_heads):
                    ax.text(head, layer, f"{table[layer, head]:.2f}", ha="center", va="center", fontsize=6,
                            color="white")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return finish(fig, save)


def logit_lens_heatmap(lens, labels: list[str], tokenizer=None, save=None):
    """Rows (embed, layer 0..) x positions: colour = probability of the row's top token (or of the target).

    Each cell names its top token when a tokenizer is given and the grid is small enough to read.
    labels: one per position of the lens (the input tokens there).
    """
    probs, ids = lens.top(1)                                                     # (rows, positions, 1)
    shown = lens.target_probs if lens.target is not None else probs[..., 0]
    shown = shown.cpu().numpy()
    n_rows, n_pos = shown.shape
    fig = new_figure(2 + 0.55 * n_pos, 1.2 + 0.35 * n_rows)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if tokenizer is not None and n_pos <= 40:
        for r in range(n_rows):
            for c in range(n_pos):
                piece = printable(tokenizer.id_to_piece(int(ids[r, c, 0])), 8)
                ax.text(c, r, piece, ha="center", va="center", fontsize=6,
                        color="black" if shown[r, c] > 0.5 else "white")
    ax.set_xticks(range(n_pos), labels, rotation=90, fontsize=label_font_size(n_pos))
    ax.set_yticks(range(n_rows), lens.rows, fontsize=7)
    ax.set_xlabel("input token at the position")
    what = "p(target)" if lens.target is not None else "p(top token)"
    fig.colorbar(image, ax=ax, shrink=0.8, label=what)
    ax.set_title(f"Logit lens: {what} read off each layer", fontsize=10)
    return finish(fig, save)


def patching_heatmap(result, column_labels: list[str] | None = None, save=None):
    """A PatchingResult's normalized values: 1 = patching there restores the clean run, 0 = no effect.

    Rows are layers; columns are positions (patch_residual) or heads (patch_heads).
    """
    values = result.normalized.float().cpu().numpy()                             # (n_layers, columns)
    n_layers, n_cols = values.shape
    limit = max(1.0, float(np.nanmax(np.abs(values)))) if np.isfinite(values).any() else 1.0
    fig = new_figure(2 + 0.45 * n_cols, 1.2 + 0.3 * n_layers)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    labels = column_labels if column_labels is not None else [str(c) for c in range(n_cols)]
    ax.set_xticks(range(n_cols), labels, rotation=90, fontsize=label_font_size(n_cols))
    ax.set_yticks(range(n_layers), [str(layer) for layer in range(n_layers)], fontsize=7)
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the clean result restored")
    ax.set_title(f"Activation patching (clean {result.clean:.2f}, corrupted {result.corrupted:.2f})", fontsize=10)
    if not math.isfinite(result.clean - result.corrupted) or result.clean == result.corrupted:
        ax.set_title("Activation patching: clean and corrupted give the same metric", fontsize=10)
    return finish(fig, save)
