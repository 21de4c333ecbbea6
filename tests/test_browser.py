"""The HTML views in a real browser, with every request off this machine blocked.

Headless Chromium (Debian's package, driven by Playwright; no browser download) opens
- the nbconvert HTML export of a small notebook that builds every view (no kernel, no server): each
  view must start, respond to a layer, a head and a hovered token, log no error, and need none of
  the requests the export's template makes (require.js, MathJax), which are listed;
- JupyterLab 4 and Notebook 7 after Run All on the same notebook: the views start and respond, and
  nothing is logged once the cells run (what a front-end logs while it starts, before any view exists,
  is listed and must come from its own code);
- the executed notebook opened in JupyterLab and in Notebook 7 without running it (untrusted: a fresh HOME
  has never signed it): scripts do not run, so each view's PNG and its one-line note must show;
- a standalone page with a 256-token explorer, to time its redraw;
- standalone will-it-fit pages: the calculator's JavaScript against memory.estimate over a grid of formats,
  contexts and batches (to the byte, row for row), then driven through its controls.
Token text with <script>, </div> and quotes must show as text and never run (no dialog may open).
One Jupyter server (jupyter lab, which serves Notebook 7's pages too) gets a free localhost port, no token,
a throwaway HOME, and is always killed, kernel included.
A screenshot of each view, taken from the export, goes to docs/ for the README.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import block_outside_requests

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
DOCS = HERE.parent / "docs"
KINDS = ["attention-explorer", "head-overview", "logit-lens", "will-it-fit"]
FRONT_ENDS = {"jupyterlab": "lab/tree/", "notebook7": "notebooks/"}   # where each opens a notebook
HOSTILE = '<script>alert(1)</script> </div> "quoted" \'single\''

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install -y chromium; .ci/run installs it)")

CELLS = [
    "import torch\nimport mistral_edu as me\nfrom mistral_edu import analysis, viz\n\n"
    "torch.set_num_threads(1)\nmodel = me.load_model(verbose=False)\ntok = me.load_tokenizer()\n"
    f"ids = tok.encode({'The quick brown fox jumps over the lazy dog. The quick brown fox jumps ' + HOSTILE!r})\n"
    "labels = viz.token_labels(tok, ids)\nwith torch.no_grad():\n"
    "    _, cache = model.run_with_cache(torch.tensor([ids]), names=lambda n: n.endswith('hook_pattern'))\n"
    "patterns = [cache['pattern', layer] for layer in range(model.cfg.n_layers)]",
    "viz.views.attention_explorer(cache, labels, n_rep=model.cfg.n_rep)",
    "scores = {'previous-token': torch.stack([analysis.previous_token_score(p) for p in patterns]),\n"
    "          'sink': torch.stack([analysis.first_token_score(p) for p in patterns]),\n"
    "          'entropy': torch.stack([analysis.head_entropy(p) for p in patterns])}\n"
    "viz.views.head_overview(cache, labels, scores, n_rep=model.cfg.n_rep)",
    "lens = analysis.logit_lens(model, torch.tensor([ids[:12]]))\n"
    "viz.views.logit_lens_table(lens, labels[:12], tok)",
    "viz.views.will_it_fit(weights='int8', context=8192)",
]


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MISTRAL_EDU_WEIGHTS", "JUPYTER_CONFIG_DIR")}
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(home / "hf"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), PYTHONPATH=str(HERE.parent))
    return env


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    """views.ipynb (not run), executed.ipynb (run by nbconvert, unsigned) and executed.html (its export)."""
    folder = tmp_path_factory.mktemp("views")
    home = folder / "home"
    home.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, folder / "views.ipynb")
    env = clean_env(home)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--output", "executed.ipynb", "views.ipynb"], cwd=folder, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "executed.ipynb"],
                   cwd=folder, env=env, check=True, capture_output=True, timeout=120)
    return folder


class Browser:
    """One Chromium page that refuses every request not to `allowed` (a URL prefix) and records them all."""

    def __init__(self, playwright, allowed: str):
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        self.page = self.browser.new_page(viewport={"width": 1300, "height": 900})
        self.errors, self.dialogs = [], []
        self.page.on("pageerror", lambda e: self.errors.append(e.stack or str(e)))   # the stack says whose code
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.blocked = block_outside_requests(self.page, allowed)

    def close(self):
        self.browser.close()


def view(page, kind: str):
    return page.locator(f'[data-mistral-edu-view="{kind}"]').first


def drive_explorer(page, root) -> None:
    """Select a layer and a head, hover a token: the header, the shading and the data attributes must follow."""
    header = root.locator(".me-header")
    before = header.inner_text()
    root.locator(".me-layer").fill("2")
    page.wait_for_function("r => r.dataset.layer === '2'", arg=root.element_handle())
    after_layer = header.inner_text()
    assert after_layer != before and after_layer.startswith("layer 2 ·")
    root.locator('.me-head[data-head="5"]').click()
    assert root.get_attribute("data-head") == "5" and "head 5 (KV head 1)" in header.inner_text()
    shading = root.locator(".me-tok").evaluate_all("spans => spans.map(s => s.style.background)")
    root.locator(".me-tok").nth(8).hover()
    assert root.get_attribute("data-query") == "8" and "query 8" in header.inner_text()
    assert root.locator(".me-tok").evaluate_all("spans => spans.map(s => s.style.background)") != shading
    assert root.locator(".me-tok.me-future").count() == root.locator(".me-tok").count() - 9


def check_hostile_text_is_text(page, root, dialogs) -> None:
    tokens = "".join(root.locator(".me-tok").all_inner_texts())
    assert "<script>" in tokens.replace("·", "") or "script>" in tokens      # shown, piece by piece
    assert dialogs == [] and page.locator(".me-tok script, .me-tok div").count() == 0


def test_every_view_works_in_the_html_export_with_the_network_off(notebooks):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = Browser(p, "file://")
        try:
            b.page.goto((notebooks / "executed.html").as_uri(), wait_until="load")
            for kind in KINDS:
                b.page.wait_for_function(f"document.querySelector('[data-mistral-edu-view=\"{kind}\"]')"
                                         ".dataset.ready === '1'", timeout=20_000)
                root = view(b.page, kind)
                assert root.locator(".me-static").is_hidden() and root.locator(".me-live").is_visible()
            explorer = view(b.page, "attention-explorer")
            drive_explorer(b.page, explorer)
            check_hostile_text_is_text(b.page, explorer, b.dialogs)
            overview = view(b.page, "head-overview")
            overview.locator('.me-score').select_option("sink")
            assert overview.get_attribute("data-score") == "sink"
            overview.locator('.me-cell[data-layer="3"][data-head="6"]').click()
            assert "layer 3 · head 6" in overview.locator(".me-header").inner_text()
            lens = view(b.page, "logit-lens")
            detail = lens.locator(".me-detail").inner_text()
            lens.locator('.me-cell[data-row="2"][data-pos="5"]').hover()
            assert lens.get_attribute("data-cell") == "2,5" and lens.locator(".me-detail").inner_text() != detail
            assert lens.locator(".me-detail").inner_text().count(" · ") == 4          # the full top 5
            fit = view(b.page, "will-it-fit")
            total = fit.get_attribute("data-total")
            fit.locator(".me-format").select_option("gguf-q4_k_m")
            assert fit.get_attribute("data-format") == "gguf-q4_k_m" and fit.get_attribute("data-total") != total
            template = [u for u in b.blocked if "require" in u or "mathjax" in u.lower()]
            print("\nrequests the export's template made (blocked):", *sorted(set(template)), sep="\n  ")
            assert sorted(set(b.blocked)) == sorted(set(template)), "a view asked the network for something"
            view_errors = [e for e in b.errors if "ERR_FAILED" not in e and "Failed to load resource" not in e]
            assert view_errors == [], view_errors
            DOCS.mkdir(exist_ok=True)
            for kind in KINDS:
                view(b.page, kind).screenshot(path=str(DOCS / f"view_{kind}.png"))
        finally:
            b.close()


def test_a_256_token_explorer_redraws_in_under_100_ms(tmp_path):
    import torch
    from playwright.sync_api import sync_playwright
    from mistral_edu.viz import views

    seq = 256
    scores = torch.randn(2, 32, seq, seq, generator=torch.Generator().manual_seed(0))   # (layers, heads, q, k)
    patterns = scores.masked_fill(torch.ones(seq, seq).triu(1).bool(), float("-inf")).softmax(-1)
    views.attention_explorer(patterns, [f"w{i}" for i in range(seq)], n_rep=4).save(tmp_path / "big.html")
    with sync_playwright() as p:
        b = Browser(p, "file://")
        try:
            b.page.goto((tmp_path / "big.html").as_uri())
            b.page.wait_for_function("document.querySelector('[data-mistral-edu-view]').dataset.ready === '1'")
            times = b.page.evaluate("""() => {
                const root = document.querySelector('[data-mistral-edu-view]'), out = [];
                for (let i = 0; i < 20; i++) {
                    const t = performance.now();
                    root.meView.set(i % 2, (7 * i) % 32, 255 - i);
                    void root.offsetHeight;                   // the layout the change needs, inside the timing
                    out.push(performance.now() - t);
                }
                return out;
            }""")
            times.sort()
            print(f"\n256 tokens: redraw median {times[10]:.1f} ms, worst {times[-1]:.1f} ms (headless Chromium)")
            assert times[-1] < 100 and b.errors == [] and b.blocked == []
        finally:
            b.close()


FIT_CONTEXTS = [1, 2, 3, 17, 1000, 1024, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 16384, 32767, 32768]
FIT_BATCHES = [1, 2, 3, 8, 64]


@pytest.mark.parametrize("preset", ["mistral_7b_instruct_v02", "mistral_7b_v01"])   # v0.1: a 4096-token window
def test_will_it_fit_computes_what_memory_estimate_does_to_the_byte(tmp_path, preset):
    """Every format x 16 contexts x 5 batches: the JavaScript's table (labels and bytes), its stage, the path it
    models (generate's fast path for one sequence within the window, one pass otherwise) and each
    machine's verdict equal memory.estimate's and fits()'s; bad input gets Python's own message."""
    from playwright.sync_api import sync_playwright
    import mistral_edu as me
    from mistral_edu import memory
    from mistral_edu.viz import views
    from mistral_edu.viz.views.calculator import fits

    cfg = getattr(me.ModelConfig, preset)()
    machines = list(memory.MACHINES.values())
    views.will_it_fit(cfg).save(tmp_path / "fit.html")
    formats = list(memory.WEIGHT_FORMATS)
    with sync_playwright() as p:
        b = Browser(p, "file://")
        try:
            b.page.goto((tmp_path / "fit.html").as_uri())
            b.page.wait_for_function("document.querySelector('[data-mistral-edu-view]').dataset.ready === '1'")
            answers = b.page.evaluate("""([formats, contexts, batches]) => {
                const view = document.querySelector('[data-mistral-edu-view]').meView, out = [];
                for (const f of formats) for (const c of contexts) for (const n of batches) {
                    const e = view.estimate(f, c, n);
                    out.push([e.rows, e.stage, e.path, e.verdicts.map((v) => v.fits)]);
                }
                return out;
            }""", [formats, FIT_CONTEXTS, FIT_BATCHES])
            refusals = b.page.evaluate("""(cases) => cases.map(([f, c, n]) => {
                try { document.querySelector('[data-mistral-edu-view]').meView.estimate(f, c, n); return null; }
                catch (err) { return err.message; }
            })""", [["bf16", 0, 1], ["bf16", cfg.max_seq_len + 1, 1], ["bf16", 1.5, 1], ["bf16", 8, 0]])
            assert b.errors == [] and b.blocked == []
        finally:
            b.close()
    grid = [(f, c, n) for f in formats for c in FIT_CONTEXTS for n in FIT_BATCHES]
    assert len(answers) == len(grid)
    for (f, c, n), (rows, stage, path, verdicts) in zip(grid, answers):
        e = memory.estimate(cfg, weights=f, context=c, batch=n)
        assert [tuple(r) for r in rows] == e.rows(), (f, c, n)
        assert path == e.path == ("fast" if n == 1 and (cfg.sliding_window or c) >= c else "plain"), (f, c, n)
        assert stage == e.activation_stage and verdicts == [fits(e, m) for m in machines]
    print(f"\n{preset}: {len(grid)} cases ({len(formats)} formats x {len(FIT_CONTEXTS)} contexts x "
          f"{len(FIT_BATCHES)} batches) agree with memory.estimate to the byte")
    for message, (f, c, n) in zip(refusals, [("bf16", 0, 1), ("bf16", cfg.max_seq_len + 1, 1), ("bf16", 1.5, 1),
                                             ("bf16", 8, 0)]):
        with pytest.raises(ValueError) as python:
            memory.estimate(cfg, weights=f, context=c, batch=n)
        assert message is not None and message.split(", got")[0] == str(python.value).split(", got")[0]


def test_will_it_fit_answers_as_its_controls_change(tmp_path):
    """Format, context, batch and the reader's own device drive the answer; bad input says what is wrong
    and keeps the last answer; the Python call beside it follows; redraws are timed."""
    from playwright.sync_api import sync_playwright
    from mistral_edu import memory
    from mistral_edu.viz import views
    from mistral_edu.viz.views.calculator import fits

    views.will_it_fit(context=4096).save(tmp_path / "fit.html")
    with sync_playwright() as p:
        b = Browser(p, "file://")
        try:
            b.page.goto((tmp_path / "fit.html").as_uri())
            b.page.wait_for_function("document.querySelector('[data-mistral-edu-view]').dataset.ready === '1'")
            root = b.page.locator("[data-mistral-edu-view]")
            root.locator(".me-format").select_option("gguf-q4_k_m")
            root.locator(".me-context").fill("8192")
            root.locator(".me-batch").fill("2")
            e = memory.estimate(weights="gguf-q4_k_m", context=8192, batch=2)
            assert root.get_attribute("data-total") == str(e.total_with_overhead)
            assert f"{e.total_with_overhead:,} B" in root.locator(".me-rows").inner_text()
            assert ('memory.estimate(me.ModelConfig.mistral_7b_instruct_v02(), weights="gguf-q4_k_m", '
                    'context=8192, batch=2)') in root.locator(".me-code").inner_text()
            assert "llama.cpp" in root.locator(".me-caveat").inner_text()
            shown = root.locator(".me-machines tr").evaluate_all("rows => rows.map(r => r.dataset.fits)")
            assert shown == ["1" if fits(e, m) else "0" for m in memory.MACHINES.values()]
            root.locator(".me-own").fill("4.5")
            own = root.locator(".me-machines tr").last
            assert "your device" in own.inner_text() and own.get_attribute("data-fits") == "0"
            root.locator(".me-preset", has_text="32k").click()
            assert root.get_attribute("data-context") == "32768"
            assert root.locator(".me-context").input_value() == "32768"
            root.locator(".me-context").fill("40000")
            assert "context must be an integer in 1..32768" in root.locator(".me-error").inner_text()
            assert root.get_attribute("data-context") == "32768" and root.get_attribute("data-problem") == "1"
            times = b.page.evaluate("""() => {
                const root = document.querySelector('[data-mistral-edu-view]'), out = [];
                const formats = ['bf16', 'int8', 'nf4', 'gguf-q2_k', 'gguf-q8_0'];
                for (let i = 0; i < 20; i++) {
                    const t = performance.now();
                    root.meView.set(formats[i % 5], 1024 * (1 + i), 1 + (i % 4));
                    void root.offsetHeight;
                    out.push(performance.now() - t);
                }
                return out;
            }""")
            times.sort()
            print(f"\nwill-it-fit: redraw median {times[10]:.1f} ms, worst {times[-1]:.1f} ms (headless Chromium)")
            assert b.errors == [] and b.blocked == [] and b.dialogs == []
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}; see its log beside the notebook")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s")


@pytest.fixture
def jupyter(notebooks, tmp_path):
    """The URL of a Jupyter server with JupyterLab's and Notebook 7's pages, serving views.ipynb and
    executed.ipynb; killed afterwards. Both front-ends expose their app as window.jupyterapp."""
    notebook = pytest.importorskip("notebook", reason="Notebook 7's pages need pip install 'notebook>=7' ([dev])")
    if int(notebook.__version__.split(".")[0]) < 7:
        pytest.skip(f"notebook {notebook.__version__} is not Notebook 7: pip install 'notebook>=7' ([dev])")
    for name in ("views.ipynb", "executed.ipynb"):
        shutil.copy(notebooks / name, tmp_path / name)
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--JupyterNotebookApp.expose_app_in_browser=True",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=tmp_path, env=clean_env(home), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "wb"),
        start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_server(url, process, timeout=60)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """End the server's own process group (the server and its kernel): SIGTERM, then SIGKILL after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def open_notebook(page, url: str) -> None:
    """Open a notebook and wait until its kernel session exists and the front-end has finished starting."""
    page.goto(url)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
    page.evaluate("window.jupyterapp.restored.then(() => true)")


def thrown_by(error: str) -> str:
    """The top frame of a logged error's stack (the code that threw it); '' for a console message."""
    return next((line.strip() for line in error.splitlines() if line.strip().startswith("at ")), "")


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_views_work_after_run_all(jupyter, front_end):
    """views.ipynb has no outputs, so until Run All the page holds no view: what is logged by then is the
    front-end's own start-up (Notebook 7.6 throws a TypeError in its keyboard-shortcut settings code),
    listed here; from Run All on, nothing may be logged."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = Browser(p, jupyter)
        try:
            open_notebook(b.page, jupyter + FRONT_ENDS[front_end] + "views.ipynb")
            start_up = list(b.errors)
            print(f"\n{front_end}: logged while it started, before any cell ran:", *start_up or ["nothing"],
                  sep="\n  ")
            assert all("/static/" in thrown_by(error) for error in start_up), start_up     # its own bundles
            b.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            for kind in KINDS:
                b.page.wait_for_selector(f'[data-mistral-edu-view="{kind}"][data-ready="1"]', timeout=90_000)
            drive_explorer(b.page, view(b.page, "attention-explorer"))
            check_hostile_text_is_text(b.page, view(b.page, "attention-explorer"), b.dialogs)
            assert b.blocked == [] and b.errors[len(start_up):] == [], (b.blocked, b.errors[len(start_up):])
        finally:
            b.close()


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_an_untrusted_notebook_shows_each_views_picture_and_note(jupyter, front_end):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = Browser(p, jupyter)
        try:
            open_notebook(b.page, jupyter + FRONT_ENDS[front_end] + "executed.ipynb")
            for kind in KINDS:
                root = b.page.locator(f".me-view-{kind}").first      # the sanitizer drops data-* attributes
                root.wait_for(timeout=30_000)
                image = root.locator(".me-static img")
                assert image.is_visible() and image.evaluate("i => i.complete && i.naturalWidth > 100")
                assert "trust the notebook" in root.locator(".me-note").inner_text()
                assert root.locator(".me-tok").count() == 0 and root.locator("script").count() == 0
            if front_end == "jupyterlab":                               # one picture in docs/ is enough
                root.screenshot(path=str(DOCS / "view_untrusted.png"))
            assert b.dialogs == [] and b.blocked == []
        finally:
            b.close()
