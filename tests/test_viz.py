"""Figures return a Figure and save a PNG; labels stay readable."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from matplotlib.figure import Figure

import mistral_edu as me
from mistral_edu import analysis, viz

from conftest import randomize_

CFG = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return randomize_(me.Transformer(CFG), seed=6).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def run(model):
    tokens = torch.randint(3, CFG.vocab_size, (1, 45), generator=torch.Generator().manual_seed(7))
    _, cache = model.run_with_cache(tokens)
    return tokens, cache, [f"tok{int(i)}" for i in tokens[0]]


def saved_png(fig, path) -> bool:
    return isinstance(fig, Figure) and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def test_head_heatmap_labels_all_45_tokens_on_both_axes(run, tmp_path):
    _, cache, labels = run
    fig = viz.head_heatmap(cache, 2, 5, labels, n_rep=CFG.n_rep, save=tmp_path / "head.png")
    assert saved_png(fig, tmp_path / "head.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 5
    assert fig.get_size_inches()[0] > 5                    # grows with the text instead of cramming it
    assert "KV head 1" in ax.get_title()
    last_rows = viz.attention_heatmap(cache.pattern(2, 5)[-3:], labels, save=None)
    assert [t.get_text() for t in last_rows.axes[0].get_yticklabels()] == labels[-3:]
    with pytest.raises(ValueError, match="labels for 45 keys"):
        viz.attention_heatmap(cache.pattern(2, 5), labels[:-1])


def test_gqa_grid_puts_each_kv_group_on_one_row_in_one_colour(run, tmp_path):
    _, cache, labels = run
    fig = viz.gqa_grid(cache, 1, CFG.n_kv_heads, labels, save=tmp_path / "gqa.png")
    assert saved_png(fig, tmp_path / "gqa.png")
    axes = [ax for ax in fig.axes if ax.get_title().startswith("q head")]
    assert len(axes) == CFG.n_heads
    colour = {int(ax.get_title().split()[-1]): ax.spines["left"].get_edgecolor() for ax in axes}
    for head in range(CFG.n_heads):
        same_group = [h for h in range(CFG.n_heads) if h // CFG.n_rep == head // CFG.n_rep]
        assert all(colour[h] == colour[head] for h in same_group)
    assert colour[0] != colour[CFG.n_rep]
    assert [ax.get_ylabel() for ax in axes if ax.get_ylabel()] == [f"KV head {g}" for g in range(CFG.n_kv_heads)]


def test_residual_norms_head_scores_logit_lens_and_patching_figures(model, run, tmp_path):
    tokens, cache, labels = run
    stream = torch.stack([cache["resid_pre", layer][0] for layer in range(CFG.n_layers)]
                         + [cache["resid_post", CFG.n_layers - 1][0]])           # (layers + 1, seq, dim)
    fig = viz.residual_norms(stream.norm(dim=-1), labels, save=tmp_path / "norms.png")
    assert saved_png(fig, tmp_path / "norms.png")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2] == ["positions 1.. (range)",
                                                                                 "positions 1.. (median)"]
    few = viz.residual_norms(stream[:, :4].norm(dim=-1), labels[:4])           # one line per position
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == labels[1:4] + [f"position 0: {labels[0]}"]
    with pytest.raises(ValueError, match="one label per position"):
        viz.residual_norms(stream.norm(dim=-1), labels[:3])
    patterns = [cache["pattern", layer] for layer in range(CFG.n_layers)]
    tables = {"entropy (nats)": torch.stack([analysis.head_entropy(p) for p in patterns]),
              "sink mass": torch.stack([analysis.first_token_score(p) for p in patterns])}
    assert saved_png(viz.head_scores(tables, save=tmp_path / "heads.png"), tmp_path / "heads.png")
    lens = analysis.logit_lens(model, tokens[:, :10], target=5)
    fig = viz.logit_lens_heatmap(lens, labels[:10], save=tmp_path / "lens.png")
    assert saved_png(fig, tmp_path / "lens.png")
    corrupted = tokens[:, :6].clone()
    corrupted[0, 2] = 9
    result = analysis.patch_residual(model, tokens[:, :6], corrupted, analysis.logit_difference(3, 4))
    fig = viz.position_layer_heatmap(result.normalized, range(CFG.n_layers), labels[:6], "patched",
                                     save=tmp_path / "patch.png")
    assert saved_png(fig, tmp_path / "patch.png")


def test_head_entropy_of_one_hot_and_uniform_rows():
    one_hot = torch.eye(4)[None, None].expand(1, 2, 4, 4)
    assert torch.all(analysis.head_entropy(one_hot) == 0)
    uniform = torch.full((1, 1, 3, 8), 1 / 8)
    assert analysis.head_entropy(uniform).item() == pytest.approx(math.log(8))


def test_labels_replace_glyphs_the_font_lacks(tokenizer):
    ids = tokenizer.encode("hello 你好", bos=True)
    labels = viz.token_labels(tokenizer, ids)
    assert labels[0] == "<s>" and labels[1].startswith("·hell") and "□" in "".join(labels) and all(ord(c) < 0x2E80 for c in "".join(labels))
    assert viz.token_labels(None, [5, 6]) == ["5", "6"]


def every_lesson_figure(tokenizer):
    """Each figure function once, on small inputs: name -> Figure."""
    real = me.ModelConfig.mistral_7b_instruct_v02()
    g = torch.Generator().manual_seed(0)
    model = randomize_(me.Transformer(CFG), seed=1)
    yield "vocabulary_chart", viz.vocabulary_chart(tokenizer)
    yield "token_count_chart", viz.token_count_chart([("en", 40, 10, 0), ("ja", 20, 30, 12)])
    yield "vectors_heatmap", viz.vectors_heatmap(torch.randn(3, 80, generator=g), ["a", "b", "c"], "rows")
    yield "accumulation_error_figure", viz.accumulation_error_figure([64, 4096], {"bf16": [1e-3, 1e-1]})
    yield "norm_gains_figure", viz.norm_gains_figure(model)
    yield "rotation_figure", viz.rotation_figure()
    yield "wavelengths_figure", viz.wavelengths_figure(16)
    yield "score_grid_figure", viz.score_grid_figure(torch.randn(6, 6, generator=g), torch.randn(50, generator=g))
    yield "rope_pair_figure", viz.rope_pair_figure([1.0, 0.4], [0.6, -0.8], m=5, n=2, freq=1.0)
    yield "activations_figure", viz.activations_figure()
    yield "gqa_diagram", viz.gqa_diagram(8, 2)
    yield "masks_figure", viz.masks_figure({"causal": torch.ones(5, 5).tril().bool()})
    yield "softmax_temperature_figure", viz.softmax_temperature_figure()
    yield "entropy_by_layer_chart", viz.entropy_by_layer_chart(torch.rand(4, 8, generator=g), 2.0)
    yield "decode_cost_chart", viz.decode_cost_chart([16, 128], [1.0, 1.1], [2.0, 9.0])
    yield "rolling_buffer_chart", viz.rolling_buffer_chart(window=4, n_positions=9)
    yield "sampling_chart", viz.sampling_chart(torch.randn(512, generator=g) * 3, list(range(12)),
                                               [str(i) for i in range(12)])
    yield "memory_fit_chart", viz.memory_fit_chart(real)
    yield "kv_cache_chart", viz.kv_cache_chart(real, batches=(1, 4), weights_gib=13.5)
    yield "breakdown_chart", viz.breakdown_chart({"bf16": {"weights": 14e9, "KV cache": 4e9}}, capacity_gib=24)
    yield "bandwidth_chart", viz.bandwidth_chart({"H100 (3.35 TB/s)": 3350}, {"bf16": 14.5e9, "int4": 4e9})
    yield "parameter_chart", viz.parameter_chart({"attention": 1e9, "feed_forward": 5.6e9}, "parameters")
    yield "loss_by_position_chart", viz.loss_by_position_chart({"model": torch.ones(20), "control": torch.ones(20)},
                                                               period=10)


def test_every_figure_is_a_sharp_standalone_figure_that_changes_nothing_global(tokenizer, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    before = dict(matplotlib.rcParams)
    open_before = plt.get_fignums()
    for name, fig in every_lesson_figure(tokenizer):
        assert isinstance(fig, Figure) and fig.canvas.manager is None, name     # not pyplot's: shown once
        assert fig.dpi >= 100, name
        width, height = fig.get_size_inches() * fig.dpi
        assert 350 <= width <= 1600 and height <= 1600, (name, width, height)
    assert plt.get_fignums() == open_before
    assert dict(matplotlib.rcParams) == before


def test_head_scores_uses_whole_number_ticks_and_readable_cell_text():
    table = torch.tensor([[0.0, 0.1, 0.9, 1.0], [0.5, 0.2, 0.95, 0.05], [0.0, 1.0, 0.3, 0.7]])
    fig = viz.head_scores({"score": table}, vmin=0, vmax=1)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks() if 0 <= t < 4)
    assert all(float(t).is_integer() for t in ax.get_yticks() if 0 <= t < 3)
    colour = {t.get_text(): t.get_color() for t in ax.texts}
    assert colour["0.00"] == "white" and colour["1.00"] == "black"              # viridis: dark at 0, yellow at 1
    signed = viz.head_scores({"effect": table - 0.5}, cmap="RdBu", vmin=-0.5, vmax=0.5)
    assert {t.get_text(): t.get_color() for t in signed.axes[0].texts}["0.00"] == "black"   # white middle of RdBu


def test_gqa_grid_has_token_labels_and_one_colour_bar(run):
    _, cache, labels = run
    fig = viz.gqa_grid(cache, 1, CFG.n_kv_heads, labels)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("q head")]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "attention" in bars[0].get_ylabel()
    fig.canvas.draw()
    shown = [t.get_text() for t in panels[-1].get_xticklabels() if t.get_visible() and t.get_text()]
    assert shown and set(shown) <= set(labels) and shown[0] == labels[0]
    assert len(shown) <= 16


def test_kv_cache_chart_is_a_straight_line_on_linear_axes():
    real = me.ModelConfig.mistral_7b_instruct_v02()
    ax = viz.kv_cache_chart(real, batches=(1,), without_gqa=False).axes[0]
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "linear"
    x, y = ax.lines[0].get_data()
    slopes = (y[1:] - y[:-1]) / (x[1:] - x[:-1])
    assert slopes == pytest.approx([128 * 2**10 / 2**30] * len(slopes), rel=1e-2)     # 128 KiB per token
    assert y[-1] == pytest.approx(4.0, rel=1e-3)                                       # 4 GiB at 32k


def test_sampling_chart_scales_each_panel_to_its_own_bars():
    logits = torch.linspace(8, -8, 512)
    fig = viz.sampling_chart(logits, list(range(12)), [str(i) for i in range(12)], temperatures=(0.5, 2.0))
    for ax in fig.axes:
        tallest = max(bar.get_height() for bar in ax.patches)
        assert ax.get_ylim()[1] < 1.2 * tallest                    # the hot panel's bars fill it, not 1% of it


def test_loss_lines_that_coincide_stay_visible():
    same = torch.linspace(5, 1, 20)
    ax = viz.loss_by_position_chart({"model": same, "ablated": same + 1, "control": same.clone()}, 10).axes[0]
    model, _, control = ax.lines[:3]
    assert control.get_linestyle() != model.get_linestyle() and control.get_linewidth() < model.get_linewidth()
    assert control.get_zorder() >= model.get_zorder()
    assert control.get_alpha() < 1 and model.get_alpha() in (None, 1)          # the model shows through the control


def test_explorers_carry_a_stand_in_of_the_state_they_were_shown_in():
    """Where no kernel holds the widgets (an HTML export, GitHub, the book site), the output's text/html shows:
    the token explorer's pieces of its text, the RoPE explorer's figure at its sliders' values."""
    import base64
    tok = me.load_tokenizer()
    tokens = viz.token_explorer(tok, text="Bonjour <b>")
    bundle = tokens._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"].startswith("Explorer(")
    ids = tok.encode("Bonjour <b>", bos=False)
    html = bundle["text/html"]
    assert f"{len(ids)} tokens" in html and "&lt;b&gt;" in html and "<b>" not in html
    assert all(f">{i}</span>" in html for i in ids)
    tokens.children[0].value = "Hello"                                   # the picture follows the text box
    assert f"{len(tok.encode('Hello', bos=False))} tokens" in tokens._repr_mimebundle_()["text/html"]

    rope = viz.rope_explorer(head_dim=16, theta=1e4)
    rope.children[0].children[0].value = 7                               # query m
    html = rope._repr_mimebundle_()["text/html"]
    assert "query m = 7, key n = 2, pair i = 0" in html and "(m=7, n=2)" in html
    png = base64.b64decode(html.split("data:image/png;base64,")[1].split('"')[0])
    assert png[:8] == PNG and len(png) > 2000
