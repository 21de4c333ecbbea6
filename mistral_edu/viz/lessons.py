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
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel(f"layer (the final norm at {model.cfg.n_layers})")
    ax.set_ylabel("gain g")
    ax.set_title(f"RMSNorm gains, {model.cfg.dim} channels each")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 03: RoPE

def rotation_figure(vector=(1.0, 0.3), step: float = math.pi / 8, positions: int = 6):
    """One pair of channels rotated by position * step: the same arrow, turned further for later tokens."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    colours = plt.cm.viridis(np.linspace(0, 0.9, positions))
    for m in range(positions):
        angle = m * step
        x = vector[0] * math.cos(angle) - vector[1] * math.sin(angle)
        y = vector[0] * math.sin(angle) + vector[1] * math.cos(angle)
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colours[m], lw=2))
        ax.text(x * 1.12, y * 1.12, f"m={m}", fontsize=8, ha="center", va="center", color=colours[m])
    limit = 1.3 * math.hypot(*vector)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("channel 2i")
    ax.set_ylabel("channel 2i+1")
    ax.set_title(f"A pair rotated by m x {step:.3f} rad")
    fig.tight_layout()
    return fig


def wavelengths_figure(head_dim: int, thetas=(1e4, 1e6), contexts=(4096, 32768)):
    """Wavelength 2*pi/freq of every RoPE pair, in tokens, for several bases."""
    from ..model.rope import rope_inverse_frequencies
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for theta, marker in zip(thetas, "os^"):
        wavelengths = (2 * math.pi / rope_inverse_frequencies(head_dim, theta)).numpy()
        ax.plot(range(head_dim // 2), wavelengths, marker=marker, markersize=3, label=f"theta = {theta:.0e}")
    for context, style in zip(contexts, (":", "--")):
        ax.axhline(context, color="grey", linestyle=style, linewidth=1)
        ax.text(0, context * 1.15, f"{context:,} tokens", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel(f"pair index i (head_dim {head_dim} -> {head_dim // 2} pairs)")
    ax.set_ylabel("wavelength (tokens)")
    ax.set_title("RoPE wavelengths: one full turn every ... tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def score_grid_figure(scores: torch.Tensor, by_distance: torch.Tensor):
    """scores (positions, positions) of one rotated q and k at every pair of positions, and score vs distance."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.5))
    image = ax1.imshow(scores.numpy(), cmap="RdBu_r", interpolation="nearest")
    ax1.set_xlabel("key position n")
    ax1.set_ylabel("query position m")
    ax1.set_title("q_m . k_n: constant along diagonals")
    ax1.grid(False)
    fig.colorbar(image, ax=ax1, fraction=0.046)
    ax2.plot(by_distance.numpy())
    ax2.set_xscale("symlog")
    ax2.set_xlabel("distance m - n (tokens)")
    ax2.set_ylabel("q . k (same q = k = ones)")
    ax2.set_title("...and slowly decaying with distance")
    fig.tight_layout()
    return fig


def draw_rope_pair(ax, q_pair, k_pair, m: int, n: int, freq: float) -> None:
    """Draw one pair of channels of q (rotated by m*freq) and k (rotated by n*freq) in the plane."""
    ax.clear()
    for vec, pos, colour, name in ((q_pair, m, "#e15759", "q"), (k_pair, n, "#4e79a7", "k")):
        angle = pos * freq
        x = vec[0] * math.cos(angle) - vec[1] * math.sin(angle)
        y = vec[0] * math.sin(angle) + vec[1] * math.cos(angle)
        ax.annotate("", xy=(vec[0], vec[1]), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1, alpha=0.35, linestyle="--"))
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2.5))
        ax.text(x * 1.15, y * 1.15, f"{name} at {pos}", color=colour, ha="center", fontsize=9)
    limit = 1.35 * max(math.hypot(*q_pair), math.hypot(*k_pair))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    gap = ((m - n) * freq) % (2 * math.pi)
    ax.set_title(f"freq {freq:.3g} rad/token: angle between them {math.degrees(gap):.0f} deg", fontsize=9)


def rope_explorer(head_dim: int = 128, theta: float = 1e6, seed: int = 0):
    """Sliders for the query's and the key's positions and the pair: watch them turn, and q.k depend on m - n."""
    import ipywidgets as widgets
    from ..model.rope import apply_rope, rope_rotations
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(head_dim, generator=g)                                   # (head_dim,)
    k = torch.randn(head_dim, generator=g)                                   # (head_dim,)
    freqs = (1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)).tolist()
    m_slider = widgets.IntSlider(value=5, min=0, max=4096, description="query m")
    n_slider = widgets.IntSlider(value=2, min=0, max=4096, description="key n")
    pair = widgets.IntSlider(value=0, min=0, max=head_dim // 2 - 1, description="pair i")
    out = widgets.Output()

    def score(m, n):
        rot = rope_rotations(torch.tensor([m, n]), head_dim, theta)          # (2, head_dim/2)
        both = apply_rope(torch.stack([q, k])[None, :, None, :], rot)[0, :, 0]  # (2, head_dim)
        return float(both[0] @ both[1])

    def update(_=None):
        m, n, i = m_slider.value, n_slider.value, pair.value
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4, 4))
            draw_rope_pair(ax, q[2 * i:2 * i + 2].tolist(), k[2 * i:2 * i + 2].tolist(), m, n, freqs[i])
            plt.show()
            print(f"q.k over all {head_dim} dims at (m={m}, n={n}): {score(m, n):+.4f}; "
                  f"shifted to (m={m + 100}, n={n + 100}): {score(m + 100, n + 100):+.4f}")

    for w in (m_slider, n_slider, pair):
        w.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([m_slider, n_slider, pair]), out])


