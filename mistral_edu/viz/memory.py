"""Memory pictures: what fits where, the KV cache against context, byte breakdowns, the bandwidth
floor of decoding, and where the parameters live."""
from __future__ import annotations

import numpy as np

from .. import memory
from ..config import ModelConfig
from .figure import GIB, KIB, finish, new_figure, tidy


# The formats the chart compares: what load_model runs (bf16, its int8 strategy) beside the 4-bit formats other
# tools load; each bar has that format's real bytes, scales included (memory.formats).
FIT_FORMATS = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8, ours (load_model's int8)",
               "int4-g128": "4-bit GPTQ/AWQ-like", "gguf-q4_k_m": "llama.cpp GGUF Q4_K_M"}


def memory_fit_chart(cfg: ModelConfig, contexts=(4096, 32768), machines=None, save=None):
    """Weights in five formats plus the bf16 KV cache at a few contexts, against the memory machines leave free.

    The lines are memory.MACHINES' available memory (a 16 GB laptop leaves about 11 GB to a process), the
    numbers load_model's fit check uses; that check also counts the activation peak of reading the prompt,
    which notebook 07 adds.
    """
    machines = machines or memory.MACHINES
    names = list(FIT_FORMATS.values())
    weights = np.array([memory.weight_bytes(cfg, fmt) / GIB for fmt in FIT_FORMATS])
    fig = new_figure(7.5, 3.8)
    ax = tidy(fig.add_subplot())
    ax.barh(names, weights, color="#4e79a7", label="weights")
    left = weights.copy()
    for context, colour in zip(contexts, ("#f28e2b", "#e15759", "#76b7b2")):
        extra = memory.kv_cache_bytes(cfg, context) / GIB - (left - weights)
        ax.barh(names, extra, left=left, color=colour, label=f"KV cache at {context:,} tokens (bf16)")
        left = left + extra
    for machine, style in zip(machines.values(), (":", "--", "-.", (0, (1, 3)))):
        gib = machine.available / GIB
        ax.axvline(gib, color="black", linestyle=style, linewidth=1)
        ax.text(gib + 0.6, -0.45, f"{machine.name}: {gib:.1f} GiB free", fontsize=7, rotation=90, va="top",
                ha="left")
    ax.set_xlabel("GiB")
    ax.invert_yaxis()
    ax.set_title(f"What fits where: {memory.parameter_count(cfg) / 1e9:.2f}B parameters, activations not included")
    ax.legend(loc="lower right", fontsize=8)
    return finish(fig, save)


def kv_cache_chart(cfg: ModelConfig, batches=(1,), without_gqa: bool = True, weights_gib: float | None = None,
                   max_context: int | None = None, cache_dtype: str = "bf16", save=None):
    """KV-cache GiB against context on linear axes, where its growth is a straight line.

    One line per batch size with the model's n_kv_heads; without_gqa adds, dashed and on top (it can
    coincide with a larger batch), what batch 1 would need with one KV head per query head;
    weights_gib draws the weights for comparison.
    """
    max_context = max_context or cfg.max_seq_len
    contexts = np.linspace(1, max_context, 33).round().astype(int)
    fig = new_figure(6.5, 3.3)
    ax = tidy(fig.add_subplot())
    per_token = memory.kv_cache_bytes(cfg, 1, cache_dtype=cache_dtype) // KIB
    for batch, colour in zip(batches, ("#4e79a7", "#59a14f", "#f28e2b", "#76b7b2")):
        gib = [memory.kv_cache_bytes(cfg, int(c), batch, cache_dtype) / GIB for c in contexts]
        ax.plot(contexts, gib, color=colour,
                label=f"with GQA: {cfg.n_kv_heads} KV heads, batch {batch}, {per_token * batch} KiB/token")
    if without_gqa:
        gib = [memory.kv_cache_bytes(cfg, int(c), 1, cache_dtype, gqa=False) / GIB for c in contexts]
        ax.plot(contexts, gib, "--", color="#e15759", linewidth=2, zorder=3,
                label=f"without GQA: {cfg.n_heads} KV heads, batch 1, {per_token * cfg.n_rep} KiB/token")
    if weights_gib is not None:
        ax.axhline(weights_gib, color="black", linestyle=":", label=f"the bf16 weights, {weights_gib:.1f} GiB")
    ticks = np.linspace(0, max_context, 5)
    ax.set_xticks(ticks, [f"{t / 1024:g}k" if t else "0" for t in ticks])
    ax.set_xlim(0, max_context * 1.02)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("tokens in context")
    ax.set_ylabel("GiB")
    batch_too = " and batch" if len(batches) > 1 else ""
    ax.set_title(f"The KV cache ({cache_dtype}) grows linearly with context{batch_too}")
    ax.legend(fontsize=8, loc="upper left", framealpha=1)   # opaque: the weights line passes behind
    return finish(fig, save)


def breakdown_chart(rows: dict[str, dict[str, float]], capacity_gib: float | None = None, title: str = "", save=None):
    """Stacked horizontal bars: rows {label: {part: bytes}}, an optional device line."""
    parts = list(dict.fromkeys(p for r in rows.values() for p in r))
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"]
    fig = new_figure(7, 1.0 + 0.4 * len(rows))
    ax = tidy(fig.add_subplot())
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
    return finish(fig, save)


def bandwidth_chart(gpus: dict[str, float], weight_bytes: dict[str, float], save=None):
    """Lower bound on ms per token (bytes read / bandwidth) for each GPU and weight format."""
    fig = new_figure(7, 3.2)
    ax = tidy(fig.add_subplot())
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
    return finish(fig, save)


def parameter_chart(breakdown: dict, title: str, save=None):
    """Parameters per component as horizontal bars with their share of the total."""
    total = sum(breakdown.values())
    items = sorted(breakdown.items(), key=lambda kv: kv[1])
    fig = new_figure(7, 1.2 + 0.35 * len(items))
    ax = tidy(fig.add_subplot())
    bars = ax.barh([k for k, _ in items], [v / 1e6 for _, v in items], color="#4e79a7")
    for bar, (_, v) in zip(bars, items):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v / 1e6:,.1f}M ({v / total:.1%})",
                va="center", fontsize=8)
    ax.set_xlabel("millions of parameters")
    ax.set_xlim(0, max(breakdown.values()) / 1e6 * 1.35)
    ax.set_title(title)
    return finish(fig, save)
