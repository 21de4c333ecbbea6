"""QK/OV circuits and composition scores: every factored shortcut against the full matrices it avoids,
the circuits against the model's own activations, and the default model's induction circuit."""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from mistral_edu import analysis

from conftest import randomize_, small_config

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = small_config(n_layers=3)


@pytest.fixture(scope="module")
def model():
    return randomize_(me.Transformer(CFG), seed=7).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(3, CFG.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))


def factors(seed, n=40, r=4, d=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, r, generator=g, dtype=torch.float64), torch.randn(r, n, generator=g, dtype=torch.float64)


def test_copying_score_is_the_eigenvalue_score_of_the_full_product():
    left, right = factors(0)
    eigenvalues = torch.linalg.eigvals(left @ right)                                # (n,) only r nonzero
    expected = eigenvalues.real.sum() / eigenvalues.abs().sum()
    assert analysis.copying_score(left, right) == pytest.approx(float(expected), abs=1e-9)
    assert analysis.copying_score(right.T, right) == pytest.approx(1.0)            # a Gram matrix copies
    assert analysis.copying_score(-right.T, right) == pytest.approx(-1.0)          # its negative suppresses


def test_diagonal_ranks_match_the_full_matrix_chunk_by_chunk():
    left, right = factors(1)
    full = left @ right                                                            # (n, n), small here
    expected = (full > full.diagonal()[None]).sum(0)
    assert torch.equal(analysis.diagonal_ranks(left, right, chunk=7), expected)
    n = right.shape[1]
    assert analysis.diagonal_ranks(right.T, right).float().median() < n / 4        # a Gram matrix's diagonal leads
    assert analysis.diagonal_ranks(-right.T, right).float().median() > 3 * n / 4   # its negative's trails


def test_composition_score_from_traces_equals_the_frobenius_norms():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4, 24, generator=g) for _ in range(3))
    o = torch.randn(24, 4, generator=g)
    a, b = (q.T @ k).double(), (o @ v).double()                                   # (dim, dim) each
    expected = (a @ b).norm() / (a.norm() * b.norm())
    assert analysis.composition_score(q, k, o, v) == pytest.approx(float(expected), rel=1e-9)


