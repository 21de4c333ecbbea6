"""Figures and small explorers for notebooks 00-05: memory fit, tokenizer pieces, RMSNorm, RoPE,
attention and GQA diagrams, where the parameters live.

Each figure function draws with matplotlib and returns the Figure (the notebook's inline backend
shows it); each explorer returns an ipywidgets widget. Nothing here touches the network.
"""
from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..config import ModelConfig

GIB = 2**30
PIECE_COLOURS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad")
BYTE_COLOUR = "#e0e0e0"


def use_lesson_style() -> None:
    """Modest, readable PNG figures: small enough to keep each notebook well under 3 MB."""
    plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72, "figure.figsize": (7, 3.5), "font.size": 10,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False})


# ----------------------------------------------------------------------------- 00: what fits where

def memory_fit_chart(cfg: ModelConfig, contexts=(4096, 32768), devices=None):
    """Weights at four precisions plus the bf16 KV cache at a few context lengths, against devices' memory."""
    from ..memory import parameter_count
    devices = devices or {"16 GiB laptop": 16, "24 GiB GPU": 24, "80 GiB H100": 80}
    params = parameter_count(cfg)
    precisions = {"float32 (4 B)": 4, "bfloat16 (2 B)": 2, "int8 (1 B)": 1, "int4 (0.5 B)": 0.5}
    kv_per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2          # K and V, bf16
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    names = list(precisions)
    weights = np.array([params * b / GIB for b in precisions.values()])
    ax.barh(names, weights, color="#4e79a7", label="weights")
    left = weights.copy()
    for context, colour in zip(contexts, ("#f28e2b", "#e15759", "#76b7b2")):
        extra = kv_per_token * context / GIB - (left - weights)
        ax.barh(names, extra, left=left, color=colour, label=f"KV cache at {context:,} tokens (bf16)")
        left = left + extra
    for (label, gib), style in zip(devices.items(), (":", "--", "-.")):
        ax.axvline(gib, color="black", linestyle=style, linewidth=1)
        ax.text(gib + 0.6, -0.45, label, fontsize=8, rotation=90, va="top", ha="left")
    ax.set_xlabel("GiB")
    ax.invert_yaxis()
    ax.set_title(f"What fits where: {params / 1e9:.2f}B parameters")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 01: tokenizer pieces

def pieces_html(tok, ids) -> str:
    """Token ids as coloured boxes: the piece on top (▁ marks a leading space), the id below.

    Byte-fallback pieces (<0x..>) are grey, so you can see where the vocabulary ran out.
    """
    boxes = []
    for n, i in enumerate(ids):
        piece = tok.id_to_piece(int(i))
        is_byte = piece.startswith("<0x") and piece.endswith(">")
        colour = BYTE_COLOUR if is_byte else PIECE_COLOURS[n % len(PIECE_COLOURS)]
        boxes.append(
            f'<span style="display:inline-block;margin:2px;padding:2px 4px;border-radius:4px;'
            f'background:{colour};color:#000;font-family:monospace;text-align:center">'
            f'{html.escape(piece)}<br><span style="font-size:70%;color:#555">{int(i)}</span></span>')
    return f'<div style="line-height:2.2">{"".join(boxes)}</div>'


def show_pieces(tok, text: str, bos: bool = False):
    """Display text's pieces coloured, with their ids (an IPython HTML object)."""
    from IPython.display import HTML
    ids = tok.encode(text, bos=bos)
    return HTML(f"<div>{len(ids)} tokens for {len(text)} characters</div>" + pieces_html(tok, ids))


def token_explorer(tok, text: str = "Hello world! Bonjour 🦙 [INST]"):
    """A text box and its pieces, updated as you type."""
    import ipywidgets as widgets
    box = widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%", height="60px"))
    bos = widgets.Checkbox(value=False, description="add BOS")
    view = widgets.HTML()

    def update(_=None):
        ids = tok.encode(box.value, bos=bos.value)
        n_bytes = sum(tok.id_to_piece(i).startswith("<0x") for i in ids)
        view.value = (f"<div>{len(ids)} tokens, {len(box.value)} characters, {n_bytes} byte-fallback pieces; "
                      f"ids: <code>{ids[:64]}{' ...' if len(ids) > 64 else ''}</code></div>"
                      + pieces_html(tok, ids))

    box.observe(update, names="value")
    bos.observe(update, names="value")
    update()
    return widgets.VBox([box, bos, view])


