"""Interactive views that need no kernel, no CDN and no network: each is one HTML output with its own
JavaScript, CSS and data, over a static PNG that shows wherever scripts cannot run.

    attention  attention_explorer, head_overview
    calculator will_it_fit (07's calculator: format x context x batch -> bytes, and which machines hold them)
    lens       logit_lens_table
    page       View (the shared frame: fallback picture, note, embedded data, inline script)
"""
from .attention import attention_explorer, head_overview
from .calculator import will_it_fit
from .lens import logit_lens_table
from .page import View

__all__ = ["View", "attention_explorer", "head_overview", "logit_lens_table", "will_it_fit"]
