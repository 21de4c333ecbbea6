"""One self-contained HTML output: a live view written by its own inline script, over a static PNG.

Everything a view needs travels in the output itself: its CSS, its JavaScript (a few kB from
assets/), its data as JSON, and a PNG of its starting state. Nothing is fetched, so the view works
offline, in an HTML export and after the kernel is gone. Where scripts do not run (an untrusted
notebook, GitHub's preview) the PNG stays, with one line saying how to get the live view; where they
run, the script swaps the PNG for the live view. The root element carries
data-mistral-edu-view="<kind>" so that tests and readers can find each view, and the class me-view-<kind>,
which survives JupyterLab's sanitizer (it drops data-* attributes from untrusted outputs).
"""
from __future__ import annotations

import base64
import html
import io
import json
import uuid
from importlib import resources

from matplotlib.figure import Figure

from ..figure import DPI

NOTE = "A static picture: run this cell, or trust the notebook (File > Trust Notebook), for the live view."


def asset(name: str) -> str:
    """The text of assets/<name> (a view's JavaScript or the shared CSS), shipped inside the package."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def png_data_uri(fig: Figure) -> str:
    """fig as an inline PNG (data: URI): the fallback needs no file beside the notebook."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def script_json(data) -> str:
    """data as JSON that is safe inside <script>: '<', '>' and '&' are escaped, so no token text (not even
    '</script>') can end the element early; JSON.parse reads the escapes back."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class View:
    """A view as one notebook output: `_repr_html_` gives the page fragment, `.html` the same string.

    kind: the view's name (data-mistral-edu-view); scripts: the assets it runs, in order; entry: the
    function of theirs that draws the view, entry(live, data, root); data: what the scripts read (JSON);
    fallback: the PNG figure shown until the script runs; text: the text/plain form (a terminal, nbval), if
    the view has one to give.
    """

    def __init__(self, kind: str, scripts: list[str], entry: str, data: dict, fallback: Figure, title: str,
                 text: str | None = None):
        if not kind.replace("-", "").isalnum():
            raise ValueError(f"a view's kind is a class name: letters, digits and '-', got {kind!r}")
        self.kind, self.title, self.text = kind, title, text
        uid = f"me-{kind}-{uuid.uuid4().hex[:12]}"
        code = "\n".join(asset(name) for name in ["common.js", *scripts])
        self.html = (
            f'<div class="me-view me-view-{kind}" id="{uid}" data-mistral-edu-view="{kind}">'
            f"<style>{asset('views.css')}</style>"
            f'<div class="me-static"><img alt="{html.escape(title)}" src="{png_data_uri(fallback)}">'
            f'<p class="me-note">{html.escape(NOTE)}</p></div>'
            f'<div class="me-live" hidden></div>'
            f'<script type="application/json" class="me-data">{script_json(data)}</script>'
            f"<script>(function(){{\n{code}\nstart(document.getElementById({json.dumps(uid)}), {entry});\n}})();"
            f"</script></div>")

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text or super().__repr__()

    @property
    def size(self) -> int:
        """Bytes of the output as UTF-8: what the notebook file grows by."""
        return len(self.html.encode("utf-8"))

    def save(self, path) -> None:
        """A standalone HTML page holding just this view (opens in any browser, offline)."""
        from pathlib import Path
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"</head><body>{self.html}</body></html>")
        Path(path).write_text(page, encoding="utf-8")
