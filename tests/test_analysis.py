"""Logit lens, ablation, patching and direct logit attribution, each against a recomputation by hand."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu import analysis
from mistral_edu.model.attention import AttentionSpan
from mistral_edu.model.rope import apply_rope, rope_rotations

from conftest import randomize_

CFG = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return randomize_(me.Transformer(CFG), seed=4).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(3, CFG.vocab_size, (1, 9), generator=torch.Generator().manual_seed(5))


@torch.no_grad()
def manual_forward(model, tokens, edit_z=None, edit_attn_out=None):
    """The model written out by hand; edit_z(layer, z) and edit_attn_out(layer, out) may change things."""
    seq = tokens.shape[1]
    rotations = rope_rotations(torch.arange(seq), CFG.head_dim, CFG.rope_theta)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    h = model.tok_embeddings(tokens)
    for layer, block in enumerate(model.layers):
        attn = block.attention
        x = block.attention_norm(h)
        q = apply_rope(attn.wq(x).view(1, seq, CFG.n_heads, CFG.head_dim), rotations)
        k = apply_rope(attn.wk(x).view(1, seq, CFG.n_kv_heads, CFG.head_dim), rotations)
        v = attn.wv(x).view(1, seq, CFG.n_kv_heads, CFG.head_dim)
        k, v = k.repeat_interleave(CFG.n_rep, 2), v.repeat_interleave(CFG.n_rep, 2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(CFG.head_dim)
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        if edit_z is not None:
            z = edit_z(layer, z.clone())
        out = attn.wo(z.flatten(-2))
        if edit_attn_out is not None:
            out = edit_attn_out(layer, out.clone())
        h = h + out
        h = h + block.feed_forward(block.ffn_norm(h))
    return model.output(model.norm(h))


def test_manual_forward_is_the_model(model, tokens):
    torch.testing.assert_close(manual_forward(model, tokens), model(tokens), atol=1e-5, rtol=1e-5)


def test_logit_lens_last_layer_is_the_model_logits(model, tokens):
    lens = analysis.logit_lens(model, tokens, target=7)
    assert lens.rows == ["embed"] + [f"layer {i}" for i in range(CFG.n_layers)]
    assert lens.logits.shape == (CFG.n_layers + 1, tokens.shape[1], CFG.vocab_size)
    torch.testing.assert_close(lens.logits[-1], model(tokens)[0], atol=1e-5, rtol=1e-5)
    probs, ids = lens.top(3)
    assert torch.equal(ids[-1, :, 0], model(tokens)[0].argmax(-1))
    torch.testing.assert_close(lens.target_probs, lens.probs[..., 7])
    one = analysis.logit_lens(model, tokens[0].tolist(), positions=-1)
    torch.testing.assert_close(one.logits[:, 0], lens.logits[:, -1], atol=1e-5, rtol=1e-5)
    # Layer 0's row is not the embedding's: the lens really reads different streams.
    assert not torch.allclose(lens.logits[0], lens.logits[1])


def test_zero_and_mean_ablating_a_head_equal_a_manual_recomputation(model, tokens):
    layer, head = 2, 5

    def zero(i, z):
        if i == layer:
            z[:, :, head] = 0
        return z
    torch.testing.assert_close(analysis.ablate_heads(model, tokens, (layer, head)),
                               manual_forward(model, tokens, edit_z=zero), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names=[("z", layer)])
    mean = cache["z", layer][0, :, head].mean(0)

    def to_mean(i, z):
        if i == layer:
            z[:, :, head] = mean
        return z
    torch.testing.assert_close(analysis.ablate_heads(model, tokens, [(layer, head)], how="mean", reference=tokens),
                               manual_forward(model, tokens, edit_z=to_mean), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(analysis.ablate_heads(model, tokens, (layer, head)), model(tokens), atol=1e-3)


def test_zero_ablating_a_layers_attention_equals_a_manual_recomputation(model, tokens):
    expected = manual_forward(model, tokens, edit_attn_out=lambda i, out: out * 0 if i == 1 else out)
    torch.testing.assert_close(analysis.ablate_layer(model, tokens, 1, part="attn"), expected, atol=1e-5, rtol=1e-5)
    mlp_ablated = analysis.ablate_layer(model, tokens, 1, part="mlp", how="mean", reference=tokens)
    assert mlp_ablated.shape == (1, tokens.shape[1], CFG.vocab_size)


def test_head_ablation_effects_match_single_ablations(model, tokens):
    metric = analysis.logit_difference(3, 4)
    effects = analysis.head_ablation_effects(model, tokens, metric)
    assert effects.shape == (CFG.n_layers, CFG.n_heads)
    with torch.no_grad():
        expected = float(metric(analysis.ablate_heads(model, tokens, (3, 1)))) - float(metric(model(tokens)))
    assert effects[3, 1].item() == pytest.approx(expected, abs=1e-5)


def test_patching_a_prompt_into_itself_changes_nothing(model, tokens):
    metric = analysis.logit_difference(3, 4)
    clean = float(metric(model(tokens)))
    resid = analysis.patch_residual(model, tokens, tokens, metric)
    assert resid.values.shape == (CFG.n_layers, tokens.shape[1])
    assert torch.all(resid.values == clean) and resid.clean == clean == resid.corrupted
    heads = analysis.patch_heads(model, tokens, tokens, metric)
    assert heads.values.shape == (CFG.n_layers, CFG.n_heads) and torch.all(heads.values == clean)


def test_patching_the_changed_token_at_layer_0_restores_the_clean_run(model, tokens):
    corrupted = tokens.clone()
    corrupted[0, 4] = 11
    metric = analysis.logit_difference(3, 4)
    result = analysis.patch_residual(model, tokens, corrupted, metric)
    assert result.clean != result.corrupted
    assert result.values[0, 4].item() == pytest.approx(result.clean, abs=1e-5)
    others = [p for p in range(tokens.shape[1]) if p != 4]
    assert torch.all(result.values[0, others] == result.corrupted)      # same stream there: nothing to paste
    torch.testing.assert_close(result.normalized[0, 4], torch.tensor(1.0), atol=1e-4, rtol=0)
    heads = analysis.patch_heads(model, tokens, corrupted, metric)
    assert heads.values.shape == (CFG.n_layers, CFG.n_heads)


def test_direct_logit_attribution_terms_add_up_to_the_logit(model, tokens):
    logits = model(tokens)
    dla = analysis.direct_logit_attribution(model, tokens, target=7)
    assert dla.heads.shape == (CFG.n_layers, CFG.n_heads) and dla.mlps.shape == (CFG.n_layers,)
    assert dla.logit == pytest.approx(logits[0, -1, 7].item(), abs=1e-5)
    assert dla.total() == pytest.approx(dla.logit, rel=1e-4, abs=1e-4)
    diff = analysis.direct_logit_attribution(model, tokens, target=7, wrong=9, position=3)
    assert diff.total() == pytest.approx((logits[0, 3, 7] - logits[0, 3, 9]).item(), rel=1e-4, abs=1e-4)
    # Each head's term is its own: recompute one from its z and W_O by hand.
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    final = cache["resid_post", CFG.n_layers - 1][0, -1]
    scale = torch.rsqrt(final.pow(2).mean() + CFG.norm_eps)
    w_o = model.layers[1].attention.wo.weight[:, 2 * CFG.head_dim:3 * CFG.head_dim]
    written = w_o @ cache["z", 1][0, -1, 2]
    expected = (written * scale * model.norm.weight) @ model.output.weight[7]
    assert dla.heads[1, 2].item() == pytest.approx(expected.item(), abs=1e-5)


def test_bad_input_is_a_clear_error(model, tokens):
    with pytest.raises(IndexError, match="layer 4 is out of range"):
        analysis.ablate_heads(model, tokens, (4, 0))
    with pytest.raises(IndexError, match="head 8 is out of range"):
        analysis.ablate_heads(model, tokens, (0, 8))
    with pytest.raises(ValueError, match="how must be 'zero' or 'mean'"):
        analysis.ablate_layer(model, tokens, 0, how="random")
    with pytest.raises(ValueError, match="needs reference tokens"):
        analysis.ablate_heads(model, tokens, (0, 0), how="mean")
    with pytest.raises(ValueError, match="part must be"):
        analysis.ablate_layer(model, tokens, 0, part="ffn")
    with pytest.raises(ValueError, match="same length"):
        analysis.patch_residual(model, tokens, tokens[:, :-1], analysis.logit_difference(3, 4))
    with pytest.raises(ValueError, match="stream must be one of"):
        analysis.patch_residual(model, tokens, tokens, analysis.logit_difference(3, 4), stream="resid")
    with pytest.raises(IndexError, match="position 9 is out of range"):
        analysis.direct_logit_attribution(model, tokens, target=7, position=9)
    with pytest.raises(ValueError, match="give one sequence"):
        analysis.logit_lens(model, tokens.repeat(2, 1))
    with pytest.raises(ValueError, match="target 512 is not a token id"):
        analysis.logit_lens(model, tokens, target=512)
