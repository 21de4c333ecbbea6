"""Attention as pictures: one head's pattern with its tokens, a layer's heads grouped by KV head,
the GQA wiring, masks, the softmax scale, and per-head score tables."""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from .figure import annotate_cells, finish, integer_ticks, label_font_size, new_figure, text_colour_for, tidy

MAX_GRID_LABELS = 16    # token labels per axis of one small GQA panel; longer texts label every k-th token


def _pattern_of(cache, layer: int, head: int) -> np.ndarray:
    return cache.pattern(layer, head).float().cpu().numpy()                      # (q, k)


def attention_heatmap(pattern, labels: list[str], title: str = "", save=None):
    """One head's (queries, keys) pattern, every token labelled on both axes.

    Readable up to ~120 tokens: the figure grows with the text and the font shrinks a little. With fewer
    query rows than keys (pattern_rows, or a decode step), the rows are the last tokens.
    """
    pattern = torch.as_tensor(pattern).float().cpu().numpy()                    # (q, k)
    n_q, n_k = pattern.shape
    if len(labels) != n_k:
        raise ValueError(f"{len(labels)} labels for {n_k} keys: give one label per token")
    size = label_font_size(n_k)
    inch_per_token = size / 60
    fig = new_figure(2.2 + inch_per_token * n_k, 1.6 + inch_per_token * n_q)
    ax = fig.add_subplot()
    image = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_k), labels, rotation=90, fontsize=size)
    ax.set_yticks(range(n_q), labels[n_k - n_q:], fontsize=size)
    ax.set_xlabel("key: attended to")
    ax.set_ylabel("query: attending")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.6, label="attention weight")
    return finish(fig, save)


def head_heatmap(cache, layer: int, head: int, labels: list[str], n_rep: int | None = None, save=None):
    """attention_heatmap of cache.pattern(layer, head); with n_rep (cfg.n_rep) the title names its KV head."""
    group = "" if n_rep is None else f" (KV head {head // n_rep})"
    return attention_heatmap(_pattern_of(cache, layer, head), labels, f"layer {layer}, head {head}{group}", save)


def _sparse_ticks(labels: list[str]) -> tuple[list[int], list[str]]:
    """Every k-th token, so that at most MAX_GRID_LABELS labels share one small panel's axis."""
    step = math.ceil(len(labels) / MAX_GRID_LABELS)
    where = list(range(0, len(labels), step))
    return where, [labels[i] for i in where]


def gqa_grid(cache, layer: int, n_kv_heads: int, labels: list[str] | None = None, save=None):
    """One layer's query heads in an (n_kv_heads x n_rep) grid: each row shares one key/value head.

    Every row is framed in its own colour: those n_rep heads read the same keys and values and differ
    only in their queries, which is why their patterns often look alike. The outer panels carry the
    tokens (keys along the bottom, queries down the left); one colour bar serves every panel.
    """
    pattern = cache["pattern", layer][0].float().cpu().numpy()                   # (n_heads, q, k)
    n_heads, n_q, n_k = pattern.shape
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads do not split into {n_kv_heads} KV groups")
    if labels is not None and len(labels) != n_k:
        raise ValueError(f"{len(labels)} labels for {n_k} keys: give one label per token")
    n_rep = n_heads // n_kv_heads
    cell = 1.7 if n_kv_heads <= 4 else 1.3
    fig = new_figure(1.6 + cell * n_rep, 1.2 + cell * n_kv_heads)
    axes = fig.subplots(n_kv_heads, n_rep, squeeze=False, sharex=True, sharey=True)
    colours = [f"C{g % 10}" for g in range(n_kv_heads)]
    for group in range(n_kv_heads):
        for r in range(n_rep):
            head = group * n_rep + r
            ax = axes[group][r]
            image = ax.imshow(pattern[head], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_color(colours[group])
                spine.set_linewidth(3)
            ax.set_title(f"q head {head}", fontsize=7, pad=3)
            ax.tick_params(length=0, labelbottom=group == n_kv_heads - 1, labelleft=r == 0)
        axes[group][0].set_ylabel(f"KV head {group}", fontsize=8, color=colours[group], fontweight="bold")
    if labels is None:
        axes[0][0].set_xticks([])
        axes[0][0].set_yticks([])
    else:
        where, shown = _sparse_ticks(labels)
        axes[0][0].set_xticks(where, shown)
        axes[0][0].set_yticks([i - (n_k - n_q) for i in where if i >= n_k - n_q],
                              [s for i, s in zip(where, shown) if i >= n_k - n_q])
        for ax in axes[-1]:
            ax.tick_params(axis="x", labelrotation=90, labelsize=5.5)
        for ax in axes[:, 0]:
            ax.tick_params(axis="y", labelsize=5.5)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.5, label="attention weight")
    fig.suptitle(f"Layer {layer}: {n_heads} query heads, {n_kv_heads} shared key/value heads "
                 f"(one per row){'' if labels is None else f', {len(labels)} tokens'}", fontsize=9)
    return finish(fig, save)


