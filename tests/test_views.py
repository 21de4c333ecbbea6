"""The HTML views carry all they need, stay small, escape token text and refuse input they cannot show.

The browser side (the views drawn, driven and timed in Chromium) is tests/test_browser.py.
"""
from __future__ import annotations

import base64
import html
import dataclasses
import json
import re
import zlib

import numpy as np
import pytest
import torch

import mistral_edu as me
from mistral_edu import analysis
from mistral_edu.viz import views

from conftest import randomize_

CFG = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)
HOSTILE = ["<script>alert(1)</script>", "</div>", '"quoted"', "'single'", "&amp;", "</script><b>x</b>"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return randomize_(me.Transformer(CFG), seed=6).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def run(model):
    tokens = torch.randint(3, CFG.vocab_size, (1, 20), generator=torch.Generator().manual_seed(7))
    _, cache = model.run_with_cache(tokens)
    return tokens, cache, [f"tok{int(i)}" for i in tokens[0]]


def embedded(view) -> dict:
    """The JSON a view's script reads, parsed back as the browser would."""
    text = re.search(r'<script type="application/json" class="me-data">(.*?)</script>', view.html, re.S).group(1)
    return json.loads(text)


def causal_patterns(layers: int, heads: int, seq: int, seed: int = 0) -> torch.Tensor:
    """(layers, heads, seq, seq) softmax of random scores under a causal mask: the worst case to compress."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(layers, heads, seq, seq, generator=g)                   # (layers, heads, q, k)
    return scores.masked_fill(torch.ones(seq, seq).triu(1).bool(), float("-inf")).softmax(-1)


def test_explorer_embeds_every_heads_causal_triangle_within_one_step(run):
    _, cache, labels = run
    view = views.attention_explorer(cache, labels, n_rep=CFG.n_rep, layer=1, head=2)
    assert view.html.count('data-mistral-edu-view="attention-explorer"') == 1
    assert 'class="me-static"><img' in view.html and html.escape(views.page.NOTE) in view.html
    assert "http://" not in view.html and "https://" not in view.html and "src=\"//" not in view.html
    data = embedded(view)
    seq = len(labels)
    raw = np.frombuffer(zlib.decompress(base64.b64decode(data["patterns"])), np.uint8)
    assert data["levels"] == 255 and raw.size == CFG.n_layers * CFG.n_heads * seq * (seq + 1) // 2
    rows, cols = np.tril_indices(seq)
    triangle = raw.reshape(CFG.n_layers, CFG.n_heads, -1)[1, 2] / 255             # (tri,)
    assert np.abs(triangle - cache.pattern(1, 2)[rows, cols].numpy()).max() <= 0.5 / 255 + 1e-6
    assert (data["layer"], data["head"], data["query"], data["labels"]) == (1, 2, seq - 1, labels)


def test_token_text_is_data_never_markup(run):
    _, cache, labels = run
    hostile = (HOSTILE * 4)[:len(labels)]
    view = views.attention_explorer(cache, hostile, n_rep=CFG.n_rep)
    data_block = re.search(r'class="me-data">(.*?)</script>', view.html, re.S).group(1)
    assert "<" not in data_block and ">" not in data_block
    assert view.html.count("<script") == 2 and view.html.count("</script>") == 2
    assert embedded(view)["labels"] == hostile


def test_32_layers_x_32_heads_x_64_tokens_stays_under_a_megabyte():
    worst = views.attention_explorer(causal_patterns(32, 32, 64), [f"t{i}" for i in range(64)], n_rep=4)
    print(f"\nrandom patterns: {worst.size:,} bytes, weights in 1/{embedded(worst)['levels']} steps")
    assert worst.size < 1_000_000
    sharp = causal_patterns(32, 32, 64) ** 4
    sharp = sharp / sharp.sum(-1, keepdim=True)                                   # peaked heads, as trained ones are
    view = views.attention_explorer(sharp, [f"t{i}" for i in range(64)], n_rep=4)
    print(f"peaked patterns: {view.size:,} bytes, weights in 1/{embedded(view)['levels']} steps")
    assert view.size < 1_000_000 and embedded(view)["levels"] > embedded(worst)["levels"]


def test_head_overview_carries_every_score_table(model, run):
    tokens, cache, labels = run
    patterns = [cache["pattern", layer] for layer in range(CFG.n_layers)]
    scores = {"previous-token": torch.stack([analysis.previous_token_score(p) for p in patterns]),
              "sink": torch.stack([analysis.first_token_score(p) for p in patterns]),
              "entropy": torch.stack([analysis.head_entropy(p) for p in patterns])}
    view = views.head_overview(cache, labels, scores, n_rep=CFG.n_rep, score="sink")
    data = embedded(view)
    assert 'data-mistral-edu-view="head-overview"' in view.html and data["score"] == "sink"
    assert np.allclose(data["scores"]["entropy"], scores["entropy"].numpy(), atol=1e-4)
    best = np.unravel_index(scores["sink"].argmax(), scores["sink"].shape)
    assert (data["layer"], data["head"]) == (int(best[0]), int(best[1]))      # opens on the strongest head
    with pytest.raises(ValueError, match="compute it over the same layers"):
        views.head_overview(cache, labels, {"sink": scores["sink"][:2]}, n_rep=CFG.n_rep)
    with pytest.raises(ValueError, match="NaN"):
        views.head_overview(cache, labels, {"sink": scores["sink"] * float("nan")}, n_rep=CFG.n_rep)
    with pytest.raises(ValueError, match="not one of"):
        views.head_overview(cache, labels, scores, score="induction")


def test_bad_input_is_a_clear_error(model, run):
    tokens, cache, labels = run
    patterns = causal_patterns(2, 4, 10)
    ten = [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="one label per token"):
        views.attention_explorer(patterns, ten[:-1])
    with pytest.raises(ValueError, match=r"\(layers, heads, query, key\)"):
        views.attention_explorer(patterns[0], ten)
    with pytest.raises(ValueError, match="not a whole sequence"):
        views.attention_explorer(patterns[..., -3:, :], ten)
    with pytest.raises(ValueError, match="NaN"):
        views.attention_explorer(patterns.masked_fill(patterns > 0.5, float("nan")), ten)
    with pytest.raises(ValueError, match="not the scores"):
        views.attention_explorer(patterns * 3, ten)
    with pytest.raises(ValueError, match="causal"):
        views.attention_explorer(patterns.transpose(-1, -2), ten)
    with pytest.raises(ValueError, match="more than a view can show"):
        views.attention_explorer(torch.eye(600).expand(1, 1, 600, 600), [str(i) for i in range(600)])
    with pytest.raises(ValueError, match="KV groups"):
        views.attention_explorer(patterns, ten, n_rep=3)
    with pytest.raises(ValueError, match="show fewer layers"):
        views.attention_explorer(causal_patterns(8, 8, 64), [f"t{i}" for i in range(64)], max_bytes=10_000)
    _, partial = model.run_with_cache(tokens, names=["hook_embed"])
    with pytest.raises(KeyError, match="lacks the pattern"):
        views.attention_explorer(partial, labels)
    _, few = model.run_with_cache(tokens, pattern_heads={0: [1], 1: [1], 2: [1], 3: [1]})
    with pytest.raises(ValueError, match="every head's pattern"):
        views.attention_explorer(few, labels)


def test_logit_lens_table_lists_the_top_k_of_every_cell(model, run):
    tokens, _, labels = run
    lens = analysis.logit_lens(model, tokens[:, :8])
    view = views.logit_lens_table(lens, labels[:8], FakeTokenizer(), k=3)
    data = embedded(view)
    probs, ids = lens.top(3)
    assert 'data-mistral-edu-view="logit-lens"' in view.html and data["rows"] == lens.rows
    assert data["top"][2][5] == [[f"p{int(i)}", round(float(p), 4)] for i, p in zip(ids[2, 5], probs[2, 5])]
    with pytest.raises(ValueError, match="one label per position"):
        views.logit_lens_table(lens, labels[:7], FakeTokenizer())


class FakeTokenizer:
    """Names token i "p<i>": the random test vocabulary has no pieces."""

    def id_to_piece(self, i: int) -> str:
        return f"p{i}"


def test_will_it_fit_carries_the_arithmetic_not_the_answers():
    from mistral_edu import memory

    view = views.will_it_fit(weights="nf4", context=2048, batch=3)
    data = embedded(view)
    print(f"\nwill-it-fit view: {view.size:,} bytes")
    assert view.size < 150_000 and view.html.count('data-mistral-edu-view="will-it-fit"') == 1
    assert "http://" not in view.html and "https://" not in view.html
    assert [f["name"] for f in data["formats"]] == list(memory.WEIGHT_FORMATS)       # GGUF types included
    assert data["start"] == {"format": "nf4", "context": 2048, "batch": 3}
    real = me.ModelConfig.mistral_7b_instruct_v02()
    for f in data["formats"]:
        assert dict(f["weights"]) == memory.weight_bytes_by_component(real, f["name"])
    assert data["kv_per_token"]["bf16"] == [128 * 1024, 512 * 1024]                  # GQA's 4x, per token
    assert [m["available"] for m in data["machines"]] == [m.available for m in memory.MACHINES.values()]
    e = memory.estimate(real, weights="nf4", context=2048, batch=3)
    assert repr(view).startswith(str(e)) and "RTX 4090, 24 GB (24.87 GB available): fits" in repr(view)


def test_a_machine_fits_exactly_when_load_model_would_hold_every_weight():
    """fits() and choose_strategy agree: the estimate of the dtype a machine computes in fits its free memory
    exactly when load_model's automatic choice is 'full'."""
    from mistral_edu import memory
    from mistral_edu.viz.views.calculator import fits

    real = me.ModelConfig.mistral_7b_instruct_v02()
    for machine in memory.MACHINES.values():
        for context in (1024, 2048, 4096, 16384, 32768):
            prediction = memory.predict(machine, real, context)
            weights = {torch.float16: "fp16", torch.bfloat16: "bf16"}[prediction.dtype]
            e = memory.estimate(real, weights=weights, context=context)
            assert fits(e, machine) == (prediction.strategy == "full"), (machine.name, context)


def test_will_it_fit_refuses_what_it_cannot_answer():
    from mistral_edu import memory

    with pytest.raises(ValueError, match="unknown weight format 'q4'; known: fp32"):
        views.will_it_fit(weights="q4")
    with pytest.raises(ValueError, match=r"context must be an integer in 1\.\.32768"):
        views.will_it_fit(context=40_000)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        views.will_it_fit(batch=0)
    with pytest.raises(TypeError, match="memory.Machine objects"):
        views.will_it_fit(machines=[24e9])
    assert "this machine" in repr(views.will_it_fit(machines=[memory.this_machine("cpu")]))
