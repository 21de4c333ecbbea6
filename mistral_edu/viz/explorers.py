"""Interactive views (ipywidgets) for what Python must recompute as you move a slider: tokenizer
pieces as you type, and RoPE's turning pair. Views the browser can redraw alone (the attention
explorer, the head overview, the logit-lens table) live in viz.views and need no kernel.

Each explorer's output also carries a static stand-in (text/html): a picture of the state it was shown in, with
one line saying how to get the live one. Where no kernel holds the widgets (an HTML export, GitHub's preview, the
book site) that picture shows instead of the widget's bare repr, "VBox(...)".
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import torch
from IPython.display import display

from .rope import rope_pair_figure
from .tokens import pieces_html
from .views.page import png_data_uri

STAND_IN_NOTE = "A picture of this explorer as it was shown: run the notebook to use it (it needs Python as you go)."


class Explorer(widgets.VBox):
    """A VBox whose output also holds stand_in() (HTML), drawn when it is displayed: front-ends that can run the
    widget show the widget, the others show the picture."""

    def __init__(self, children, stand_in):
        super().__init__(children)
        self._stand_in = stand_in

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = (f'<div class="me-explorer-stand-in">{self._stand_in()}'
                               f'<p style="font-size:85%;color:#555">{html.escape(STAND_IN_NOTE)}</p></div>')
        return bundle


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
    return Explorer([box, bos, view], stand_in=lambda: f"<pre>{html.escape(box.value)}</pre>{view.value}")


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

    def state():
        """The figure and the q.k line for the sliders' current values."""
        m, n, i = m_slider.value, n_slider.value, pair.value
        fig = rope_pair_figure(q[2 * i:2 * i + 2].tolist(), k[2 * i:2 * i + 2].tolist(), m, n, freqs[i])
        line = (f"q.k over all {head_dim} dims at (m={m}, n={n}): {score(m, n):+.4f}; "
                f"shifted to (m={m + 100}, n={n + 100}): {score(m + 100, n + 100):+.4f}")
        return fig, line

    def update(_=None):
        fig, line = state()
        with out:
            out.clear_output(wait=True)
            display(fig)
            print(line)

    def stand_in():
        fig, line = state()
        sliders = ", ".join(f"{w.description} = {w.value}" for w in (m_slider, n_slider, pair))
        return (f"<p>{html.escape(sliders)}</p><img alt=\"{html.escape(fig.axes[0].get_title())}\" "
                f"src=\"{png_data_uri(fig)}\"><pre>{html.escape(line)}</pre>")

    for w in (m_slider, n_slider, pair):
        w.observe(update, names="value")
    update()
    return Explorer([widgets.HBox([m_slider, n_slider, pair]), out], stand_in=stand_in)
