"""A real browser: JupyterLab runs a small notebook that builds the attention explorer; we move a slider.

Headless Chromium (Debian's package, driven by Playwright; no browser download) opens the notebook,
runs it, drags the layer slider and checks that the explorer's text changed with it. A screenshot of
the explorer goes to docs/attention_explorer.png for the README. JupyterLab gets a free localhost
port, no token, a throwaway HOME, and is always killed, kernel included.

The notebook is stored as browser_explorer_notebook.json, not .ipynb: `make test` runs nbval over
every .ipynb under the paths it is given, tests/ included.
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

import pytest

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
BUDGET_S = 85  # the whole test, server start included; CI on a quiet machine needs about a third
SCREENSHOT = HERE.parent / "docs" / "attention_explorer.png"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install -y chromium; .ci/run installs it)")


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
def jupyterlab(tmp_path, request):
    """The URL of a JupyterLab serving a folder with explorer.ipynb in it; killed afterwards."""
    request.node.started = time.monotonic()
    shutil.copy(HERE / "browser_explorer_notebook.json", tmp_path / "explorer.ipynb")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MISTRAL_EDU_WEIGHTS", "JUPYTER_CONFIG_DIR")}
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(home / "hf"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), PYTHONPATH=str(HERE.parent))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "wb"),
        start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_server(url, process, timeout=BUDGET_S / 2)
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


def explorer_header(page) -> str:
    return page.locator(".attention-explorer").first.inner_text().splitlines()[0]


def test_moving_the_layer_slider_changes_the_explorer(jupyterlab, request):
    from playwright.sync_api import sync_playwright

    deadline = request.node.started + BUDGET_S

    def left_ms() -> float:
        return max(1.0, deadline - time.monotonic()) * 1000

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(left_ms())
            start = time.monotonic()
            page.goto(jupyterlab + "lab/tree/explorer.ipynb")
            page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=left_ms())
            opened = time.monotonic()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".attention-explorer", timeout=left_ms())
            ran = time.monotonic()
            before = explorer_header(page)
            assert before.startswith("layer 0 · head 0") and "query 13" in before

            track = page.locator(".widget-slider").first.locator(".noUi-target, .slider-container").first
            box = track.bounding_box()
            handle = page.locator(".widget-slider").first.locator(".noUi-handle").first
            handle.hover()
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.99, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            shown = page.locator(".widget-slider").first.locator(".widget-readout").inner_text().strip()
            assert shown != "0", "the drag did not move the layer slider"
            page.wait_for_function(f"document.querySelector('.attention-explorer').dataset.layer === '{shown}'",
                                   timeout=left_ms())
            after = explorer_header(page)
            assert after != before and after.startswith(f"layer {shown} · head 0")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.locator(".widget-vbox", has=page.locator(".attention-explorer")).first.screenshot(path=str(SCREENSHOT))
            print(f"\nJupyterLab opened the notebook in {opened - start:.1f} s, ran it in {ran - opened:.1f} s"
                  f"\nbefore: {before}\nafter:  {after}\nscreenshot: {SCREENSHOT}")
        finally:
            browser.close()