def test_head_weights_reproduce_the_models_q_k_v_and_the_gqa_sharing(model, tokens):
    layer = 1
    _, cache = model.run_with_cache(tokens, names=[f"layers.{layer}.attention_norm.hook_normalized",
                                                   f"layers.{layer}.attention.hook_q", f"layers.{layer}.attention.hook_k",
                                                   f"layers.{layer}.attention.hook_v", f"layers.{layer}.hook_resid_pre"])
    x = cache[f"layers.{layer}.hook_resid_pre"][0]                                # (seq, dim)
    unit = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CFG.norm_eps)         # the norm without its gain
    for head in range(CFG.n_heads):
        w = analysis.head_weights(model, layer, head)
        assert w.kv_head == head // (CFG.n_heads // CFG.n_kv_heads)
        torch.testing.assert_close(unit @ w.W_Q.T, cache["q", layer][0, :, head], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(unit @ w.W_K.T, cache["k", layer][0, :, w.kv_head], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(unit @ w.W_V.T, cache["v", layer][0, :, w.kv_head], atol=1e-5, rtol=1e-4)
    assert torch.equal(analysis.head_weights(model, layer, 0).W_K, analysis.head_weights(model, layer, 1).W_K)


def test_qk_circuit_is_the_models_attention_score_at_that_distance(model, tokens):
    _, cache = model.run_with_cache(tokens, names=["layers.0.hook_resid_pre", "layers.0.attention.hook_attn_scores"])
    x = cache["resid_pre", 0][0]                                                   # (seq, dim): the embeddings
    scores = cache["attn_scores", 0][0]                                            # (heads, q, k)
    for head, query, key in [(0, 5, 5), (1, 9, 2), (3, 11, 0)]:
        got = analysis.qk_circuit(model, 0, head, x[query:query + 1], x[key:key + 1], distance=query - key)
        assert got.item() == pytest.approx(scores[head, query, key].item(), abs=1e-4)
    with pytest.raises(ValueError, match="distance"):
        analysis.qk_circuit(model, 0, 0, x[:1], x[:1], distance=-1)


def test_ov_circuit_is_the_direct_logit_effect_of_attending_to_a_token(model):
    ids = torch.tensor([5, 17, 40, 99])
    sources = analysis.token_residuals(model, ids, layer=2)                        # (4, dim)
    left, right = analysis.ov_circuit(model, 2, 3, ids, sources)
    w = analysis.head_weights(model, 2, 3)
    unit = sources * torch.rsqrt(sources.pow(2).mean(-1, keepdim=True) + CFG.norm_eps)
    written = unit @ w.W_V.T @ w.W_O.T                                             # (4, dim): the head's output per source
    logits = written * model.norm.weight @ model.output.weight[ids].T              # (4 sources, 4 targets)
    torch.testing.assert_close(left @ right, logits.T, atol=1e-4, rtol=1e-4)


def test_token_residuals_are_the_stream_at_the_token_after_bos(model):
    ids = torch.tensor([7, 8])
    _, cache = model.run_with_cache(torch.tensor([[1, 8]]), names=["layers.2.hook_resid_pre"])
    torch.testing.assert_close(analysis.token_residuals(model, ids, 2)[1], cache["resid_pre", 2][0, 1])


def test_composition_scores_table_and_its_errors(model):
    scores = analysis.composition_scores(model, 2, 1, kind="k")
    assert scores.shape == (2, CFG.n_heads)
    w, writer = analysis.head_weights(model, 2, 1), analysis.head_weights(model, 0, 3)
    assert scores[0, 3].item() == pytest.approx(analysis.composition_score(w.W_Q, w.W_K, writer.W_O, writer.W_V))
    # GQA: K-composition with W_K alone would be the same for the heads sharing a KV head; W_Q tells them apart
    assert not torch.equal(scores, analysis.composition_scores(model, 2, 0, kind="k"))
    with pytest.raises(ValueError, match="kind"):
        analysis.composition_scores(model, 2, 1, kind="o")
    assert 0 < analysis.random_composition_baseline(model, samples=20) < 1
    draws = analysis.random_composition_scores(model, draws=20, seed=3)
    assert draws.shape == (20,) and len(draws.unique()) == 20                  # each draw its own random matrices
    assert draws.mean().item() == pytest.approx(analysis.random_composition_baseline(model, samples=20, seed=3))


def test_path_ablation_changes_only_the_named_projection(model, tokens):
    names = [f"layers.2.attention.hook_{p}" for p in "qkv"] + ["layers.2.hook_resid_pre", "layers.0.attention.hook_z"]
    _, clean = model.run_with_cache(tokens, names=names)
    with model.hooks(analysis.path_ablation_hooks(model, [(0, 1)], layer=2, kind="k")):
        _, cut = model.run_with_cache(tokens, names=names)
    torch.testing.assert_close(cut["q", 2], clean["q", 2])
    torch.testing.assert_close(cut["v", 2], clean["v", 2])
    wo = model.layers[0].attention.wo.weight[:, CFG.head_dim:2 * CFG.head_dim]    # (dim, head_dim) of head 1
    without = clean["resid_pre", 2] - clean["z", 0][:, :, 1] @ wo.T                # (1, seq, dim)
    expected = model.layers[2].attention.wk(model.layers[2].attention_norm(without)).view_as(clean["k", 2])
    torch.testing.assert_close(cut["k", 2], expected)
    assert not torch.allclose(cut["k", 2], clean["k", 2])
    with pytest.raises(ValueError, match="before layer"):
        analysis.path_ablation_hooks(model, [(2, 0)], layer=2)


def test_trained_token_ids_skip_the_shared_fill_rows(model):
    assert len(analysis.trained_token_ids(model)) == CFG.vocab_size               # random rows: all distinct
    assert len(analysis.untrained_token_ids(model)) == 0


@pytest.fixture(scope="module")
def default():
    from mistral_edu.default import DEFAULT_DIR
    return me.load_model(DEFAULT_DIR, dtype=torch.float32)


def test_the_defaults_learned_types_are_those_of_its_training_text(default):
    from mistral_edu.default import corpus
    ids = analysis.trained_token_ids(default)
    assert torch.equal(ids, torch.from_numpy(corpus.train_types())) and 16000 <= len(ids) <= 16100
    untrained = analysis.untrained_token_ids(default)
    assert len(ids) + len(untrained) == default.cfg.vocab_size and not set(ids.tolist()) & set(untrained.tolist())


def test_the_defaults_induction_heads_k_compose_with_its_previous_token_head(default):
    baseline = analysis.random_composition_baseline(default)
    for induction_head in (2, 6):
        scores = analysis.composition_scores(default, 3, induction_head, kind="k")
        assert divmod(int(scores.argmax()), default.cfg.n_heads) == (2, 6)
        assert scores[2, 6] > 2.5 * baseline
