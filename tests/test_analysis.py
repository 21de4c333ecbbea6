"""Logit lens, ablation, patching and direct logit attribution, each against a recomputation by hand."""
from __future__ import annotations

import dataclasses
import math
import re

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


def test_shows_behaviour_passes_what_meets_every_condition():
    model = me.Transformer(CFG)
    assert analysis.shows_behaviour(model, "copying", clean=2.0, corrupted=-3.0, restored=torch.tensor([[0.0, 1.05]]))
    assert analysis.shows_behaviour(model, "copying", clean=1.0)                 # exactly one nat is enough


@pytest.mark.parametrize("given, message", [
    (dict(clean=0.5), "clean metric 0.500 < 1 nat"),
    (dict(clean=2.0, corrupted=1.5), "corrupted metric 1.500 > 0.5 x clean 2.000"),
    (dict(clean=2.0, restored=torch.tensor([0.2, 2.2, -0.5])), "2 restored share(s) outside [-0.1, 1.1]"),
    (dict(clean=float("nan")), "clean metric nan < 1 nat"),
    (dict(clean=2.0, restored=torch.tensor([float("nan")])), "1 restored share(s) outside"),
])
def test_a_failing_guard_prints_one_line_elsewhere_and_raises_on_the_default(capsys, given, message):
    model = me.Transformer(CFG)                                      # not the embedded default: no checkpoint
    assert analysis.shows_behaviour(model, "copying", **given) is False
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("this model does not show copying here (")
    assert message in lines[0] and lines[0].endswith("; the analysis below is skipped")
    with pytest.raises(AssertionError, match="the embedded default should show copying, but: " + re.escape(message)):
        analysis.shows_behaviour(model, "copying", strict=True, **given)


def test_shows_behaviour_refuses_to_check_nothing():
    with pytest.raises(ValueError, match="give what to check"):
        analysis.shows_behaviour(me.Transformer(CFG), "copying")
    with pytest.raises(ValueError, match="needs the clean one"):
        analysis.shows_behaviour(me.Transformer(CFG), "copying", corrupted=0.0)


def test_corrupted_copy_task_changes_one_token_of_the_first_copy():
    task = analysis.corrupted_copy_task(list(range(100, 200)), span=12, j=6, seed=3)
    clean, corrupted = task.clean[0], task.corrupted[0]
    assert clean.shape == (1 + 12 + 6,) and clean[0] == 1
    assert torch.equal(clean[13:], clean[1:7])                       # the repeat, up to A[j - 1]
    assert (clean != corrupted).nonzero().flatten().tolist() == [task.changed] == [7]
    assert task.correct == clean[7] and task.wrong == corrupted[7] and task.wrong not in clean.tolist()
    assert len(set(clean[1:13].tolist())) == 12                      # distinct: one answer by copying
    with pytest.raises(ValueError, match="j = 0 must be in 1..11"):
        analysis.corrupted_copy_task(list(range(100, 200)), span=12, j=0)
    with pytest.raises(ValueError, match="at least span \\+ 1 = 13 distinct"):
        analysis.corrupted_copy_task(list(range(5)), span=12)



def test_copy_tasks_stack_one_task_per_seed_and_score_each_row():
    tasks = analysis.corrupted_copy_tasks(list(range(100, 200)), seeds=[3, 4, 5], span=12, j=6)
    assert len(tasks) == 3 and tasks.changed == 7
    one = analysis.corrupted_copy_task(list(range(100, 200)), span=12, j=6, seed=4)
    assert torch.equal(tasks.clean[1], one.clean[0]) and torch.equal(tasks.corrupted[1], one.corrupted[0])
    logits = torch.randn(3, 19, 200)
    expected = torch.stack([logits[i, -1, tasks.correct[i]] - logits[i, -1, tasks.wrong[i]] for i in range(3)])
    assert torch.equal(tasks.metric(logits), expected)
    with pytest.raises(ValueError, match="at least one seed"):
        analysis.corrupted_copy_tasks(list(range(100, 200)), seeds=[])

@pytest.fixture(scope="module")
def default_model():
    from mistral_edu.default import DEFAULT_DIR
    return me.load_model(DEFAULT_DIR)


@pytest.fixture(scope="module")
def words():
    from mistral_edu.default import heldout_sample
    return analysis.word_token_ids(me.load_tokenizer(), "\n".join(heldout_sample()))


