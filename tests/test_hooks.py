"""Hook points, run_with_cache and the hooks() context: shapes, proofs, the idle fast path, bad input."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mistral_edu as me
from mistral_edu.hooks import activation_shapes, full_cache_bytes, hook_points

from conftest import randomize_

# The embedded default's shape with a small vocabulary: the 32000-way output layer would dominate the time.
CFG = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)


pytestmark = pytest.mark.usefixtures("one_thread")


def load_benchmark():
    path = Path(__file__).parents[1] / "benchmarks" / "hook_overhead.py"
    spec = importlib.util.spec_from_file_location("hook_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(me.Transformer(CFG), seed=1).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(3, CFG.vocab_size, (1, 11), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def full(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(tokens)


def test_every_hook_point_of_the_design_table_exists_with_its_shape(full, tokens):
    _, cache = full
    expected = activation_shapes(CFG, 1, tokens.shape[1])
    assert list(cache.keys()) == list(expected)
    assert {name: tuple(cache[name].shape) for name in cache} == expected


def test_hooks_during_generation_see_new_queries_and_all_keys_and_keep_the_tokens(model):
    prompt = [1, 40, 50, 60, 70]
    seen: dict[str, list] = {}

    def record(x, hook):
        seen.setdefault(hook.name.split(".")[-1], []).append(x.clone())

    names = ["layers.2.attention.hook_rot_q", "layers.2.attention.hook_rot_k", "layers.2.attention.hook_v",
             "layers.2.attention.hook_pattern", "layers.2.attention.hook_z", "hook_embed"]
    plain = me.generate(model, prompt, max_new_tokens=5, stop_at_eos=False)
    with model.hooks([(n, record) for n in names]):
        hooked = me.generate(model, prompt, max_new_tokens=5, stop_at_eos=False)
    assert hooked == plain
    n = len(prompt)
    keys = [n, n + 1, n + 2, n + 3, n + 4]            # prefill, then one new query per step over every key so far
    queries = [n, 1, 1, 1, 1]
    assert [tuple(t.shape) for t in seen["hook_pattern"]] == [(1, CFG.n_heads, q, k) for q, k in zip(queries, keys)]
    assert [tuple(t.shape) for t in seen["hook_rot_q"]] == [(1, q, CFG.n_heads, CFG.head_dim) for q in queries]
    assert [tuple(t.shape) for t in seen["hook_rot_k"]] == [(1, q, CFG.n_kv_heads, CFG.head_dim) for q in queries]
    assert [tuple(t.shape) for t in seen["hook_z"]] == [(1, q, CFG.n_heads, CFG.head_dim) for q in queries]
    for pattern in seen["hook_pattern"]:
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    # A decode step's pattern row is the prefill's row for the same position, recomputed from the cache.
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([prompt + hooked[:4]]), names=[("pattern", 2)])
    torch.testing.assert_close(seen["hook_pattern"][-1][0, :, 0], cache["pattern", 2][0, :, -1], atol=1e-6, rtol=0)


def recompute_pattern(rot_q, rot_k, gqa_map):
    """softmax(rot_q . rot_k / sqrt(head_dim) + causal mask), query head h reading KV head gqa_map(h)."""
    heads = torch.arange(rot_q.shape[2])
    k = rot_k[:, :, gqa_map(heads)]                                              # (batch, seq, n_heads, head_dim)
    scores = torch.einsum("bqhd,bkhd->bhqk", rot_q, k) / math.sqrt(rot_q.shape[-1])
    seq = rot_q.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return scores, scores.softmax(-1)


def test_cached_pattern_is_softmax_of_scaled_rotated_q_k_with_gqa_and_causal_mask(full):
    _, cache = full
    for layer in range(CFG.n_layers):
        rot_q, rot_k = cache["rot_q", layer], cache["rot_k", layer]
        scores, pattern = recompute_pattern(rot_q, rot_k, lambda h: h // CFG.n_rep)
        torch.testing.assert_close(cache["attn_scores", layer], scores, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache["pattern", layer], pattern, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(cache["pattern", layer].sum(-1), torch.ones(1, CFG.n_heads, rot_q.shape[1]))
        assert torch.all(cache["pattern", layer].triu(1) == 0)
        # The test tells GQA mappings apart: tiling KV heads (h % n_kv_heads) instead gives other patterns.
        _, tiled = recompute_pattern(rot_q, rot_k, lambda h: h % CFG.n_kv_heads)
        assert not torch.allclose(cache["pattern", layer], tiled, atol=1e-3)


def test_idle_hook_points_give_bit_identical_logits_to_a_forward_without_them(model, tokens):
    bypassed = load_benchmark().hook_points_bypassed

    def forward_without_hooks(m, t, cache=None):
        with bypassed(m):
            return m(t, cache=cache)

    with torch.no_grad():
        assert torch.equal(model(tokens), forward_without_hooks(model, tokens))
        with model.hooks([("layers.0.hook_resid_post", lambda x, h: x + 1)]):
            assert not torch.equal(model(tokens), forward_without_hooks(model, tokens))
        assert torch.equal(model(tokens), forward_without_hooks(model, tokens))  # removed on exit
        assert "forward" not in vars(model.layers[0].attention)  # the bypass is undone on exit
        cache_a, cache_b = (me.KVCache.for_model(model, max_seq_len=16) for _ in range(2))
        for step in (tokens[:, :8], tokens[:, 8:9], tokens[:, 9:10]):
            assert torch.equal(model(step, cache=cache_a), forward_without_hooks(model, step, cache_b))


def test_hooks_are_removed_after_an_exception(model, tokens):
    def explode(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks([(lambda n: n.endswith("hook_z"), explode)]):
            model(tokens)
    with pytest.raises(ZeroDivisionError):
        with model.hooks([("hook_embed", lambda x, h: None)]):
            1 / 0
    assert all(not point.fns for point in hook_points(model).values())
    assert all(block.attention.pattern_selection is None for block in model.layers)


def test_run_with_cache_names_list_predicate_shorthand_to_and_nbytes(model, tokens, full):
    logits_all, everything = full
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names=["layers.1.hook_resid_post", ("z", -1)])
        assert torch.equal(logits, model(tokens))
    assert list(cache.keys()) == ["layers.1.hook_resid_post", "layers.3.attention.hook_z"]
    torch.testing.assert_close(cache["resid_post", 1], everything["layers.1.hook_resid_post"])
    assert torch.equal(cache["z", 3], cache["z", -1])
    _, by_predicate = model.run_with_cache(tokens, names=lambda n: n.endswith("hook_pattern"))
    assert len(by_predicate) == CFG.n_layers
    assert torch.equal(everything.pattern(2, 5), everything["pattern", 2][0, 5])
    assert everything.stack("resid_pre").shape == (CFG.n_layers, 1, tokens.shape[1], CFG.dim)
    assert torch.equal(everything["embed"], everything["hook_embed"])
    assert cache.nbytes() == 4 * (tokens.shape[1] * CFG.dim + tokens.shape[1] * CFG.n_heads * CFG.head_dim)
    doubled = cache.to(torch.float64)
    assert doubled["z", 3].dtype == torch.float64 and doubled.nbytes() == 2 * cache.nbytes()
    assert everything.nbytes() == full_cache_bytes(CFG, tokens.shape[1], bytes_per_value=4)


def test_selected_heads_and_rows_match_the_full_pattern(model, tokens, full):
    _, cache = full
    with torch.no_grad():
        logits, few = model.run_with_cache(tokens, pattern_heads={1: [6, 2]}, pattern_rows=slice(-3, None))
        assert torch.equal(logits, model(tokens))  # output still from the fused kernel
    assert "layers.0.attention.hook_pattern" not in few and few["pattern", 1].shape == (1, 2, 3, tokens.shape[1])
    for head in (6, 2):
        torch.testing.assert_close(few.pattern(1, head), cache.pattern(1, head)[-3:], atol=1e-6, rtol=0)
    with torch.no_grad():
        _, rows = model.run_with_cache(tokens, names=[("attn_scores", 3)], pattern_rows=[0, 7])
    torch.testing.assert_close(rows["attn_scores", 3], cache["attn_scores", 3][:, :, [0, 7]], atol=1e-5, rtol=0)


class LargestQKTensor(TorchDispatchMode):
    """Records the biggest (..., queries, keys) tensor any op produces: last axis seq long.

    Keys permuted for a matmul, (..., head_dim, ..., keys), are not (q, k) matrices and are skipped.
    """

    def __init__(self, seq: int):
        super().__init__()
        self.seq, self.largest = seq, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.seq \
                    and CFG.head_dim not in t.shape:
                self.largest = max(self.largest, t.numel())
        return out


def test_capturing_a_few_heads_or_the_last_row_never_builds_every_heads_qk_matrix(model):
    seq = 300  # not equal to dim, hidden_dim or head_dim, so the last axis identifies (.., keys) tensors
    tokens = torch.randint(3, CFG.vocab_size, (1, seq), generator=torch.Generator().manual_seed(3))

    def largest(**selection):
        with torch.no_grad(), LargestQKTensor(seq) as probe:
            model.run_with_cache(tokens, names=lambda n: n.endswith("hook_pattern"), last_only=True, **selection)
        return probe.largest

    assert largest() == CFG.n_heads * seq * seq                     # the full capture: what we avoid
    assert largest(pattern_heads={2: [5]}) == seq * seq             # one head's (q, k) matrix, once
    assert largest(pattern_rows=slice(-1, None)) == CFG.n_heads * seq   # one row per head


def test_memory_of_a_full_cache_from_shapes():
    assert full_cache_bytes(me.ModelConfig.mistral_7b_instruct_v02(), seq=1) == 2 * 32 * (
        7 * 4096 + 3 * 32 * 128 + 3 * 8 * 128 + 2 * 32 + 3 * 14336) + 2 * 2 * 4096 + 4 * (2 * 32 + 1)  # float32 scales


def test_unknown_names_and_out_of_range_layers_and_heads_are_clear_errors(model, tokens, full):
    _, cache = full
    with pytest.raises(KeyError, match="did you mean layers.1.attention.hook_pattern"):
        model.run_with_cache(tokens, names=["layers.1.attention.hook_patern"])
    with pytest.raises(KeyError, match="exists in every layer.*layers.0.attention.hook_z"):
        with model.hooks([("hook_z", lambda x, h: None)]):
            pass
    with pytest.raises(IndexError, match="layer 9 is out of range.*4 layers"):
        model.run_with_cache(tokens, names=["layers.9.hook_resid_post"])
    with pytest.raises(IndexError, match="layer 4 is out of range"):
        cache["pattern", 4]
    with pytest.raises(IndexError, match="head 8 is out of range.*8 heads"):
        model.run_with_cache(tokens, pattern_heads={0: [8]})
    with pytest.raises(KeyError, match="unknown shorthand 'patern'; did you mean pattern"):
        cache["patern", 0]
    with pytest.raises(KeyError, match="matched no hook point"):
        with model.hooks([(lambda n: n.endswith("hook_nothing"), lambda x, h: None)]):
            pass
    _, partial = model.run_with_cache(tokens, names=["hook_embed"])
    with pytest.raises(KeyError, match="was not captured"):
        partial["resid_post", 0]
    _, few = model.run_with_cache(tokens, pattern_heads={1: [6]})
    with pytest.raises(KeyError, match=r"head 0 of layer 1 was not captured: pattern_heads kept \[6\]"):
        few.pattern(1, 0)


def test_hook_returning_a_wrong_shape_dtype_or_type_is_a_clear_error(model, tokens):
    cases = [(lambda x, h: x[:, :-1], ValueError, "returned shape"),
             (lambda x, h: x.double(), ValueError, "torch.float64"),
             (lambda x, h: x.tolist(), TypeError, "returned list")]
    for fn, error, message in cases:
        with pytest.raises(error, match=message), model.hooks([("layers.0.hook_mlp_out", fn)]):
            model(tokens)


def test_selected_patterns_are_read_only_and_unlisted_layers_cannot_be_hooked(model, tokens):
    for edit in (lambda x, h: x * 0, lambda x, h: x.zero_()):
        with pytest.raises(ValueError, match="read-only"):
            with model.hooks([(("pattern", 1), edit)], pattern_rows=slice(-1, None)):
                model(tokens)
    with pytest.raises(ValueError, match="layer 0 has a scores or pattern hook"):
        with model.hooks([(("pattern", 0), lambda x, h: None)], pattern_heads={1: [0]}):
            pass


def test_an_ablating_hook_changes_what_follows(model, tokens):
    def zero_head_3(z, hook):
        z = z.clone()
        z[:, :, 3] = 0
        return z

    with torch.no_grad():
        with model.hooks([(("z", 2), zero_head_3)]):
            _, cache = model.run_with_cache(tokens, names=[("z", 2), ("attn_out", 2)])
        assert torch.all(cache["z", 2][:, :, 3] == 0)
        wo = model.layers[2].attention.wo.weight                                       # (dim, n_heads * head_dim)
        expected = cache["z", 2].flatten(-2) @ wo.T
        torch.testing.assert_close(cache["attn_out", 2], expected)
