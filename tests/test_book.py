"""The book site (`make book`) in Debian's Chromium with every request that leaves the site's folder blocked.

The site is built from the committed notebooks into a temporary folder (book/build.py --out), then every page is
loaded from the folder (file://): no page error, no failed or outside request, every image loaded, every formula
typeset by the bundled MathJax (no raw `$...$`, `\\(...\\)` or `$$` text left), no ipywidgets repr ("VBox(...)")
where an explorer's stand-in belongs, every self-contained view started and answering its controls, previous/next
in reading order, a download link to the .ipynb the site ships; search finds "GQA" and "induction", typed into
the page's own search box too; a static file server on localhost serves the same site. Screenshots of the front
page, the lesson with the most formulas and the attention explorer go to docs/.

Slow (a Sphinx build and ~20 pages): marked `book`, left out of `make test`; `make book-test` runs it.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import block_outside_requests

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
BOOK_DEPS = ["sphinx", "myst_nb", "sphinx_book_theme", "mathjax"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_REPR = re.compile(r"\b[A-Z]\w*\(children=\(")

pytestmark = [
    pytest.mark.book,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium; .ci/run installs it)"),
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in BOOK_DEPS),
                       reason="needs the book's packages: pip install -e '.[book]' (make book installs them)"),
]

# What a page shows: formulas found, those MathJax left untypeset, text that still holds TeX delimiters
# (outside code, the views and MathJax's own output), images that did not load, widget reprs in outputs.
PAGE_STATE = r"""async () => {
    if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
    const maths = [...document.querySelectorAll('span.math, div.math')];
    const untypeset = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80));
    const raw = [], walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                                       NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (node.parentElement.closest('pre, code, script, style, textarea, mjx-container, .me-view')) continue;
        if (/\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s][^$]*\$/.test(node.textContent)) raw.push(node.textContent.slice(0, 120));
    }
    const images = [...document.images];
    await Promise.all(images.map(i => i.decode().catch(() => null)));
    return {maths: maths.length, untypeset, raw,
            broken: images.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src').slice(0, 80)),
            outputs: [...document.querySelectorAll('.cell_output')].map(o => o.innerText),
            stand_ins: document.querySelectorAll('.cell_output .me-explorer-stand-in').length,
            views: [...document.querySelectorAll('[data-mistral-edu-view]')].map(v => v.dataset.mistralEduView)};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built from the committed notebooks into a temporary folder; prints the build's time and size."""
    out = tmp_path_factory.mktemp("book") / "site"
    build = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    print("\n" + build.stdout.strip().splitlines()[-1])
    if build.stderr.strip():
        print("Sphinx said:\n" + build.stderr.strip())
    return out


def lessons(site: Path) -> list[str]:
    """The lesson pages in reading order, as the front page's table of contents orders them."""
    toc = (site.with_name(site.name + "-src") / "index.md").read_text(encoding="utf-8")
    block = toc.split("```{toctree}")[1].split("```")[0]
    return [line.strip() for line in block.splitlines() if re.fullmatch(r"\d\d_\w+", line.strip())]


