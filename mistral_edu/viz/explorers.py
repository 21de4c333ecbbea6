"""Interactive views (ipywidgets) for what Python must recompute as you move a slider: tokenizer
pieces as you type, and RoPE's turning pair. Views the browser can redraw alone (the attention
explorer, the head overview, the logit-lens table) live in viz.views and need no kernel.
"""
from __future__ import annotations

import ipywidgets as widgets
import torch
from IPython.display import display

from .rope import rope_pair_figure
from .tokens import pieces_html


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
