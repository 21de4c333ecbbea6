"""The architecture diagram is drawn from a config, and each lesson's strip lights that lesson's parts."""
from __future__ import annotations

import dataclasses

import pytest
from matplotlib.figure import Figure

import mistral_edu as me
from mistral_edu import analysis, viz
from mistral_edu.viz import architecture

PNG = b"\x89PNG\r\n\x1a\n"


def texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_diagram_shows_the_7b_shapes_and_saves_a_readable_png(tmp_path):
    fig = viz.architecture_diagram(save=tmp_path / "arch.png")
    shown = texts(fig)
    for shape in ("32,000 x 4096", "wq 4096->4096", "wk,wv 4096->1024", "w1,w3 4096->14336", "w2 14336->4096",
                  "4096 -> 32,000", "x 32 blocks", "RoPE theta 1e6", "(seq, 8, 128)"):
        assert shape in shown
    assert fig.dpi >= 100 and fig.get_size_inches()[0] * fig.dpi >= 1200
    assert (tmp_path / "arch.png").read_bytes()[:8] == PNG


def test_diagram_follows_the_config():
    cfg = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)
    shown = texts(viz.architecture_diagram(cfg))
    assert f"x {cfg.n_layers} blocks" in shown and f"w1,w3 {cfg.dim}->{cfg.hidden_dim}" in shown


@pytest.mark.parametrize("lesson", sorted(architecture.LESSON_PARTS))
def test_strip_lights_only_its_lessons_parts(lesson):
    fig = viz.you_are_here(lesson)
    lit = {t.get_text() for t in fig.axes[0].texts if t.get_weight() == "bold" and t.get_text() != "+" and "blocks" not in t.get_text()}
    labels = {p.key: p.label for p in architecture.parts(me.ModelConfig())}
    assert lit == {labels[k] for k in architecture.LESSON_PARTS[lesson]}


def test_unknown_lesson_or_part_is_refused():
    with pytest.raises(ValueError, match="strips are for"):
        viz.you_are_here("08")
    with pytest.raises(ValueError, match="highlight takes"):
        viz.architecture_diagram(highlight=("decoder",))


def test_uniform_baseline_is_the_score_of_even_causal_attention():
    import torch
    span = 20
    n = 1 + 2 * span
    even = torch.tril(torch.ones(n, n))
    even = even / even.sum(-1, keepdim=True)                                     # (q, k) uniform over visible keys
    score = analysis.induction_score(even[None, None], span)                     # (1,)
    assert analysis.uniform_baseline(span) == pytest.approx(float(score), rel=1e-6)
    assert analysis.uniform_baseline(span) == pytest.approx(0.0329, abs=1e-4)
    with pytest.raises(ValueError, match="positive integer"):
        analysis.uniform_baseline(0)