def gqa_diagram(n_heads: int = 32, n_kv_heads: int = 8, save=None):
    """Query heads (top) wired to the KV head they read (bottom): head h reads KV head h // (n_heads // n_kv_heads)."""
    n_rep = n_heads // n_kv_heads
    fig = new_figure(9, 3.2)
    ax = fig.add_subplot()
    colours = colormaps["tab10"](np.arange(n_kv_heads) % 10)
    kv_x = [(g + 0.5) * n_heads / n_kv_heads - 0.5 for g in range(n_kv_heads)]
    for h in range(n_heads):
        g = h // n_rep
        ax.plot([h, kv_x[g]], [1, 0], color=colours[g], linewidth=1.2, alpha=0.8)
        ax.add_patch(Rectangle((h - 0.4, 1), 0.8, 0.35, color=colours[g]))
        if n_heads <= 32:
            ax.text(h, 1.45, str(h), ha="center", fontsize=7)
    for g, x in enumerate(kv_x):
        ax.add_patch(Rectangle((x - 1.2, -0.45), 2.4, 0.45, color=colours[g]))
        ax.text(x, -0.23, f"K,V {g}", ha="center", va="center", fontsize=8, fontweight="bold",
                color=text_colour_for(colours[g]))
    ax.text(-1.5, 1.17, "query\nheads", ha="right", va="center", fontsize=9)
    ax.text(-1.5, -0.23, "KV heads", ha="right", va="center", fontsize=9)
    ax.set_xlim(-4.5, n_heads)
    ax.set_ylim(-0.6, 1.7)
    ax.axis("off")
    ax.set_title(f"Grouped-query attention: {n_heads} query heads share {n_kv_heads} key/value heads "
                 f"({n_rep} each)")
    return finish(fig, save)


def masks_figure(masks: dict, save=None):
    """Boolean (q, k) masks side by side: filled where the query may look at the key."""
    fig = new_figure(3.3 * len(masks), 3.4)
    axes = fig.subplots(1, len(masks), squeeze=False)[0]
    for ax, (title, mask) in zip(axes, masks.items()):
        ax.imshow(mask.float().cpu().numpy(), cmap="Greens", vmin=0, vmax=1.3, interpolation="nearest")
        integer_ticks(ax.xaxis)
        integer_ticks(ax.yaxis)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    return finish(fig, save)


def softmax_temperature_figure(d_values=(16, 128, 1024), seed: int = 0, save=None):
    """Softmax of random q.k scores with and without the 1/sqrt(d) scale: unscaled, it collapses to one key."""
    g = torch.Generator().manual_seed(seed)
    fig = new_figure(8.5, 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    for d in d_values:
        q, k = torch.randn(d, generator=g), torch.randn(12, d, generator=g)   # (d,), (keys, d)
        scores = k @ q                                                        # (keys,)
        for ax, scale, title in ((axes[0], 1.0, "softmax(q.k)"), (axes[1], 1 / math.sqrt(d), "softmax(q.k / sqrt(d))")):
            weights = torch.softmax(scores * scale, -1).sort(descending=True).values   # (keys,)
            ax.plot(weights.numpy(), marker="o", markersize=3, label=f"d = {d}")
            ax.set_title(title)
            ax.set_xlabel("keys, largest weight first")
    for ax in axes:
        tidy(ax)
        integer_ticks(ax.xaxis)
    axes[0].set_ylabel("attention weight")
    axes[1].legend(fontsize=8)
    return finish(fig, save)


def head_scores(scores: dict[str, torch.Tensor], cmap: str = "viridis", vmin: float | None = None,
                vmax: float | None = None, save=None, colorbar_label: str = "score"):
    """One (n_layers, n_heads) heatmap per named score table, side by side; numbers printed on small grids.

    cmap, vmin and vmax apply to every table: e.g. vmin=0, vmax=1 for scores that are shares of
    attention, or cmap="RdBu" with vmin=-vmax for signed effects such as direct logit attribution.
    colorbar_label names the unit of the colour, e.g. "nats of logit difference".
    """
    n_layers, n_heads = next(iter(scores.values())).shape
    panel_width = min(9.0, 1.8 + 0.32 * n_heads)
    fig = new_figure(panel_width * len(scores), min(8.0, 1.4 + 0.3 * n_layers))
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    for ax, (name, table) in zip(axes, scores.items()):
        table = table.float().cpu().numpy()                                      # (n_layers, n_heads)
        image = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        if table.size <= 64:
            annotate_cells(ax, image, table)
        integer_ticks(ax.xaxis)
        integer_ticks(ax.yaxis)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    return finish(fig, save)


def entropy_by_layer_chart(entropy: torch.Tensor, max_entropy: float, save=None):
    """Each head's mean attention entropy per layer (dots) and the layer mean (line)."""
    entropy = entropy.float().cpu()
    n_layers, n_heads = entropy.shape
    fig = new_figure(6.5, 3.2)
    ax = tidy(fig.add_subplot())
    for layer in range(n_layers):
        ax.scatter([layer] * n_heads, entropy[layer].numpy(), s=12, color="#4e79a7", alpha=0.6,
                   label="one head" if layer == 0 else None)
    ax.plot(range(n_layers), entropy.mean(1).numpy(), color="#e15759", label="layer mean")
    ax.axhline(max_entropy, color="black", linestyle=":", label="uniform attention (maximum)")
    integer_ticks(ax.xaxis)
    ax.set_xlabel("layer")
    ax.set_ylabel("entropy (nats)")
    ax.set_title("How spread out each head's attention is")
    ax.legend(fontsize=8)
    return finish(fig, save)
