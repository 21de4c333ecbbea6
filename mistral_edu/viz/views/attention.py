"""The attention explorer and the head overview, as self-contained HTML views (see page.py).

The explorer carries every head's pattern of the layers it shows, so choosing a layer, a head or a
query token redraws in the browser without a kernel. Only the causal triangle is sent (keys after
the query are zero), quantised to `levels` steps of one byte and compressed with zlib; the browser
inflates it once with its own DecompressionStream. 32 layers x 32 heads x 64 tokens is 2.1 M weights:
when 1/255 steps do not fit the byte budget, coarser steps (1/63, then 1/15) are used and the view says so.
"""
from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from ..figure import finish, new_figure, text_colour_for
from ..attention import head_scores
from .page import View

MAX_TOKENS = 512          # a heatmap of 512 x 512 is one pixel a cell on a laptop screen; beyond, nothing is readable
MAX_BYTES = 900_000       # the patterns' share of a notebook output: with the PNG and the script, under 1 MB
LEVELS = (255, 63, 15)    # quantisation steps tried in order until the patterns fit MAX_BYTES
_BLUE = (33, 113, 181)


def patterns_of(source, layers=None) -> np.ndarray:
    """(layers, heads, q, k) float32 from an ActivationCache with every layer's full pattern, or from an array.

    layers: which layers to keep (default all); a cache must hold their patterns of every head.
    """
    if hasattr(source, "n_layers") and hasattr(source, "head_index"):
        layers = list(range(source.n_layers)) if layers is None else list(layers)
        missing = [layer for layer in layers if ("pattern", layer) not in source]
        if missing:
            raise KeyError(f"the cache lacks the pattern of layers {missing}: run "
                           "model.run_with_cache(tokens, names=lambda n: n.endswith('hook_pattern'))")
        if source.head_index:
            raise ValueError("the view needs every head's pattern; this cache kept a few (pattern_heads)")
        return np.stack([source["pattern", layer][0].float().cpu().numpy() for layer in layers])
    patterns = source.float().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source, np.float32)
    if patterns.ndim != 4:
        raise ValueError(f"patterns must be (layers, heads, query, key), got shape {patterns.shape}: for one layer's "
                         "(batch, heads, q, k) pattern pass pattern[0][None]")
    return patterns if layers is None else patterns[list(layers)]


def check_patterns(patterns: np.ndarray, labels: list[str]) -> None:
    """Refuse what the view cannot show truthfully, with what to do instead."""
    _, _, n_q, n_k = patterns.shape
    if n_q != n_k:
        raise ValueError(f"a {n_q} x {n_k} pattern is not a whole sequence: run the cache without a KV cache")
    if len(labels) != n_k:
        raise ValueError(f"{len(labels)} labels for a sequence of {n_k} tokens: give one label per token "
                         "(viz.token_labels(tok, ids))")
    if n_k > MAX_TOKENS:
        raise ValueError(f"{n_k} tokens is more than a view can show ({MAX_TOKENS}): slice the prompt")
    if not np.isfinite(patterns).all():
        raise ValueError("the patterns hold NaN or inf: the forward pass overflowed (try float32)")
    if patterns.min() < -1e-3 or patterns.max() > 1 + 1e-3:
        raise ValueError(f"attention weights lie in 0..1, these span {patterns.min():.3g}..{patterns.max():.3g}: "
                         "pass the softmaxed pattern, not the scores")
    if np.triu(patterns, 1).max() > 1e-3:
        raise ValueError("the patterns attend to later tokens: the views show causal attention only")


def encode_triangles(patterns: np.ndarray, max_bytes: int = MAX_BYTES) -> tuple[str, int]:
    """(base64 of zlib of the quantised causal triangles, levels): the finest LEVELS that fit max_bytes."""
    n_layers, n_heads, seq, _ = patterns.shape
    rows, cols = np.tril_indices(seq)                                             # row-major: q, then k <= q
    triangles = patterns[:, :, rows, cols]                                        # (layers, heads, seq(seq+1)/2)
    for levels in LEVELS:
        quantised = np.clip(np.rint(triangles * levels), 0, levels).astype(np.uint8)  # (layers, heads, tri)
        encoded = base64.b64encode(zlib.compress(quantised.tobytes(), 9)).decode("ascii")
        if len(encoded) <= max_bytes:
            return encoded, levels
    raise ValueError(f"{n_layers} layers x {n_heads} heads x {seq} tokens needs {len(encoded):,} bytes even at "
                     f"1/{LEVELS[-1]} steps (the budget is {max_bytes:,}): show fewer layers (layers=range(...)) "
                     "or fewer tokens")