def token_count_chart(rows):
    """rows: (label, characters, tokens, byte_pieces). Tokens per sample, and tokens per character."""
    labels = [r[0] for r in rows]
    chars = np.array([r[1] for r in rows])
    tokens = np.array([r[2] for r in rows])
    byte_pieces = np.array([r[3] for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    ax1.barh(labels, tokens - byte_pieces, color="#4e79a7", label="vocabulary pieces")
    ax1.barh(labels, byte_pieces, left=tokens - byte_pieces, color="#bab0ac", label="byte-fallback pieces")
    ax1.set_xlabel("tokens for the same sentence")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.invert_yaxis()
    ax2.barh(labels, tokens / chars, color="#59a14f")
    ax2.set_xlabel("tokens per character")
    fig.suptitle("One sentence, many languages: what it costs in tokens")
    fig.tight_layout()
    return fig


def vocabulary_chart(tok):
    """What the 32,000 pieces look like: their lengths, with and without the leading ▁, and the special ids."""
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    is_byte = np.array([p.startswith("<0x") and p.endswith(">") for p in pieces])
    starts_word = np.array([p.startswith("▁") for p in pieces])
    lengths = np.array([len(p.lstrip("▁")) for p in pieces])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.arange(0.5, 17.5, 1)
    ordinary = ~is_byte & (np.arange(len(pieces)) > 2)
    ax.hist([lengths[ordinary & starts_word], lengths[ordinary & ~starts_word]], bins=bins, stacked=True,
            color=["#4e79a7", "#f28e2b"], label=["starts a word (▁...)", "continues a word"])
    ax.set_xlabel("characters in the piece (without ▁)")
    ax.set_ylabel("pieces")
    ax.set_title(f"The {tok.vocab_size:,} pieces: {int(is_byte.sum())} bytes, 3 special, the rest learnt by BPE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 02: embeddings and RMSNorm

def vectors_heatmap(vectors: torch.Tensor, labels, title: str, max_dims: int = 64):
    """Rows of vectors (e.g. one embedding per token) as a heatmap of their first max_dims channels."""
    data = vectors[:, :max_dims].float().cpu().numpy()                     # (rows, max_dims)
    limit = float(np.abs(data).max()) or 1.0
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(labels) + 1.2))
    image = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontfamily="monospace", fontsize=8)
    ax.set_xlabel(f"channel (first {data.shape[1]} of {vectors.shape[1]})")
    ax.grid(False)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def norms_by_layer_figure(norms: torch.Tensor, labels, title: str):
    """norms: (points, positions) — the residual stream's length at each point, one line per position."""
    data = norms.float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(7, 3.3))
    for j in range(data.shape[1]):
        ax.plot(range(data.shape[0]), data[:, j], marker="o", markersize=3, label=labels[j])
    ax.set_xticks(range(data.shape[0]))
    ax.set_xticklabels(["embed"] + [str(i) for i in range(data.shape[0] - 1)], fontsize=8)
    ax.set_xlabel("after block")
    ax.set_ylabel("‖h‖ (L2 norm)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def accumulation_error_figure(dims, errors: dict):
    """errors: label -> relative errors of mean(x^2), one per dim; log-log."""
    fig, ax = plt.subplots(figsize=(6.5, 3.3))
    for (label, values), marker in zip(errors.items(), "os^v"):
        ax.plot(dims, values, marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("vector length (dim)")
    ax.set_ylabel("relative error of mean(x²)")
    ax.axvline(4096, color="grey", linestyle=":", linewidth=1)
    ax.text(4096, ax.get_ylim()[1], " Mistral 7B", fontsize=8, va="top")
    ax.set_title("Why RMSNorm takes its statistic in float32")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def norm_gains_figure(model):
    """Every RMSNorm gain of a model: per layer, the median and the 5-95% range across channels."""
    layers = range(model.cfg.n_layers)
    fig, ax = plt.subplots(figsize=(7, 3.3))
    for attr, colour in (("attention_norm", "#4e79a7"), ("ffn_norm", "#e15759")):
        gains = torch.stack([getattr(model.layers[i], attr).weight.detach().float().cpu() for i in layers])
        low, mid, high = (torch.quantile(gains, q, dim=1).numpy() for q in (0.05, 0.5, 0.95))
        ax.plot(layers, mid, marker="o", markersize=3, color=colour, label=f"{attr} (median)")
        ax.fill_between(layers, low, high, color=colour, alpha=0.2, label=f"{attr} (5-95%)")
    final = model.norm.weight.detach().float().cpu()
    ax.errorbar([model.cfg.n_layers], [final.median().item()], fmt="s", color="black",
                yerr=[[final.median().item() - torch.quantile(final, 0.05).item()],
                      [torch.quantile(final, 0.95).item() - final.median().item()]], label="final norm")
    ax.set_xlabel("layer")
    ax.set_ylabel("gain g")
    ax.set_title(f"RMSNorm gains, {model.cfg.dim} channels each")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
