"""Interactive views that need no kernel, no CDN and no network: each is one HTML output with its own
JavaScript, CSS and data, over a static PNG that shows wherever scripts cannot run.

    attention  attention_explorer, head_overview
    lens       logit_lens_table
    page       View (the shared frame: fallback picture, note, embedded data, inline script)
"""
from .attention import attention_explorer, head_overview
from .lens import logit_lens_table
from .page import View

__all__ = ["View", "attention_explorer", "head_overview", "logit_lens_table"]
