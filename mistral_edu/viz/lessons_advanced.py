"""Figures for notebooks 06-10: decoding cost, KV-cache memory, the rolling buffer, sampling, VRAM.

Each function draws with matplotlib from numbers the notebook computed and returns the Figure; none
runs the model itself, so the same figure works on the embedded default and on the real weights.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import memory
from ..config import ModelConfig

GIB = 2**30
KIB = 2**10


# ----------------------------------------------------------------------------- 06: the KV cache

def decode_cost_chart(lengths, cached_ms, recomputed_ms, title: str = "Cost of one new token"):
    """Milliseconds per new token at each sequence length, with and without the KV cache."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.plot(lengths, recomputed_ms, "o-", color="#e15759", label="no cache: recompute every position")
    ax.plot(lengths, cached_ms, "o-", color="#4e79a7", label="KV cache: only the new position")
    ax.set_xlabel("tokens already in the sequence")
    ax.set_ylabel("ms per new token")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kv_cache_memory_chart(cfg: ModelConfig, max_context: int | None = None, cache_dtype: str = "bf16"):
    """KV-cache GiB against context length, with GQA (n_kv_heads) and as it would be without (n_heads)."""
    max_context = max_context or cfg.max_seq_len
    context = np.linspace(0, max_context, 65)
    with_gqa = memory.kv_cache_bytes(cfg, 1, cache_dtype=cache_dtype)               # bytes per token
    without_gqa = memory.kv_cache_bytes(cfg, 1, cache_dtype=cache_dtype, gqa=False)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.plot(context, context * without_gqa / GIB, "--", color="#e15759",
            label=f"without GQA: {cfg.n_heads} KV heads, {without_gqa // KIB} KiB/token")
    ax.plot(context, context * with_gqa / GIB, color="#4e79a7",
            label=f"with GQA: {cfg.n_kv_heads} KV heads, {with_gqa // KIB} KiB/token")
    ax.set_xlabel("tokens in context")
    ax.set_ylabel("GiB (batch 1)")
    ax.set_title(f"KV cache in {cache_dtype}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rolling_buffer_chart(window: int, n_positions: int):
    """Which position each slot of a rolling buffer holds after each step (slot = position mod window)."""
    grid = np.full((n_positions, window), -1)
    for step in range(n_positions):
        for pos in range(max(0, step - window + 1), step + 1):
            grid[step, pos % window] = pos
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * window, 0.6 + 0.32 * n_positions))
    ax.imshow(np.where(grid >= 0, grid % window, np.nan), cmap="Pastel1", aspect="auto", vmin=0, vmax=8)
    for step in range(n_positions):
        for slot in range(window):
            if grid[step, slot] >= 0:
                newest = grid[step, slot] == step
                ax.text(slot, step, str(grid[step, slot]), ha="center", va="center", fontsize=8,
                        fontweight="bold" if newest else "normal")
    ax.set_xticks(range(window), [f"slot {s}" for s in range(window)], fontsize=8)
    ax.set_yticks(range(n_positions), [f"after pos {p}" for p in range(n_positions)], fontsize=7)
    ax.grid(False)
    ax.set_title(f"Rolling buffer, window {window}: bold = just written", fontsize=9)
    fig.tight_layout()
    return fig