def widget_outputs(notebook: Path) -> int:
    """How many outputs of the notebook are ipywidgets views."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(WIDGET_VIEW in o.get("data", {}) for c in cells for o in c.get("outputs", []))


class Browser:
    """One Chromium page that refuses every request not under `allowed` (a URL prefix) and records it, with
    every page error, console error and failed request."""

    def __init__(self, playwright, allowed: str):
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        self.page = self.browser.new_page(viewport={"width": 1300, "height": 900})
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(e.stack or str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("requestfailed", lambda r: r.url.startswith(allowed)
                     and self.errors.append(f"{r.url}: {r.failure}"))
        self.blocked = block_outside_requests(self.page, allowed)

    def clean(self) -> bool:
        return self.blocked == [] and self.errors == []

    def close(self):
        self.browser.close()


def ready(page, kind: str):
    """The first view of this kind, once its script has drawn it (its picture hidden, the live view shown)."""
    page.wait_for_function(f"document.querySelector('[data-mistral-edu-view=\"{kind}\"]').dataset.ready === '1'",
                           timeout=20_000)
    root = page.locator(f'[data-mistral-edu-view="{kind}"]').first
    assert root.locator(".me-static").is_hidden() and root.locator(".me-live").is_visible(), kind
    return root


def drive_attention_explorer(page, root) -> None:
    layer = root.locator(".me-layer")
    wanted = str((int(root.get_attribute("data-layer")) + 1) % (int(layer.get_attribute("max")) + 1))
    layer.fill(wanted)
    page.wait_for_function("([r, l]) => r.dataset.layer === l", arg=[root.element_handle(), wanted])
    head = root.locator(f'.me-head:not([data-head="{root.get_attribute("data-head")}"])').last
    head.click()
    assert root.get_attribute("data-head") == head.get_attribute("data-head")
    shading = root.locator(".me-tok").evaluate_all("spans => spans.map(s => s.style.background)")
    middle = root.locator(".me-tok").count() // 2
    query = middle if root.get_attribute("data-query") != str(middle) else middle - 1
    root.locator(".me-tok").nth(query).hover()
    assert root.get_attribute("data-query") == str(query)
    assert root.locator(".me-tok").evaluate_all("spans => spans.map(s => s.style.background)") != shading


def drive_head_overview(page, root) -> None:
    score = root.locator(".me-score")
    other = [v for v in score.locator("option").evaluate_all("os => os.map(o => o.value)")
             if v != root.get_attribute("data-score")][0]
    score.select_option(other)
    assert root.get_attribute("data-score") == other
    cell = root.locator(".me-cell").last
    cell.click()
    assert (f"layer {cell.get_attribute('data-layer')} · head {cell.get_attribute('data-head')}"
            in root.locator(".me-header").inner_text())


def drive_logit_lens(page, root) -> None:
    detail = root.locator(".me-detail").inner_text()
    cell = root.locator(".me-cell").last
    cell.hover()
    assert root.get_attribute("data-cell") == f"{cell.get_attribute('data-row')},{cell.get_attribute('data-pos')}"
    assert root.locator(".me-detail").inner_text() != detail


def drive_will_it_fit(page, root) -> None:
    total = root.get_attribute("data-total")
    fmt = root.locator(".me-format")
    other = [v for v in fmt.locator("option").evaluate_all("os => os.map(o => o.value)")
             if v != root.get_attribute("data-format")][-1]
    fmt.select_option(other)
    assert root.get_attribute("data-format") == other and root.get_attribute("data-total") != total


DRIVERS = {"attention-explorer": drive_attention_explorer, "head-overview": drive_head_overview,
           "logit-lens": drive_logit_lens, "will-it-fit": drive_will_it_fit}


def check_page(b: Browser, url: str) -> dict:
    """Load url; return what PAGE_STATE saw, after checking that every view on it answers its controls."""
    b.page.goto(url, wait_until="load")
    state = b.page.evaluate(PAGE_STATE)
    for kind in sorted(set(state["views"])):
        assert kind in DRIVERS, f"{url}: a view the book test cannot drive yet ({kind}): add a driver"
        DRIVERS[kind](b.page, ready(b.page, kind))
    return state


def search(b: Browser, site_url: str, word: str) -> list[str]:
    """The pages the site's search lists for word."""
    b.page.goto(f"{site_url}search.html?q={word}")
    b.page.wait_for_function("document.querySelectorAll('#search-results ul.search li').length > 0 "
                             "|| /did not match|no documents/i.test(document.querySelector('#search-results')"
                             "?.innerText || '')", timeout=20_000)
    return b.page.locator("#search-results ul.search li a").evaluate_all(
        "as => [...new Set(as.map(a => a.getAttribute('href').split(/[?#]/)[0]))]")