# ----------------------------------------------------------------------------- 04: attention and GQA

def gqa_diagram(n_heads: int = 32, n_kv_heads: int = 8):
    """Query heads (top) wired to the KV head they read (bottom): head h reads KV head h // (n_heads // n_kv_heads)."""
    n_rep = n_heads // n_kv_heads
    fig, ax = plt.subplots(figsize=(9, 3.2))
    colours = plt.cm.tab10(np.arange(n_kv_heads) % 10)
    kv_x = [(g + 0.5) * n_heads / n_kv_heads - 0.5 for g in range(n_kv_heads)]
    for h in range(n_heads):
        g = h // n_rep
        ax.plot([h, kv_x[g]], [1, 0], color=colours[g], linewidth=1.2, alpha=0.8)
        ax.add_patch(plt.Rectangle((h - 0.4, 1), 0.8, 0.35, color=colours[g]))
        if n_heads <= 32:
            ax.text(h, 1.45, str(h), ha="center", fontsize=7)
    for g, x in enumerate(kv_x):
        ax.add_patch(plt.Rectangle((x - 1.2, -0.45), 2.4, 0.45, color=colours[g]))
        ax.text(x, -0.23, f"K,V {g}", ha="center", va="center", fontsize=8, color="white", fontweight="bold")
    ax.text(-1.5, 1.17, "query\nheads", ha="right", va="center", fontsize=9)
    ax.text(-1.5, -0.23, "KV heads", ha="right", va="center", fontsize=9)
    ax.set_xlim(-4.5, n_heads)
    ax.set_ylim(-0.6, 1.7)
    ax.axis("off")
    ax.set_title(f"Grouped-query attention: {n_heads} query heads share {n_kv_heads} key/value heads "
                 f"({n_rep} each)")
    fig.tight_layout()
    return fig


def masks_figure(masks: dict):
    """Boolean (q, k) masks side by side: filled where the query may look at the key."""
    fig, axes = plt.subplots(1, len(masks), figsize=(3.3 * len(masks), 3.4), squeeze=False)
    for ax, (title, mask) in zip(axes[0], masks.items()):
        ax.imshow(mask.float().cpu().numpy(), cmap="Greens", vmin=0, vmax=1.3, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        ax.grid(False)
    fig.tight_layout()
    return fig


def softmax_temperature_figure(d_values=(16, 128, 1024), seed: int = 0):
    """Softmax of random q.k scores with and without the 1/sqrt(d) scale: unscaled, it collapses to one key."""
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.0), sharey=True)
    for d in d_values:
        q, k = torch.randn(d, generator=g), torch.randn(12, d, generator=g)   # (d,), (keys, d)
        scores = k @ q                                                        # (keys,)
        for ax, scale, title in ((axes[0], 1.0, "softmax(q.k)"), (axes[1], 1 / math.sqrt(d), "softmax(q.k / sqrt(d))")):
            weights = torch.softmax(scores * scale, -1).sort(descending=True).values
            ax.plot(weights.numpy(), marker="o", markersize=3, label=f"d = {d}")
            ax.set_title(title)
            ax.set_xlabel("keys, largest weight first")
    axes[0].set_ylabel("attention weight")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 05: feed-forward and the whole model

def activations_figure():
    """SiLU next to ReLU and GELU, and the SwiGLU gate silu(a) * b as a surface of its two inputs."""
    x = torch.linspace(-5, 5, 201)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.3))
    ax1.plot(x, torch.relu(x), label="ReLU", linestyle="--")
    ax1.plot(x, torch.nn.functional.gelu(x), label="GELU", linestyle=":")
    ax1.plot(x, torch.nn.functional.silu(x), label="SiLU = x sigmoid(x)", linewidth=2)
    ax1.set_xlabel("x")
    ax1.set_title("Activation functions")
    ax1.legend(fontsize=8)
    a, b = torch.meshgrid(torch.linspace(-4, 4, 81), torch.linspace(-4, 4, 81), indexing="ij")
    gate = torch.nn.functional.silu(a) * b
    limit = float(gate.abs().max())
    image = ax2.imshow(gate.T.numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax2.set_xlabel("gate: w1 x")
    ax2.set_ylabel("up: w3 x")
    ax2.set_title("SwiGLU unit: silu(w1 x) * (w3 x)")
    ax2.grid(False)
    fig.colorbar(image, ax=ax2, fraction=0.046)
    fig.tight_layout()
    return fig


def parameter_chart(breakdown: dict, title: str):
    """Parameters per component as horizontal bars with their share of the total."""
    total = sum(breakdown.values())
    items = sorted(breakdown.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.barh([k for k, _ in items], [v / 1e6 for _, v in items], color="#4e79a7")
    for bar, (_, v) in zip(bars, items):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v / 1e6:,.1f}M ({v / total:.1%})",
                va="center", fontsize=8)
    ax.set_xlabel("millions of parameters")
    ax.set_xlim(0, max(breakdown.values()) / 1e6 * 1.35)
    ax.set_title(title)
    fig.tight_layout()
    return fig
