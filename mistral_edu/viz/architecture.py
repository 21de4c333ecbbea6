"""The whole model in one picture, drawn from a config: the map every lesson points back to.

`architecture_diagram` draws tokens -> embedding -> n_layers x [RMSNorm -> GQA attention with RoPE -> +,
RMSNorm -> SwiGLU -> +] -> RMSNorm -> output head -> next token, with each part's weight shapes read
from the config (the 7B's by default), so the picture cannot drift from the code. `you_are_here` draws
the same row small and without shapes, one lesson's parts in colour, for the top of lessons 01-06.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..config import ModelConfig
from .figure import finish, new_figure

LIT, DIM, BLOCK = "#f6c453", "#e4e4e4", "#eef3fb"   # the highlighted part, the others, the repeated block


@dataclass(frozen=True)
class Part:
    """One box of the diagram: its key (what `highlight` names), its label, its shapes, where it sits."""

    key: str
    label: str
    x: float
    shapes: str = ""
    in_block: bool = False


def parts(cfg: ModelConfig) -> list[Part]:
    """The boxes left to right, each with the weight shapes the config gives it."""
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    theta = f"{cfg.rope_theta:.0e}".replace("e+0", "e").replace("e+", "e")
    return [
        Part("tokenizer", "tokenizer", 0.0, f"text -> ids\n{cfg.vocab_size:,} pieces"),
        Part("embedding", "embedding", 1.0, f"{cfg.vocab_size:,} x {cfg.dim}\n-> (seq, {cfg.dim})"),
        Part("attention_norm", "RMSNorm", 2.15, f"gain {cfg.dim}", True),
        Part("attention", "GQA attn\n+ RoPE", 3.3,
             f"wq {cfg.dim}->{q}\nwk,wv {cfg.dim}->{kv}\nwo {q}->{cfg.dim}\n"
             f"{cfg.n_heads} q / {cfg.n_kv_heads} KV heads\nRoPE theta {theta}", True),
        Part("kv_cache", "KV cache", 4.45, f"k, v each\n(seq, {cfg.n_kv_heads}, {cfg.head_dim})", True),
        Part("ffn_norm", "RMSNorm", 5.0, f"gain {cfg.dim}", True),
        Part("feed_forward", "SwiGLU", 6.15, f"w1,w3 {cfg.dim}->{cfg.hidden_dim}\nw2 {cfg.hidden_dim}->{cfg.dim}", True),
        Part("norm", "RMSNorm", 7.75, f"gain {cfg.dim}"),
        Part("output", "output head", 8.85, f"{cfg.dim} -> {cfg.vocab_size:,}\n(untied)"),
        Part("sampling", "next token", 9.95, "greedy,\ntemperature, top-p"),
    ]


LESSON_PARTS = {  # which boxes each lesson builds
    "01": ("tokenizer",),
    "02": ("embedding", "attention_norm", "ffn_norm", "norm"),
    "03": ("attention",),
    "04": ("attention",),
    "05": ("feed_forward", "attention_norm", "attention", "ffn_norm", "output", "norm", "embedding"),
    "06": ("kv_cache", "sampling"),
}


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str, fontsize: float,
         bold: bool = False) -> None:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                facecolor=colour, edgecolor="#555555", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight="bold" if bold else "normal")


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], **style) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color="#444444",
                                 linewidth=1.0, shrinkA=0, shrinkB=0, **style))


def _plus(ax: Axes, x: float, y: float, fontsize: float) -> None:
    ax.add_patch(FancyBboxPatch((x - 0.09, y - 0.09), 0.18, 0.18, boxstyle="circle,pad=0", facecolor="white",
                                edgecolor="#555555"))
    ax.text(x, y, "+", ha="center", va="center", fontsize=fontsize + 1, weight="bold")


def _draw(ax: Axes, cfg: ModelConfig, lit: set[str], shapes: bool, fontsize: float) -> None:
    """The row of boxes, the repeated block behind its part, the residual stream with its two adds."""
    w, h, y = 0.86, 0.5, 0.0
    by_key = {p.key: p for p in parts(cfg)}
    adds = {"attention": 4.3, "feed_forward": 7.02}
    bottom = -1.3 if shapes else -0.95
    # the repeated block: a shaded frame behind the boxes it holds, its count on top
    ax.add_patch(FancyBboxPatch((1.62, bottom), 5.6, 0.75 - bottom + (0.2 if shapes else 0.1),
                                boxstyle="round,pad=0.02,rounding_size=0.1", facecolor=BLOCK,
                                edgecolor="#7a93c0", linewidth=1.2, linestyle="--"))
    ax.text(4.42, 0.75 if shapes else 0.6, f"x {cfg.n_layers} blocks (layers.0 ... layers.{cfg.n_layers - 1})",
            ha="center", va="bottom", fontsize=fontsize, color="#34507f", weight="bold")
    for part in parts(cfg):
        colour = LIT if part.key in lit else DIM
        small = part.key == "kv_cache"
        box_y, box_h = (-0.72, 0.3) if small else (y, h)
        _box(ax, part.x, box_y, 0.72 if small else w, box_h, part.label, colour, fontsize - small,
             bold=part.key in lit)
        if shapes and part.shapes:
            ax.text(part.x, box_y - box_h / 2 - 0.06, part.shapes, ha="center", va="top", fontsize=fontsize - 2,
                    color="#333333", family="monospace", linespacing=1.1)
    # attention writes this token's k, v into the cache and reads every earlier position's back
    ax.add_patch(FancyArrowPatch((by_key["attention"].x + w / 2 - 0.05, y - h / 2),
                                 (by_key["kv_cache"].x - 0.36, -0.62), arrowstyle="<|-|>", mutation_scale=9,
                                 color="#444444", linewidth=1.0, linestyle="--"))
    # the main line: each box feeds the next; the residual adds sit after attention and after SwiGLU
    line = [("tokenizer", None), ("embedding", None), ("attention_norm", None), ("attention", None),
            ("add", adds["attention"]), ("ffn_norm", None), ("feed_forward", None), ("add", adds["feed_forward"]),
            ("norm", None), ("output", None), ("sampling", None)]
    xs = [by_key[k].x if k != "add" else x for k, x in line]
    halves = [w / 2 if k != "add" else 0.09 for k, _ in line]
    for (x0, h0), (x1, h1) in zip(zip(xs, halves), zip(xs[1:], halves[1:])):
        _arrow(ax, (x0 + h0, y), (x1 - h1, y))
    for x in adds.values():
        _plus(ax, x, y, fontsize)
    # the skips: the stream goes around each sub-layer and is added back
    for start, add in ((1.66, adds["attention"]), (adds["attention"] + 0.2, adds["feed_forward"])):
        _arrow(ax, (start, y), (add, y + 0.09), connectionstyle="arc3,rad=-0.4")
    ax.set_xlim(-0.5, 10.5)
    ax.set_ylim(bottom - 0.1, 1.1 if shapes else 0.9)
    ax.set_aspect("equal")
    ax.axis("off")


def architecture_diagram(cfg: ModelConfig | None = None, highlight: tuple[str, ...] = (),
                         save: str | Path | None = None) -> Figure:
    """The full model, left to right, with the weight shapes of `cfg` (Mistral-7B-Instruct-v0.2 by default).

    `highlight` names parts to colour (keys of `parts`, e.g. "attention"); by default every part is lit.
    """
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    keys = {p.key for p in parts(cfg)}
    unknown = set(highlight) - keys
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}: highlight takes {sorted(keys)}")
    fig = new_figure(14, 3.6)
    ax = fig.add_subplot()
    _draw(ax, cfg, set(highlight) if highlight else keys, shapes=True, fontsize=10)
    ax.set_title(f"{cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} query / {cfg.n_kv_heads} KV heads of "
                 f"{cfg.head_dim}, FFN {cfg.hidden_dim}, vocabulary {cfg.vocab_size:,}; the residual stream "
                 f"(seq, {cfg.dim}) runs along the arrows", fontsize=10)
    return finish(fig, save)


def you_are_here(lesson: str, cfg: ModelConfig | None = None, save: str | Path | None = None) -> Figure:
    """A small strip of the whole model with the parts lesson `lesson` ("01" ... "06") builds in colour."""
    if lesson not in LESSON_PARTS:
        raise ValueError(f"no strip for lesson {lesson!r}: the strips are for {sorted(LESSON_PARTS)}")
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    fig = new_figure(12, 2.3)
    ax = fig.add_subplot()
    _draw(ax, cfg, set(LESSON_PARTS[lesson]), shapes=False, fontsize=9)
    ax.set_title(f"You are here: lesson {lesson} builds the parts in colour", fontsize=9, loc="left")
    return finish(fig, save)
