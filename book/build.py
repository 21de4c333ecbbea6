"""Build the book site (`make book`): the committed, executed notebooks as static pages, nothing re-run.

Stages notebooks/*.ipynb unchanged beside a front page made from the README (its introduction and its notebook
map, each notebook named there linked to its page, the lessons in reading order), runs Sphinx with book/conf.py
into build/book/ (or the folder given as --out), and prints how long that took and how large the site is. The site
works from its folder or any static file server, offline: open build/book/index.html. The staged sources and
Sphinx's doctrees go beside the site (<out>-src, <out>-doctrees), so the site's folder holds only what it serves.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "book"
LESSON = re.compile(r"\d\d_\w+")


def reading_order(stems: list[str]) -> list[str]:
    """The lessons in the order they are read: by number; a solutions notebook is reached from its lesson."""
    return sorted(s for s in stems if not s.endswith("_solutions"))


def notebook_map(readme: str) -> str:
    """The README's section holding the notebook map (the table whose first column is `notebook`), up to the
    table's last row."""
    lines = readme.splitlines()
    header = next((i for i, line in enumerate(lines) if re.match(r"\|\s*notebook\s*\|", line)), None)
    if header is None:
        raise RuntimeError("README.md has no notebook map (a table whose first column is 'notebook'): "
                           "the front page needs it")
    start = max(i for i in range(header) if lines[i].startswith("## "))
    end = header
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def link_lessons(text: str, stems: set[str]) -> str:
    """Every `NN_name` in the text that is a notebook of the site becomes a link to its page."""
    return re.sub(r"`(\d\d_\w+)`", lambda m: f"[{m[1]}]({m[1]}.ipynb)" if m[1] in stems else m[0], text)


def front_page(readme: str, stems: list[str]) -> str:
    """index.md: the README's introduction (its title and what comes before its first section), how to use
    the site, the notebook map with links, and the hidden table of contents that orders the pages."""
    intro = readme.split("\n## ", 1)[0].rstrip()
    usage = ("## Reading this site\n\n"
             "Every lesson is shown as it was last run, outputs included; nothing is re-run here. Each page's "
             "download button (at the top of the page) gives the notebook itself: run it with `make lab` (see the "
             "README) to change the code. The attention explorer, the head overview, the logit-lens table and the "
             "will-it-fit calculator work on this site as in JupyterLab. The tokenizer and RoPE explorers need "
             "Python as you type or drag, so here they show a picture of their first state.")
    toc = "\n".join(["```{toctree}", ":hidden:", ":maxdepth: 1", "", *reading_order(stems), "```"])
    return "\n\n".join([intro, usage, link_lessons(notebook_map(readme), set(stems)), toc]) + "\n"


def stage(folder: Path) -> list[str]:
    """Copy the notebooks and write index.md into folder (emptied first); returns the notebooks' names."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if LESSON.fullmatch(p.stem))
    if not notebooks:
        raise RuntimeError(f"no notebooks/NN_*.ipynb under {ROOT}: nothing to build")
    for path in notebooks:
        shutil.copy2(path, folder / path.name)
    stems = [p.stem for p in notebooks]
    (folder / "index.md").write_text(front_page((ROOT / "README.md").read_text(encoding="utf-8"), stems),
                                    encoding="utf-8")
    return stems


def site_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) of everything under folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def build(site: Path) -> int:
    """Stage, then build the site into site (emptied first); returns Sphinx's exit status."""
    started = time.perf_counter()
    sources, doctrees = site.with_name(site.name + "-src"), site.with_name(site.name + "-doctrees")
    stems = stage(sources)
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(doctrees, ignore_errors=True)
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(CONF),
                             "-d", str(doctrees), str(sources), str(site)])
    if result.returncode != 0:
        print(f"sphinx-build failed (exit {result.returncode}); see its messages above", file=sys.stderr)
        return result.returncode
    files, size = site_size(site)
    print(f"book: {len(stems)} notebooks -> {site}/index.html in "
          f"{time.perf_counter() - started:.1f} s; site {size / 2**20:.1f} MiB in {files} files")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book", help="the site's folder (build/book)")
    sys.exit(build(parser.parse_args().out.resolve()))
