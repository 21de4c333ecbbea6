"""Sphinx + MyST-NB configuration of the book site: the committed, executed notebooks as static pages.

`python book/build.py` (or `make book`) stages the notebooks and a front page built from the README, then runs
Sphinx with this folder as its configuration. Nothing is executed and nothing is fetched: the theme comes from
a PyPI package, and MathJax is copied into the site from the `django-static-mathjax` wheel (plain MathJax
3.2.2 files; nothing of Django is imported), so every formula typesets offline.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from docutils import nodes
from sphinx.addnodes import pending_xref

project = "mistral-edu"
author = "the mistral-edu authors"
copyright = "the mistral-edu authors, Apache-2.0"   # noqa: A001 (Sphinx reads this name)

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The committed outputs are the pages' outputs: never run a kernel here.
nb_execution_mode = "off"
# An ipywidgets output has no saved state in these notebooks (`make notebooks` drops it), so myst-nb's widget
# placeholder would render as nothing and ask a CDN for require.js: skip the widget view and show what the
# output carries beside it (the explorers' static stand-in).
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]   # lessons' headings may skip a level; the page is still right

# MathJax 3 from the site's own _static/mathjax (copied at the end of the build, see setup below).
mathjax_path = "mathjax/tex-chtml.js"
# The views (class me-view) draw their own text, token pieces included: MathJax leaves it as it is.
mathjax3_config = {"options": {"ignoreHtmlClass": "tex2jax_ignore|mathjax_ignore|me-view"}}

html_theme = "sphinx_book_theme"
html_title = "mistral-edu"
html_static_path = [str(Path(__file__).parent / "static")]
html_css_files = ["book.css"]
html_copy_source = True
html_sourcelink_suffix = ""        # _sources/NN_*.ipynb is the notebook itself, which the download button links
html_show_sourcelink = False
html_show_search_summary = False   # summaries fetch() each page, which a browser refuses on file://
html_last_updated_fmt = None
html_context = {"default_mode": "light"}   # the theme's script rejects an unset mode with a console error
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "navigation_with_keys": True,
    "navbar_persistent": [],   # the sidebar has the search field; no second one in a header bar
}

# The parts of MathJax's ES5 build that tex-chtml.js loads or may load on demand (TeX extensions, the menu, the
# accessibility tools and the speech rules they read, the CommonHTML fonts); the other combined builds stay out.
MATHJAX_PARTS = ["tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors"]


def mathjax_source() -> Path:
    """The ES5 build of MathJax shipped by the django-static-mathjax wheel ([book] extra)."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError:
        raise RuntimeError("MathJax is missing: pip install -e '.[book]' (it brings django-static-mathjax, "
                           "which ships MathJax's files)") from None
    if not (root / "es5" / "tex-chtml.js").is_file():
        raise RuntimeError(f"{root} holds no es5/tex-chtml.js: reinstall django-static-mathjax ([book] extra)")
    return root


def copy_mathjax(app, exception) -> None:
    """After a successful HTML build, put MathJax (and its licence) under _static/mathjax."""
    if exception is not None or app.builder.format != "html":
        return
    root = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        source = root / "es5" / part
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)
    shutil.copy2(root / "LICENSE", target / "LICENSE")


def keep_solutions_out_of_the_path(app, doctree) -> None:
    """A solutions notebook is linked from its lesson, not read in order: it is in no toctree (orphan)."""
    if app.env.docname.endswith("_solutions"):
        app.env.metadata[app.env.docname]["orphan"] = True


def link_notebook_names(app, doctree) -> None:
    """A notebook named in code style in the text (`10_workshop_solutions.ipynb`, `04_attention_gqa`) links to its
    page, so the workshop reaches its solutions and a lesson the ones it points back to."""
    for literal in list(doctree.findall(nodes.literal)):
        name = literal.astext().removesuffix(".ipynb")
        if (name == app.env.docname or name not in app.env.found_docs
                or isinstance(literal.parent, (nodes.reference, pending_xref, nodes.title))):
            continue
        link = nodes.reference("", "", internal=True, refuri=app.builder.get_relative_uri(app.env.docname, name))
        literal.replace_self(link)
        link += literal


def setup(app):
    app.connect("doctree-read", keep_solutions_out_of_the_path)
    app.connect("doctree-read", link_notebook_names)
    app.connect("build-finished", copy_mathjax)