def text_snapshot(weights: np.ndarray, labels: list[str], query: int, title: str, width_chars: int = 70):
    """The shaded text as a matplotlib figure: weights (k,) of one query, the strongest one fully shaded."""
    strengths = weights / max(float(weights.max()), 1e-6)                         # (k,)
    lines, line, used = [], [], 0
    for i, label in enumerate(labels):
        if used + len(label) + 1 > width_chars and line:
            lines.append(line)
            line, used = [], 0
        line.append((i, label, used))
        used += len(label) + 1
    lines.append(line)
    fig = new_figure(0.1 * width_chars + 0.4, 0.6 + 0.4 * len(lines))  # 11 pt monospace: 0.1 inch a character
    ax = fig.add_subplot()
    ax.set_xlim(0, width_chars)
    ax.set_ylim(len(lines), -0.8)
    ax.axis("off")
    ax.text(0, -0.5, title, fontsize=10)
    for row, items in enumerate(lines):
        for i, label, col in items:
            alpha = float(strengths[i])
            shade = tuple(1 - alpha * (1 - c / 255) for c in _BLUE)
            box = dict(boxstyle="round,pad=0.15", facecolor=tuple(c / 255 for c in _BLUE) + (alpha,),
                       edgecolor="#d62728" if i == query else "none")
            ax.text(col, row + 0.3, label, family="monospace", fontsize=11, bbox=box,
                    color="#aaa" if i > query else text_colour_for(shade))
    return fig


def explorer_data(patterns: np.ndarray, labels: list[str], n_rep: int, layers: list[int], layer: int, head: int,
                  query: int | None, max_bytes: int) -> dict:
    """What the explorer's script reads: labels, shape, the encoded patterns and the starting selection."""
    check_patterns(patterns, labels)
    n_layers, n_heads, seq, _ = patterns.shape
    if n_heads % n_rep:
        raise ValueError(f"{n_heads} query heads do not split into KV groups of n_rep={n_rep}: pass cfg.n_rep")
    if layer not in layers:
        raise ValueError(f"layer {layer} is not among the layers shown {layers}")
    if not 0 <= head < n_heads:
        raise ValueError(f"head {head} is not in 0..{n_heads - 1}")
    query = seq - 1 if query is None else query
    if not 0 <= query < seq:
        raise ValueError(f"query {query} is not a position in 0..{seq - 1}")
    encoded, levels = encode_triangles(patterns, max_bytes)
    return {"labels": [str(label) for label in labels], "layers": layers, "n_heads": n_heads, "n_rep": n_rep,
            "T": seq, "levels": levels, "patterns": encoded, "layer": layers.index(layer), "head": head,
            "query": query}


def attention_explorer(source, labels: list[str], n_rep: int = 1, layer: int = 0, head: int = 0,
                       query: int | None = None, layers=None, max_bytes: int = MAX_BYTES) -> View:
    """Layer and head selectors (heads grouped by the KV head they share), the text shaded by where the query
    token looks (hover a token to make it the query, click to pin it), and the head's heatmap.

    source: an ActivationCache with every layer's pattern, or a (layers, heads, q, k) array;
    labels: one per token (viz.token_labels(tok, ids)); n_rep: query heads per KV head (cfg.n_rep).
    """
    patterns = patterns_of(source, layers)                                        # (layers, heads, q, k)
    layers = list(range(patterns.shape[0])) if layers is None else list(layers)
    data = explorer_data(patterns, labels, n_rep, layers, layer, head, query, max_bytes)
    q = data["query"]
    picture = text_snapshot(patterns[layers.index(layer), head, q], labels, q,
                            f"layer {layer}, head {head}, query {q} ({labels[q]})")
    return View("attention-explorer", ["explorer.js"], "buildExplorer", data, finish(picture, None),
                "attention explorer")


def head_overview(source, labels: list[str], scores: dict, n_rep: int = 1, score: str | None = None,
                  query: int | None = None, layers=None, max_bytes: int = MAX_BYTES) -> View:
    """Every head of every layer as a small square coloured by a chosen score; clicking one opens it in the
    explorer underneath (the same explorer as attention_explorer's).

    scores: name -> (layers, heads) table, e.g. {"previous-token": ..., "induction": ..., "sink": ...,
    "entropy": ...} from mistral_edu.analysis; score: the one coloured first (default the first).
    """
    patterns = patterns_of(source, layers)                                        # (layers, heads, q, k)
    layers = list(range(patterns.shape[0])) if layers is None else list(layers)
    if not scores:
        raise ValueError("give at least one score table, e.g. {'previous-token': analysis.previous_token_score(...)}")
    tables = {}
    for name, table in scores.items():
        table = np.asarray(table.float().cpu() if isinstance(table, torch.Tensor) else table, np.float64)
        if table.shape != patterns.shape[:2]:
            raise ValueError(f"score {name!r} is {table.shape}, the patterns have {patterns.shape[:2]} "
                             "(layers, heads): compute it over the same layers")
        if not np.isfinite(table).all():
            raise ValueError(f"score {name!r} holds NaN or inf")
        tables[name] = np.round(table, 4).tolist()
    score = next(iter(scores)) if score is None else score
    if score not in tables:
        raise ValueError(f"score {score!r} is not one of {list(tables)}")
    best_layer, best_head = np.unravel_index(np.argmax(tables[score]), patterns.shape[:2])
    data = explorer_data(patterns, labels, n_rep, layers, layers[best_layer], int(best_head), query, max_bytes)
    data.update(scores=tables, score=score)
    picture = head_scores({name: torch.tensor(table) for name, table in tables.items()})
    return View("head-overview", ["explorer.js", "overview.js"], "buildOverview", data, picture, "head overview")
