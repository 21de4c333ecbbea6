"""Figures return a Figure and save a PNG; labels stay readable; the explorer redraws fast and right."""
from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch
from matplotlib.figure import Figure

import mistral_edu as me
from mistral_edu import analysis, viz
from mistral_edu.hooks import ActivationCache

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


def test_explorer_redraws_on_slider_moves_and_shades_only_visible_tokens(run, tmp_path):
    _, cache, labels = run
    explorer = viz.AttentionExplorer(cache, labels, n_rep=CFG.n_rep)
    first = explorer.view.value
    assert 'data-layer="0"' in first and f'data-query="{len(labels) - 1}"' in first
    explorer.layer.value = 3
    assert explorer.view.value != first and 'data-layer="3"' in explorer.view.value
    explorer.query.value = 4
    html = explorer.view.value
    weights = cache.pattern(3, 0)[4]
    assert weights[5:].sum() == 0
    assert html.count("rgba(33,113,181,0.000)") >= len(labels) - 5      # nothing after the query is shaded
    assert f"{labels[4]}</span>" in html and "outline:2px solid" in html
    fig = explorer.snapshot(save=tmp_path / "snapshot.png")
    assert saved_png(fig, tmp_path / "snapshot.png")


def test_explorer_stays_fast_at_the_real_models_head_count():
    layers, heads, seq = 32, 32, 60
    store = {f"layers.{i}.attention.hook_pattern": torch.rand(1, heads, seq, seq).softmax(-1) for i in range(layers)}
    explorer = viz.AttentionExplorer(ActivationCache(store, layers), [f"t{i}" for i in range(seq)], n_rep=4)
    start = time.perf_counter()
    for step in range(30):
        explorer.head.value = step % heads
    assert (time.perf_counter() - start) / 30 < 0.05


def test_explorer_refuses_caches_it_cannot_show(model, run):
    tokens, _, labels = run
    _, partial = model.run_with_cache(tokens, names=["hook_embed"])
    with pytest.raises(KeyError, match="lacks the pattern"):
        viz.AttentionExplorer(partial, labels)
    _, few = model.run_with_cache(tokens, pattern_heads={0: [1], 1: [1], 2: [1], 3: [1]})
    with pytest.raises(ValueError, match="every head's pattern"):
        viz.AttentionExplorer(few, labels)


def test_summaries_logit_lens_and_patching_figures(model, run, tmp_path):
    tokens, cache, labels = run
    assert saved_png(viz.residual_norms(cache, save=tmp_path / "norms.png"), tmp_path / "norms.png")
    tables = viz.head_summaries(cache)
    assert all(t.shape == (CFG.n_layers, CFG.n_heads) for t in tables.values())
    assert torch.all(tables["entropy (nats)"] <= math.log(tokens.shape[1]) + 1e-5)
    assert saved_png(viz.head_scores(tables, save=tmp_path / "heads.png"), tmp_path / "heads.png")
    lens = analysis.logit_lens(model, tokens[:, :10], target=5)
    fig = viz.logit_lens_heatmap(lens, labels[:10], save=tmp_path / "lens.png")
    assert saved_png(fig, tmp_path / "lens.png")
    corrupted = tokens[:, :6].clone()
    corrupted[0, 2] = 9
    result = analysis.patch_residual(model, tokens[:, :6], corrupted, analysis.logit_difference(3, 4))
    fig = viz.patching_heatmap(result, labels[:6], save=tmp_path / "patch.png")
    assert saved_png(fig, tmp_path / "patch.png")


def test_head_entropy_of_one_hot_and_uniform_rows():
    one_hot = torch.eye(4)[None, None].expand(1, 2, 4, 4)
    assert torch.all(viz.head_entropy(one_hot) == 0)
    uniform = torch.full((1, 1, 3, 8), 1 / 8)
    assert viz.head_entropy(uniform).item() == pytest.approx(math.log(8))


def test_labels_replace_glyphs_the_font_lacks(tokenizer):
    ids = tokenizer.encode("hello 你好", bos=True)
    labels = viz.token_labels(tokenizer, ids)
    assert labels[0] == "<s>" and labels[1].startswith("·hell") and "□" in "".join(labels) and all(ord(c) < 0x2E80 for c in "".join(labels))
    assert viz.token_labels(None, [5, 6]) == ["5", "6"]
