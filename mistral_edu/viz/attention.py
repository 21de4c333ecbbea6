"""Attention patterns as pictures: one head with its tokens, and one layer's heads grouped by KV head."""
from __future__ import annotations

import numpy as np
import torch

from .figure import finish, label_font_size, new_figure


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


def gqa_grid(cache, layer: int, n_kv_heads: int, labels: list[str] | None = None, save=None):
    """One layer's query heads in an (n_kv_heads x n_rep) grid: each row shares one key/value head.

    Every row is framed in its own colour: those n_rep heads read the same keys and values and differ
    only in their queries, which is why their patterns often look alike.
    """
    pattern = cache["pattern", layer][0].float().cpu().numpy()                   # (n_heads, q, k)
    n_heads = pattern.shape[0]
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads do not split into {n_kv_heads} KV groups")
    n_rep = n_heads // n_kv_heads
    cell = 1.5 if n_kv_heads <= 4 else 1.1
    fig = new_figure(0.9 + cell * n_rep, 0.7 + cell * n_kv_heads)
    axes = fig.subplots(n_kv_heads, n_rep, squeeze=False)
    colours = [f"C{g % 10}" for g in range(n_kv_heads)]
    for group in range(n_kv_heads):
        for r in range(n_rep):
            head = group * n_rep + r
            ax = axes[group][r]
            ax.imshow(pattern[head], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colours[group])
                spine.set_linewidth(3)
            ax.set_title(f"q head {head}", fontsize=7, pad=4)
        axes[group][0].set_ylabel(f"KV head {group}", fontsize=8, color=colours[group], fontweight="bold")
    fig.suptitle(f"Layer {layer}: {n_heads} query heads, {n_kv_heads} shared key/value heads "
                 f"(one per row){'' if labels is None else f', {len(labels)} tokens'}", fontsize=9)
    return finish(fig, save)