def test_every_page_works_offline_from_its_folder(site):
    from playwright.sync_api import sync_playwright

    order = lessons(site)
    pages = ["index"] + sorted(p.stem for p in site.glob("*.html") if p.stem != "index")
    site_url = site.as_uri() + "/"
    most_maths, explorer_page = (0, None), None
    with sync_playwright() as p:
        b = Browser(p, site_url)
        try:
            for name in pages:
                state = check_page(b, f"{site_url}{name}.html")
                assert b.clean(), (name, b.blocked, b.errors)
                assert state["untypeset"] == [] and state["raw"] == [], (name, state["untypeset"], state["raw"])
                assert state["broken"] == [], (name, state["broken"])
                reprs = [o[:80] for o in state["outputs"] if WIDGET_REPR.search(o)]
                assert reprs == [], f"{name}: an ipywidgets output shows as its repr, not its stand-in: {reprs}"
                notebook = site / "_sources" / f"{name}.ipynb"
                if notebook.exists():
                    assert notebook.read_bytes() == (ROOT / "notebooks" / notebook.name).read_bytes()
                    link = b.page.locator("a.btn-download-source-button")
                    assert link.get_attribute("href") == f"_sources/{name}.ipynb", name
                    assert state["stand_ins"] == widget_outputs(notebook), name
                    most_maths = max(most_maths, (state["maths"], name))
                if "attention-explorer" in state["views"] and explorer_page is None:
                    explorer_page = name
            for i, name in enumerate(order):
                b.page.goto(f"{site_url}{name}.html")
                before = b.page.locator(".prev-next-area a.left-prev").get_attribute("href")
                after = b.page.locator(".prev-next-area a.right-next")
                assert before == (f"{order[i - 1]}.html" if i else "index.html"), name
                assert (after.get_attribute("href") if after.count() else None) == (
                    f"{order[i + 1]}.html" if i + 1 < len(order) else None), name
            for solutions in site.glob("*_solutions.html"):                # reached from its lesson, not in order
                b.page.goto(f"{site_url}{solutions.name.removesuffix('_solutions.html')}.html")
                assert b.page.locator(f"main a[href='{solutions.name}']").count() > 0, solutions.name
                assert solutions.stem not in order
            b.page.goto(f"{site_url}index.html")
            front = b.page.locator("main").inner_text()
            linked = b.page.locator("main a.reference.internal").evaluate_all("as => as.map(a => a.getAttribute('href'))")
            assert all(f"{name}.html" in linked for name in order), (order, linked)
            assert "notebook" in front and (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ") in front
            assert b.clean(), (b.blocked, b.errors)
            screenshots(b.page, site_url, most_maths[1], explorer_page)
        finally:
            b.close()
    files = [f for f in site.rglob("*") if f.is_file()]
    print(f"site: {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB in {len(files)} files, {len(pages)} pages; "
          f"most formulas on {most_maths[1]} ({most_maths[0]}); attention explorer on {explorer_page}")


def screenshots(page, site_url: str, maths_page: str, explorer_page: str | None) -> None:
    """The front page, the lesson with the most formulas, the attention explorer: docs/book_*.png."""
    DOCS.mkdir(exist_ok=True)
    page.goto(f"{site_url}index.html")
    page.screenshot(path=str(DOCS / "book_front.png"))
    page.goto(f"{site_url}{maths_page}.html")
    page.evaluate(PAGE_STATE)
    page.locator("div.math").first.evaluate("m => m.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(DOCS / "book_math.png"))
    assert explorer_page is not None, "no page holds an attention explorer"
    page.goto(f"{site_url}{explorer_page}.html")
    ready(page, "attention-explorer").evaluate("v => v.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(DOCS / "book_explorer.png"))


@pytest.mark.parametrize("word", ["GQA", "induction"])
def test_search_finds_the_lessons_that_teach_it(site, word):
    from playwright.sync_api import sync_playwright

    site_url = site.as_uri() + "/"
    mentions = {p.stem for p in site.glob("*.html") if word.lower() in p.read_text(encoding="utf-8").lower()}
    with sync_playwright() as p:
        b = Browser(p, site_url)
        try:
            found = search(b, site_url, word)
            assert all((site / page).is_file() for page in found), found
            assert set(found) & {f"{m}.html" for m in mentions}, (word, found, mentions)
            b.page.goto(f"{site_url}index.html")                         # the search box of a page, as a reader would
            b.page.locator(".search-button-field").first.click()
            b.page.locator("input[name='q']:visible").fill(word)
            b.page.keyboard.press("Enter")
            b.page.wait_for_url(re.compile(r"search\.html\?q="))
            b.page.wait_for_function("document.querySelectorAll('#search-results ul.search li').length > 0")
            assert b.clean(), (b.blocked, b.errors)
        finally:
            b.close()
    print(f"\nsearch {word!r}: {len(found)} pages: {', '.join(sorted(found))}")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that does not log each request."""

    def log_message(self, *args) -> None:
        pass


def test_a_static_file_server_serves_the_same_site(site):
    """http://127.0.0.1:<free port>/ serving the site's folder: pages, views and search as from the folder."""
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site_url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_playwright() as p:
            b = Browser(p, site_url)
            try:
                for name in ["index"] + [n for n in lessons(site) if "data-mistral-edu-view" in
                                         (site / f"{n}.html").read_text(encoding="utf-8")]:
                    state = check_page(b, f"{site_url}{name}.html")
                    assert state["untypeset"] == [] and state["broken"] == [], name
                assert search(b, site_url, "induction")
                assert b.clean(), (b.blocked, b.errors)
            finally:
                b.close()
    finally:
        server.shutdown()
        server.server_close()