def test_word_token_ids_are_word_initial_pieces_fragments_included(words):
    """09 calls them word-initial pieces, not words: whole words and starts of longer words both qualify."""
    tok = me.load_tokenizer()
    pieces = {tok.id_to_piece(i) for i in words}
    assert all(piece.startswith("▁") and piece[1:].isalpha() and piece[1:].islower() for piece in pieces)
    assert {"▁expensive", "▁coun"} <= pieces                      # a whole word and a fragment ("coun-")


def test_the_default_performs_the_copy_task_that_09_and_10_patch(default_model, words):
    """Notebooks 09 and 10 patch this very pair: the guard must pass, and the induction heads carry the copy."""
    task = analysis.corrupted_copy_task(words, span=12, j=6, seed=1)
    metric = task.metric()
    with torch.no_grad():
        clean, corrupted = float(metric(default_model(task.clean))), float(metric(default_model(task.corrupted)))
    assert analysis.shows_behaviour(default_model, "copying", clean=clean, corrupted=corrupted, strict=True)
    resid = analysis.patch_residual(default_model, task.clean, task.corrupted, metric)
    heads = analysis.patch_heads(default_model, task.clean, task.corrupted, metric)
    assert analysis.shows_behaviour(default_model, "copying", clean=clean, restored=resid.normalized, strict=True)
    assert analysis.shows_behaviour(default_model, "copying", clean=clean, restored=heads.normalized, strict=True)
    assert resid.normalized[:, task.changed].min() > 0.99             # the word stays at its position up to layer 3
    assert 0.8 < float(heads.normalized[3, 2] + heads.normalized[3, 6]) < 1.2   # the two induction heads carry it


def test_the_default_copies_in_context_and_answers_the_lens_prompt(default_model, words):
    """09's ablation guard (copy gain >= 1 nat) and logit-lens guard (answer 1 nat ahead of the runner-up)."""
    rep = analysis.repeated_random_tokens(words, batch=4, span=20, seed=0)
    with torch.no_grad():
        logits = default_model(rep)
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), rep[:, 1:], reduction="none").mean(0)
    gain = float(loss[:20].mean() - loss[20:].mean())
    assert analysis.shows_behaviour(default_model, "in-context copying", clean=gain, strict=True)
    scores = analysis.induction_scores(default_model, rep, 20)
    selected = (scores >= 10 * analysis.uniform_baseline(20)).nonzero().tolist()
    assert selected == [[3, 2], [3, 6]]
    tok = me.load_tokenizer()
    with torch.no_grad():
        top2 = default_model(torch.tensor([tok.encode("And the LORD spake unto the children of")]))[0, -1].topk(2)
    assert tok.id_to_piece(int(top2.indices[0])) == "▁Israel"
    assert analysis.shows_behaviour(default_model, "a confident next token",
                                    clean=float(top2.values[0] - top2.values[1]), strict=True)


def test_the_guard_knows_the_default_without_being_told(default_model):
    with pytest.raises(AssertionError, match="the embedded default should show"):
        analysis.shows_behaviour(default_model, "copying", clean=0.0)


def test_position_and_entropy_baselines_are_the_scores_of_even_causal_attention():
    seq = 37
    even = torch.tril(torch.ones(seq, seq))
    even = (even / even.sum(-1, keepdim=True))[None, None]                       # (1, 1, q, k) even over visible keys
    assert analysis.uniform_position_baseline(seq) == pytest.approx(float(analysis.first_token_score(even)), rel=1e-6)
    assert analysis.uniform_position_baseline(seq) == pytest.approx(float(analysis.previous_token_score(even)), rel=1e-6)
    assert analysis.uniform_entropy(seq) == pytest.approx(float(analysis.head_entropy(even)), rel=1e-6)
    for baseline in (analysis.uniform_position_baseline, analysis.uniform_entropy):
        with pytest.raises(ValueError, match="at least 2"):
            baseline(1)


def test_behaviour_problems_is_the_guards_rule_without_printing(capsys):
    assert analysis.behaviour_problems(2.0, 1.0) == []
    assert analysis.behaviour_problems(0.5) == ["clean metric 0.500 < 1 nat"]
    assert len(analysis.behaviour_problems(2.0, 1.5)) == 1 and capsys.readouterr().out == ""
