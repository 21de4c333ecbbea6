"""Decoding pictures: what the KV cache saves per token, v0.1's rolling buffer, temperature and top-p."""
from __future__ import annotations

import numpy as np
import torch

from ..generation import top_p_filter
from .figure import finish, new_figure, tidy


def decode_cost_chart(lengths, cached_ms, recomputed_ms, title: str = "Cost of one new token", save=None):
    """Milliseconds per new token at each sequence length, with and without the KV cache."""
    fig = new_figure(6.5, 3.2)
    ax = tidy(fig.add_subplot())
    ax.plot(lengths, recomputed_ms, "o-", color="#e15759", label="no cache: recompute every position")
    ax.plot(lengths, cached_ms, "o-", color="#4e79a7", label="KV cache: only the new position")
    ax.set_xlabel("tokens already in the sequence")
    ax.set_ylabel("ms per new token")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return finish(fig, save)


def rolling_buffer_chart(window: int, n_positions: int, save=None):
    """Which position each slot of a rolling buffer holds after each step (slot = position mod window)."""
    grid = np.full((n_positions, window), -1)
    for step in range(n_positions):
        for pos in range(max(0, step - window + 1), step + 1):
            grid[step, pos % window] = pos
    fig = new_figure(1.4 + 0.6 * window, 0.8 + 0.3 * n_positions)
    ax = fig.add_subplot()
    ax.imshow(np.where(grid >= 0, grid % window, np.nan), cmap="Pastel1", aspect="auto", vmin=0, vmax=8)
    for step in range(n_positions):
        for slot in range(window):
            if grid[step, slot] >= 0:
                newest = grid[step, slot] == step
                ax.text(slot, step, str(grid[step, slot]), ha="center", va="center", fontsize=8,
                        fontweight="bold" if newest else "normal")
    ax.set_xticks(range(window), [f"slot {s}" for s in range(window)], fontsize=8)
    ax.set_yticks(range(n_positions), [f"after pos {p}" for p in range(n_positions)], fontsize=7)
    ax.set_title(f"Rolling buffer, window {window}: bold = just written", fontsize=9)
    return finish(fig, save)


def sampling_chart(logits: torch.Tensor, ids: list[int], labels: list[str], temperatures=(0.5, 1.0, 2.0),
                   top_p: float = 0.9, save=None):
    """Probabilities of the tokens `ids` at several temperatures, coloured by membership of the top-p nucleus.

    logits: (vocab,) the model's next-token logits; the softmax and the nucleus are taken over the
    whole vocabulary, exactly as generate() samples. Each panel has its own probability scale: at a
    high temperature the shown tokens hold little mass, and a shared scale would draw them flat.
    """
    fig = new_figure(3.0 * len(temperatures), 3.2)
    axes = fig.subplots(1, len(temperatures), squeeze=False)[0]
    for ax, t in zip(axes, temperatures):
        probs = torch.softmax(logits.double() / t, -1)                       # (vocab,)
        kept = top_p_filter(probs, top_p) > 0                                # (vocab,) the nucleus generate draws from
        shown = probs[ids].numpy()                                           # (len(ids),)
        tidy(ax)
        ax.bar(range(len(ids)), shown, color=np.where(kept[ids].numpy(), "#4e79a7", "#bab0ac"))
        ax.set_ylim(0, 1.15 * float(shown.max()))
        ax.set_xticks(range(len(ids)), labels, rotation=70, fontsize=7)
        ax.set_title(f"T = {t}: nucleus of {int(kept.sum()):,} tokens\n"
                     f"these {len(ids)} hold {shown.sum():.1%}", fontsize=9)
    axes[0].set_ylabel("probability (own scale per panel)")
    fig.suptitle(f"Temperature reshapes the distribution; blue = inside the top-p={top_p} nucleus", fontsize=9)
    return finish(fig, save)