def sampling_chart(logits: torch.Tensor, ids: list[int], labels: list[str], temperatures=(0.5, 1.0, 2.0),
                   top_p: float = 0.9):
    """Probabilities of the tokens `ids` at several temperatures, coloured by membership of the top-p nucleus.

    logits: (vocab,) the model's next-token logits; the softmax and the nucleus are taken over the
    whole vocabulary, exactly as generate() samples.
    """
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.0 * len(temperatures), 3.0), sharey=True)
    for ax, t in zip(np.atleast_1d(axes), temperatures):
        probs = torch.softmax(logits.double() / t, -1)                       # (vocab,)
        sorted_probs, order = probs.sort(descending=True)
        kept_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p       # mass before each token < top_p
        kept = torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)  # (vocab,) in vocabulary order
        shown = probs[ids].numpy()
        ax.bar(range(len(ids)), shown, color=np.where(kept[ids].numpy(), "#4e79a7", "#bab0ac"))
        ax.set_xticks(range(len(ids)), labels, rotation=70, fontsize=7)
        ax.set_title(f"T = {t}: nucleus of {int(kept.sum()):,} tokens", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("probability")
    fig.suptitle(f"Temperature reshapes the distribution; blue = inside the top-p={top_p} nucleus", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 07: VRAM

def breakdown_chart(rows: dict[str, dict[str, float]], capacity_gib: float | None = None, title: str = ""):
    """Stacked horizontal bars: rows {label: {part: bytes}}, an optional device line."""
    parts = list(dict.fromkeys(p for r in rows.values() for p in r))
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(rows)))
    left = np.zeros(len(rows))
    for part, colour in zip(parts, colours):
        values = np.array([rows[r].get(part, 0) / GIB for r in rows])
        ax.barh(list(rows), values, left=left, color=colour, label=part)
        left += values
    for i, total in enumerate(left):
        ax.text(total, i, f" {total:.1f}", va="center", fontsize=8)
    if capacity_gib:
        ax.axvline(capacity_gib, color="black", linestyle="--", linewidth=1)
        ax.text(capacity_gib, -0.6, f" {capacity_gib:g} GiB", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GiB")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def kv_by_context_chart(contexts, gib_by_batch: dict[int, list[float]], weights_gib: float):
    """KV cache GiB against context for several batch sizes, beside the weights' GiB."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for batch, values in gib_by_batch.items():
        ax.plot(contexts, values, "o-", label=f"KV cache, batch {batch}")
    ax.axhline(weights_gib, color="black", linestyle=":", label=f"bf16 weights, {weights_gib:.1f} GiB")
    ax.set_xscale("log", base=2)
    ax.set_xticks(contexts, [f"{c // 1024}k" if c >= 1024 else str(c) for c in contexts])
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("GiB")
    ax.set_title("KV cache grows linearly with context and batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bandwidth_chart(gpus: dict[str, float], weight_bytes: dict[str, float]):
    """Lower bound on ms per token (bytes read / bandwidth) for each GPU and weight format."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(gpus)
    width = 0.8 / len(weight_bytes)
    for i, (fmt, nbytes) in enumerate(weight_bytes.items()):
        ms = [nbytes / (gpus[g] * 1e9) * 1e3 for g in names]
        ax.bar(np.arange(len(names)) + i * width, ms, width, label=fmt)
    ax.set_xticks(np.arange(len(names)) + width * (len(weight_bytes) - 1) / 2,
                  [name.replace(" (", "\n(") for name in names], fontsize=8)
    ax.set_ylabel("ms per token (floor)")
    ax.set_title("Decoding reads every weight once per token: time >= bytes / bandwidth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 08-09: per-head tables

def layer_head_grid(scores: torch.Tensor, title: str, cmap: str = "viridis", vmin=0.0, vmax=None, fmt="{:.2f}"):
    """A (n_layers, n_heads) table of scores as a heatmap; numbers printed when the grid is small."""
    scores = scores.float().cpu()
    n_layers, n_heads = scores.shape
    fig, ax = plt.subplots(figsize=(min(9, 1.5 + 0.45 * n_heads), min(7, 1.2 + 0.35 * n_layers)))
    im = ax.imshow(scores.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if n_layers * n_heads <= 64:
        for layer in range(n_layers):
            for head in range(n_heads):
                ax.text(head, layer, fmt.format(float(scores[layer, head])), ha="center", va="center",
                        fontsize=7, color="white")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.grid(False)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def entropy_by_layer_chart(entropy: torch.Tensor, max_entropy: float):
    """Each head's mean attention entropy per layer (dots) and the layer mean (line)."""
    entropy = entropy.float().cpu()
    n_layers, n_heads = entropy.shape
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for layer in range(n_layers):
        ax.scatter([layer] * n_heads, entropy[layer].numpy(), s=12, color="#4e79a7", alpha=0.6)
    ax.plot(range(n_layers), entropy.mean(1).numpy(), color="#e15759", label="layer mean")
    ax.axhline(max_entropy, color="black", linestyle=":", label="uniform attention (maximum)")
    ax.set_xlabel("layer")
    ax.set_ylabel("entropy (nats)")
    ax.set_title("How spread out each head's attention is")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def position_layer_heatmap(values: torch.Tensor, layers, position_labels, title: str):
    """A (layers, positions) table, e.g. the share of a clean result restored by patching there."""
    values = values.float().cpu()
    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * len(position_labels), 1.2 + 0.35 * len(layers)))
    limit = max(1.0, float(values.abs().max()))
    im = ax.imshow(values.numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(position_labels)), position_labels, rotation=60, fontsize=8)
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=8)
    ax.set_xlabel("position (token)")
    ax.set_ylabel("layer")
    ax.grid(False)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 09: residual stream and circuits

def loss_by_position_chart(losses: dict[str, torch.Tensor], period: int):
    """Per-position next-token loss on a repeated random sequence; the repeat starts after `period` tokens."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for label, loss in losses.items():
        ax.plot(range(1, len(loss) + 1), loss.float().cpu().numpy(), label=label)
    ax.axvline(period + 0.5, color="black", linestyle=":", label="the repeat begins")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.set_title("In-context copying: the second copy is predictable")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
