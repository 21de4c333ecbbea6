"""The committed notebooks stay renderable where learners open them first: GitHub's preview.

GitHub refuses a whole notebook ("the 'state' key is missing from 'metadata.widgets'") when its widget
metadata lacks the state of the widgets; the build drops that metadata instead (a widget's output keeps
its text fallback). A notebook past about 1 MB is slow to open and to review; the views stay well below.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 1_000_000
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_metadata_problems(notebook: dict) -> list[str]:
    """What GitHub's renderer would reject in a notebook's widget metadata: [] if it is absent or complete."""
    widgets = notebook.get("metadata", {}).get("widgets")
    if widgets is None:
        return []
    if not isinstance(widgets, dict):
        return ["metadata.widgets is not a mapping"]
    return [f"metadata.widgets[{kind!r}] has no 'state'" for kind, entry in widgets.items()
            if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict)]


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_widget_metadata_has_its_state_or_is_absent(path):
    assert widget_metadata_problems(json.loads(path.read_text(encoding="utf-8"))) == [], (
        f"{path.name}: GitHub will not render it; rebuild it with `make notebooks` (which drops widget metadata)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_at_most_a_megabyte(path):
    size = path.stat().st_size
    assert size <= MAX_BYTES, f"{path.name} is {size:,} bytes: shrink its figures or views (at most {MAX_BYTES:,})"


def test_the_check_catches_what_github_rejects():
    state = {"version_major": 2, "version_minor": 0, "state": {}}
    assert widget_metadata_problems({"metadata": {}}) == []
    assert widget_metadata_problems({"metadata": {"widgets": {WIDGET_STATE: state}}}) == []
    flat = {WIDGET_STATE: {"a1b2": {"model_name": "IntSliderModel"}}}          # models at the top level
    assert widget_metadata_problems({"metadata": {"widgets": flat}}) == [
        f"metadata.widgets['{WIDGET_STATE}'] has no 'state'"]
    assert widget_metadata_problems({"metadata": {"widgets": []}}) == ["metadata.widgets is not a mapping"]
