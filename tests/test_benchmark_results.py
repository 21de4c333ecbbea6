"""Every benchmark number the README quotes comes from benchmarks/results/*.json, and says where it was measured."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import render_results  # noqa: E402
import results  # noqa: E402

FILES = sorted((BENCHMARKS / "results").glob("*.json"))
FIELDS = {"script", "name", "remeasured", "commit", "date", "device", "versions", "figures", "source"}


def test_readme_section_is_rendered_from_the_results_files():
    readme = render_results.README.read_text()
    assert render_results.readme_section(readme) == render_results.section(), (
        "README.md's benchmark section differs from benchmarks/results/: run python benchmarks/render_results.py")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_results_file_says_where_its_figures_come_from(path):
    record = json.loads(path.read_text())
    assert set(record) == FIELDS
    assert record["name"] == path.stem and (BENCHMARKS.parent / record["script"]).is_file()
    assert record["device"] and record["versions"] and record["figures"]
    if record["remeasured"]:
        assert record["source"] is None and len(record["commit"].split("+")[0]) == 40
    else:
        assert record["source"], "figures not re-measured must name their source"


def test_every_results_file_has_a_renderer():
    assert {p.stem for p in FILES} <= set(render_results.RENDERERS)


def test_gpu_figures_not_remeasured_are_labelled_so_in_the_readme():
    section = render_results.section()
    for name in ("cuda_speed", "cuda_memory"):
        record = results.load(name)
        if not record["remeasured"]:
            entry = next(line for line in section.splitlines() if f"`{record['script']}" in line)
            assert "not re-measured" in entry and record["source"] in entry and record["device"] in entry


def test_save_refuses_figures_without_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    with pytest.raises(ValueError, match="need a source"):
        results.save("x", "benchmarks/x.py", "cpu", {"a": 1}, remeasured=False)
    with pytest.raises(ValueError, match="leave `versions` out"):
        results.save("x", "benchmarks/x.py", "cpu", {"a": 1}, versions={"torch": "2.0"})
    path = results.save("x", "benchmarks/x.py", "H200", {"a": 1}, remeasured=False, source="commit abc",
                        versions={"torch": "2.11"})
    assert json.loads(path.read_text())["versions"] == {"torch": "2.11"}


def test_check_mode_fails_on_a_stale_readme(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{render_results.BEGIN}\n- 999 tok/s, typed by hand\n{render_results.END}\nrest\n")
    monkeypatch.setattr(render_results, "README", readme)
    monkeypatch.setattr(sys, "argv", ["render_results.py", "--check"])
    assert render_results.main() == 1
    monkeypatch.setattr(sys, "argv", ["render_results.py"])
    assert render_results.main() == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "999" not in text
    monkeypatch.setattr(sys, "argv", ["render_results.py", "--check"])
    assert render_results.main() == 0


def test_model_card_table_is_rendered_from_the_results_file():
    import default_targets
    figures = results.load("default_targets")["figures"]
    card = default_targets.CARD.read_text(encoding="utf-8")
    assert card == default_targets.card_with(default_targets.render(figures)), (
        "the model card's table differs from benchmarks/results/default_targets.json: "
        "run python benchmarks/default_targets.py --before <the replaced model's folder>")
