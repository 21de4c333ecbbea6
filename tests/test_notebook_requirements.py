"""A notebook opened without the mistral-edu package, or with one older than it needs, stops at its first cell
with one message that says what is missing and what to do. The first cell is run here as the notebooks have it
(each distinct one once), in a fresh Python where the package is hidden or faked at a chosen version."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

import mistral_edu as me

SOURCES = sorted((Path(__file__).resolve().parent.parent / "notebooks" / "src").glob("[0-9][0-9]_*.md"))


def first_cell(source: Path) -> str:
    return next(cell.source for cell in jupytext.read(source, fmt="md").cells if cell.cell_type == "code")


FIRST_CELLS = {source.stem: first_cell(source) for source in SOURCES}
DISTINCT = sorted({code: name for name, code in reversed(FIRST_CELLS.items())}.items(), key=lambda item: item[1])
each_distinct_first_cell = pytest.mark.parametrize("code", [code for code, _ in DISTINCT],
                                                   ids=[name for _, name in DISTINCT])


def needs(code: str) -> str:
    match = re.search(r'^NEEDS = "(\d+\.\d+\.\d+)"$', code, re.MULTILINE)
    assert match, 'the first code cell states the version it needs as NEEDS = "X.Y.Z"'
    return match.group(1)


def numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in version.split("."))


def with_package(tmp_path: Path, version: str) -> dict:
    """An environment whose Python finds mistral-edu `version` first: its metadata alone, on PYTHONPATH."""
    dist_info = tmp_path / f"mistral_edu-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mistral-edu\nVersion: {version}\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def run(args: list[str], tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)


def says_what_to_do(output: str, needed: str, has: str) -> None:
    assert f"This notebook needs the mistral-edu package, version {needed} or newer." in output, output
    assert f"This kernel's Python ({sys.executable}) has {has}." in output, output
    assert "mistral-edu repository: run `make lab` in a clone of it" in output, output


@each_distinct_first_cell
def test_first_cell_stops_without_the_package(code, tmp_path):
    result = run(["-I", "-S", "-c", code], tmp_path)  # -I -S: no PYTHONPATH, no site-packages, no mistral-edu
    assert result.returncode != 0
    says_what_to_do(result.stderr, needs(code), "none")


@each_distinct_first_cell
def test_first_cell_stops_with_an_older_package(code, tmp_path):
    major, minor, patch = numbers(needs(code))
    older = f"{major}.{minor - 1}.99" if minor else f"{major - 1}.99.0"
    result = run(["-c", code], tmp_path, with_package(tmp_path, older))
    assert result.returncode != 0
    says_what_to_do(result.stderr, needs(code), f"version {older}")


@each_distinct_first_cell
def test_first_cell_passes_silently_with_a_new_enough_package(code, tmp_path):
    major, minor, patch = numbers(needs(code))
    for version in (needs(code), f"{major}.{minor + 10}.0"):  # 0.12.0 is newer than 0.2.0: numbers, not text
        (tmp_path / version).mkdir()
        result = run(["-c", code], tmp_path, with_package(tmp_path / version, version))
        assert result.returncode == 0 and result.stdout == result.stderr == "", result.stderr


def test_jupyter_shows_the_message_alone(tmp_path):
    """In IPython (the notebook's kernel) the exception's own rendering replaces the traceback."""
    code = FIRST_CELLS[SOURCES[0].stem]
    script = ("import json, sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
              "result = InteractiveShell.instance().run_cell(json.loads(sys.argv[1]))\n"
              "print('success' if result.success else 'stopped')\n")
    result = run(["-c", script, json.dumps(code)], tmp_path, with_package(tmp_path, "0.0.1"))
    shown = result.stdout.splitlines()
    assert shown[-1] == "stopped"
    says_what_to_do("\n".join(shown[:-1]), needs(code), "version 0.0.1")
    assert len(shown) == 5 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_every_notebook_checks_the_same_way():
    """One check, copied into every notebook (it cannot live in the package it checks for); only NEEDS differs."""
    cells = {name: re.sub(r'^NEEDS = ".*"$', "NEEDS = ...", code, flags=re.MULTILINE)
             for name, code in FIRST_CELLS.items()}
    differing = [name for name, cell in cells.items() if cell != cells[SOURCES[0].stem]]
    assert not differing, f"these notebooks' first cells differ from {SOURCES[0].name}'s: {differing}"


@pytest.mark.parametrize("name", FIRST_CELLS)
def test_no_notebook_needs_a_newer_package_than_this_one(name):
    """A lesson that uses something new raises the package version with it (mistral_edu/__init__.py)."""
    needed = needs(FIRST_CELLS[name])
    assert numbers(needed) <= numbers(me.__version__), (
        f"{name} needs mistral-edu {needed} but the package is {me.__version__}: raise __version__ in "
        "mistral_edu/__init__.py")
