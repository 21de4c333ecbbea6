"""Interactive views (ipywidgets) for what Python must recompute as you move a slider: tokenizer
pieces as you type, RoPE's turning pair, and where each token looks in each attention head.

The attention explorer copies every pattern out of the cache once, into one (layers, heads, q, k)
float16 array, so moving a slider only formats a few kilobytes of HTML: it stays fast on the real 7B
model (32 x 32 heads over 100 tokens is 20 MB). No JavaScript of our own and nothing from a CDN.
AttentionExplorer.snapshot() draws the same view as a figure for places where widgets do not run.
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display

from .figure import finish, new_figure, text_colour_for
from .rope import rope_pair_figure
from .tokens import pieces_html

_BLUE = (33, 113, 181)


def _shade(alpha: float) -> tuple[float, float, float]:
    """_BLUE at opacity alpha over a white page, as an RGB triple in 0..1."""
    return tuple(1 - alpha * (1 - c / 255) for c in _BLUE)


def token_explorer(tok, text: str = "Hello world! Bonjour 🦙 [INST]"):
    """A text box and its pieces, updated as you type."""
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


def rope_explorer(head_dim: int = 128, theta: float = 1e6, seed: int = 0):
    """Sliders for the query's and the key's positions and the pair: watch them turn, and q.k depend on m - n."""
    from ..model.rope import apply_rope, rope_inverse_frequencies, rope_rotations
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(head_dim, generator=g)                                   # (head_dim,)
    k = torch.randn(head_dim, generator=g)                                   # (head_dim,)
    freqs = rope_inverse_frequencies(head_dim, theta).tolist()
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
            display(rope_pair_figure(q[2 * i:2 * i + 2].tolist(), k[2 * i:2 * i + 2].tolist(), m, n, freqs[i]))
            print(f"q.k over all {head_dim} dims at (m={m}, n={n}): {score(m, n):+.4f}; "
                  f"shifted to (m={m + 100}, n={n + 100}): {score(m + 100, n + 100):+.4f}")

    for w in (m_slider, n_slider, pair):
        w.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([m_slider, n_slider, pair]), out])


def precompute_patterns(cache, n_layers: int | None = None) -> np.ndarray:
    """(layers, heads, q, k) float16: every layer's full pattern of the first sequence in the cache."""
    n_layers = cache.n_layers if n_layers is None else n_layers
    missing = [layer for layer in range(n_layers) if ("pattern", layer) not in cache]
    if missing:
        raise KeyError(f"the cache lacks the pattern of layers {missing}: run "
                       "model.run_with_cache(tokens, names=lambda n: n.endswith('hook_pattern'))")
    if cache.head_index:
        raise ValueError("the explorer needs every head's pattern; this cache kept a few (pattern_heads)")
    return np.stack([cache["pattern", layer][0].float().cpu().numpy() for layer in range(n_layers)]).astype(np.float16)


class AttentionExplorer(widgets.VBox):
    """Layer, head and query sliders over a text whose tokens are shaded by the query's attention.

    cache: from run_with_cache with every layer's pattern; labels: one string per token
    (viz.token_labels(tok, ids)); n_rep: query heads per KV head (cfg.n_rep), to name the KV head.
    """

    def __init__(self, cache, labels: list[str], n_rep: int = 1, layer: int = 0, head: int = 0,
                 query: int | None = None):
        self.patterns = precompute_patterns(cache)                              # (layers, heads, q, k)
        n_layers, n_heads, n_q, n_k = self.patterns.shape
        if len(labels) != n_k or n_q != n_k:
            raise ValueError(f"{len(labels)} labels for a {n_q} x {n_k} pattern: run the cache without a KV "
                             "cache and give one label per token")
        self.labels, self.n_rep = list(labels), n_rep
        self.layer = widgets.IntSlider(value=layer, min=0, max=n_layers - 1, description="layer")
        self.head = widgets.IntSlider(value=head, min=0, max=n_heads - 1, description="head")
        self.query = widgets.IntSlider(value=n_q - 1 if query is None else query, min=0, max=n_q - 1,
                                       description="query token")
        self.view = widgets.HTML()
        for slider in (self.layer, self.head, self.query):
            slider.observe(self._redraw, names="value")
        super().__init__([widgets.HBox([self.layer, self.head]), self.query, self.view])
        self._redraw()

    def _redraw(self, change=None) -> None:
        self.view.value = self.html(self.layer.value, self.head.value, self.query.value)

    def _strengths(self, layer: int, head: int, query: int) -> np.ndarray:
        """The query's attention to each token, scaled so that the strongest is 1 (the shading's opacity)."""
        weights = self.patterns[layer, head, query].astype(np.float32)           # (k,)
        return weights / max(float(weights.max()), 1e-6)

    def html(self, layer: int, head: int, query: int) -> str:
        """The text with each token's background as strong as the query's attention to it."""
        weights = self.patterns[layer, head, query].astype(np.float32)           # (k,)
        spans = []
        for i, (label, w, alpha) in enumerate(zip(self.labels, weights, self._strengths(layer, head, query))):
            style = f"background:rgba({_BLUE[0]},{_BLUE[1]},{_BLUE[2]},{alpha:.3f});"
            style += "color:#fff;" if text_colour_for(_shade(alpha)) == "white" else ""
            if i == query:
                style += "outline:2px solid #d62728;"
            if i > query:
                style += "color:#aaa;"
            spans.append(f'<span title="{i}: {w:.3f}" style="{style}display:inline-block;padding:0 3px;margin:1px;'
                         f'border-radius:3px;white-space:pre">{html.escape(label)}</span>')
        top = np.argsort(-weights)[:3]
        best = ", ".join(f"{html.escape(self.labels[i])} {weights[i]:.2f}" for i in top)
        header = (f"layer {layer} · head {head} (KV head {head // self.n_rep}) · query {query} "
                  f"“{html.escape(self.labels[query])}” · strongest: {best}")
        return (f'<div class="attention-explorer" data-layer="{layer}" data-head="{head}" data-query="{query}">'
                f'<div style="font-family:monospace;font-size:12px;margin:4px 0">{header}</div>'
                f'<div style="font-family:monospace;font-size:13px;line-height:2">{"".join(spans)}</div></div>')

    def snapshot(self, save=None, width_chars: int = 70):
        """The current view as a matplotlib figure (a static picture of what the widget shows)."""
        layer, head, query = self.layer.value, self.head.value, self.query.value
        strengths = self._strengths(layer, head, query)                          # (k,)
        lines, line, used = [], [], 0
        for i, label in enumerate(self.labels):
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
        ax.text(0, -0.5, f"layer {layer}, head {head}, query {query} ({self.labels[query]})", fontsize=10)
        for row, items in enumerate(lines):
            for i, label, col in items:
                alpha = float(strengths[i])
                box = dict(boxstyle="round,pad=0.15", facecolor=tuple(c / 255 for c in _BLUE) + (alpha,),
                           edgecolor="#d62728" if i == query else "none")
                ax.text(col, row + 0.3, label, family="monospace", fontsize=11, bbox=box,
                        color="#aaa" if i > query else text_colour_for(_shade(alpha)))
        return finish(fig, save)
