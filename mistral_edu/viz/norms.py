"""The residual stream and RMSNorm: embedding rows, the stream's length block by block, the float32
statistic, and the learnt gains."""
from __future__ import annotations

import numpy as np
import torch

from .figure import finish, integer_ticks, new_figure, tidy

MAX_LINES = 12      # positions drawn one line each; beyond, a band and a median keep the chart readable
OTHER_COLOURS = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")   # every default colour but position 0's red


def vectors_heatmap(vectors: torch.Tensor, labels, title: str, max_dims: int = 64, save=None):
    """Rows of vectors (e.g. one embedding per token) as a heatmap of their first max_dims channels."""
    data = vectors[:, :max_dims].float().cpu().numpy()                     # (rows, max_dims)
    limit = float(np.abs(data).max()) or 1.0
    fig = new_figure(7.5, 0.3 * len(labels) + 1.3)
    ax = fig.add_subplot()
    image = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontfamily="monospace", fontsize=8)
    ax.set_xlabel(f"channel (first {data.shape[1]} of {vectors.shape[1]})")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03, label="value")
    return finish(fig, save)


def residual_norms(norms: torch.Tensor, labels=None, title: str = "Length of the residual stream, block by block",
                   save=None):
    """norms: (1 + n_layers, positions), the stream's L2 norm after the embedding and after each block.

    Position 0 is drawn apart, in red: in trained models the first token's stream often grows far
    larger than the rest (the attention sink). Up to MAX_LINES other positions get a line each, with
    their label; longer texts get the range and the median of positions 1.. instead.
    """
    data = norms.float().cpu().numpy()                                     # (points, positions)
    n_points, n_pos = data.shape
    labels = [str(p) for p in range(n_pos)] if labels is None else list(labels)
    if len(labels) != n_pos:
        raise ValueError(f"{len(labels)} labels for {n_pos} positions: give one label per position")
    x = np.arange(n_points)
    fig = new_figure(7, 3.4)
    ax = tidy(fig.add_subplot())
    if n_pos - 1 > MAX_LINES:
        rest = data[:, 1:]
        ax.fill_between(x, rest.min(1), rest.max(1), color="C0", alpha=0.2, label="positions 1.. (range)")
        ax.plot(x, np.median(rest, 1), color="C0", label="positions 1.. (median)")
    else:
        for j in range(1, n_pos):
            ax.plot(x, data[:, j], marker="o", markersize=2.5, linewidth=1,
                    color=OTHER_COLOURS[(j - 1) % len(OTHER_COLOURS)], label=labels[j])
    ax.plot(x, data[:, 0], marker="o", markersize=4, linewidth=2.2, color="#d62728", label=f"position 0: {labels[0]}")
    integer_ticks(ax.xaxis)
    ax.set_xlim(-0.3, n_points - 0.7)
    ax.set_xlabel("blocks applied (0 = the embedding)")
    ax.set_ylabel("‖h‖ (L2 norm)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2 if n_pos > 6 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return finish(fig, save)


def accumulation_error_figure(dims, errors: dict, save=None):
    """errors: label -> relative errors of mean(x^2), one per dim; log-log."""
    fig = new_figure(6.5, 3.3)
    ax = tidy(fig.add_subplot())
    for (label, values), marker in zip(errors.items(), "os^v"):
        ax.plot(dims, values, marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("vector length (dim)")
    ax.set_ylabel("relative error of mean(x²)")
    ax.axvline(4096, color="grey", linestyle=":", linewidth=1)
    ax.text(4096, 0.97, " Mistral 7B", fontsize=8, va="top", transform=ax.get_xaxis_transform())
    ax.set_title("Why RMSNorm takes its statistic in float32")
    ax.legend(fontsize=8)
    return finish(fig, save)


def norm_gains_figure(model, save=None):
    """Every RMSNorm gain of a model: per layer, the median and the 5-95% range across channels."""
    layers = range(model.cfg.n_layers)
    fig = new_figure(7, 3.3)
    ax = tidy(fig.add_subplot())
    for attr, colour in (("attention_norm", "#4e79a7"), ("ffn_norm", "#e15759")):
        gains = torch.stack([getattr(model.layers[i], attr).weight.detach().float().cpu() for i in layers])
        low, mid, high = (torch.quantile(gains, q, dim=1).numpy() for q in (0.05, 0.5, 0.95))
        ax.plot(layers, mid, marker="o", markersize=3, color=colour, label=f"{attr} (median)")
        ax.fill_between(layers, low, high, color=colour, alpha=0.2, label=f"{attr} (5-95%)")
    final = model.norm.weight.detach().float().cpu()
    ax.errorbar([model.cfg.n_layers], [final.median().item()], fmt="s", color="black",
                yerr=[[final.median().item() - torch.quantile(final, 0.05).item()],
                      [torch.quantile(final, 0.95).item() - final.median().item()]], label="final norm")
    integer_ticks(ax.xaxis)
    ax.set_xlabel(f"layer (the final norm at {model.cfg.n_layers})")
    ax.set_ylabel("gain g")
    ax.set_title(f"RMSNorm gains, {model.cfg.dim} channels each")
    ax.legend(fontsize=7)
    return finish(fig, save)
