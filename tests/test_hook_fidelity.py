"""Hooks change nothing they are not asked to: caching, self-patching, torch's own module hooks, the norms' scale."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mistral_edu as me
from conftest import randomize_, small_config
from mistral_edu.default import DEFAULT_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

ATTENTION_MATRICES = ("hook_attn_scores", "hook_pattern")


def gqa_model():
    """Two layers, 4 query heads sharing 2 KV heads, every weight random."""
    return randomize_(me.Transformer(small_config(n_heads=4, n_kv_heads=2)), seed=3).eval()


def shipped_default():
    return me.load_model(DEFAULT_DIR, device="cpu", verbose=False).eval()


@pytest.fixture(scope="module", params=["gqa", "default"])
def model_and_tokens(request):
    model = gqa_model() if request.param == "gqa" else shipped_default()
    shape = (2, 13) if request.param == "gqa" else (1, 8)  # the default's 32000-way output layer dominates
    tokens = torch.randint(3, model.cfg.vocab_size, shape, generator=torch.Generator().manual_seed(4))
    return model, tokens


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_caching_or_self_patching_any_hook_point_leaves_the_logits_bit_identical(model_and_tokens, dtype):
    model, tokens = model_and_tokens
    model = model.to(dtype)
    try:
        with torch.no_grad():
            plain = model(tokens)
            logits, everything = model.run_with_cache(tokens)
            assert torch.equal(logits, plain), "caching every hook point"
            for name in everything:
                logits, own = model.run_with_cache(tokens, names=[name])
                assert torch.equal(logits, plain), f"caching {name}"
                with model.hooks([(name, lambda x, hook: own[hook.name].clone())]):
                    patched = model(tokens)
                if not name.endswith(ATTENTION_MATRICES):
                    assert torch.equal(patched, plain), f"patching {name} with its own value"
                elif dtype == torch.float32:
                    # A replaced scores or pattern tensor takes the explicit path: same maths, other rounding.
                    assert (patched - plain).abs().max() <= 1e-4, name
    finally:
        model.float()


def test_replacing_the_pattern_or_scores_changes_the_output_and_in_place_edits_count():
    model = gqa_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(5))

    def uniform(pattern, hook):
        causal = torch.ones(pattern.shape[-2:]).tril()                            # (q, k)
        return (causal / causal.sum(-1, keepdim=True)).expand_as(pattern).contiguous()  # (batch, heads, q, k)

    def uniform_in_place(pattern, hook):
        pattern.copy_(uniform(pattern, hook))

    def flatten_scores_in_place(scores, hook):
        scores[torch.isfinite(scores)] = 0.0

    with torch.no_grad():
        plain = model(tokens)
        results = {}
        for label, name, fn in [("returned", ("pattern", 1), uniform), ("in place", ("pattern", 1), uniform_in_place),
                                ("scores in place", ("attn_scores", 1), flatten_scores_in_place)]:
            with model.hooks([(name, fn)]):
                results[label], cache = model.run_with_cache(tokens, names=[("pattern", 1)])
            assert not torch.allclose(results[label], plain, atol=1e-2), label
            rows = torch.arange(1, 10, dtype=torch.float32)[:, None]                  # (q, 1)
            assert torch.allclose(cache["pattern", 1][0, 0], torch.ones(9, 9).tril() / rows), label
    assert torch.allclose(results["returned"], results["in place"], atol=1e-6)
    assert torch.allclose(results["returned"], results["scores in place"], atol=1e-6)


def test_an_in_place_edit_under_inference_mode_is_honoured_too():
    model = gqa_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(5))

    def zero_scores(scores, hook):
        scores[torch.isfinite(scores)] = 0.0

    with torch.inference_mode():
        plain = model(tokens)
        with model.hooks([(("attn_scores", 0), lambda x, hook: None)]):
            assert torch.equal(model(tokens), plain)
        with model.hooks([(("attn_scores", 0), zero_scores)]):
            assert not torch.allclose(model(tokens), plain, atol=1e-2)


def test_torch_module_hooks_on_a_hook_point_fire_and_may_replace():
    model = gqa_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (1, 7), generator=torch.Generator().manual_seed(6))
    point = model.layers[1].hook_resid_mid
    seen = []
    with torch.no_grad():
        plain = model(tokens)
        handles = [point.register_forward_pre_hook(lambda module, args: seen.append(("pre", args[0].shape))),
                   point.register_forward_hook(lambda module, args, out: seen.append(("post", out.shape)))]
        assert torch.equal(model(tokens), plain)
        for handle in handles:
            handle.remove()
        assert seen == [("pre", (1, 7, model.cfg.dim)), ("post", (1, 7, model.cfg.dim))]
        handle = point.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
        zeroed = model(tokens)
        handle.remove()
        assert not torch.allclose(zeroed, plain, atol=1e-2)
        handle = model.layers[0].attention.hook_pattern.register_forward_hook(lambda m, args, out: out * 0)
        assert not torch.allclose(model(tokens), plain, atol=1e-2)  # a torch hook's replacement is honoured
        handle.remove()
        assert torch.equal(model(tokens), plain)


def test_a_hook_can_ask_for_the_gradient_of_its_activation():
    model = gqa_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (1, 5), generator=torch.Generator().manual_seed(7))
    grads = []
    with model.hooks([("layers.0.hook_resid_post", lambda x, hook: x.register_hook(grads.append) and None)]):
        model(tokens)[0, -1, 3].backward()
    assert len(grads) == 1 and grads[0].shape == (1, 5, model.cfg.dim) and grads[0][0, -1].abs().sum() > 0


def test_hook_scale_is_the_divisor_of_each_norm_and_is_honoured():
    model = gqa_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (1, 6), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    for norm, before in [("layers.1.ffn_norm", "layers.1.hook_resid_mid"), ("norm", "layers.1.hook_resid_post")]:
        x = cache[before]
        scale = cache[f"{norm}.hook_scale"]                                           # (batch, seq, 1)
        assert scale.shape == (1, 6, 1) and scale.dtype == torch.float32
        assert torch.allclose(scale, torch.sqrt(x.pow(2).mean(-1, keepdim=True) + model.cfg.norm_eps))
        weight = model.get_submodule(norm).weight
        assert torch.equal(cache[f"{norm}.hook_normalized"], (x / scale) * weight), "hook_normalized is after the gain"
    assert torch.equal(cache["scale"], cache["norm.hook_scale"])
    assert torch.equal(cache["ln1_scale", 1], cache["layers.1.attention_norm.hook_scale"])
    with torch.no_grad(), model.hooks([("norm.hook_scale", lambda s, hook: s * 2)]):
        halved = model(tokens)
    torch.testing.assert_close(halved, logits / 2, atol=1e-5, rtol=1e-5)  # the output head is linear, no bias


def test_names_filter_is_names_under_transformerlens_s_keyword():
    model = gqa_model()
    tokens = torch.tensor([[1, 5, 9, 4]])
    with torch.no_grad():
        _, by_filter = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_z"))
        _, by_names = model.run_with_cache(tokens, names=lambda n: n.endswith("hook_z"))
        _, one = model.run_with_cache(tokens, names_filter="layers.1.hook_resid_post")
    assert list(by_filter) == list(by_names) == ["layers.0.attention.hook_z", "layers.1.attention.hook_z"]
    assert list(one) == ["layers.1.hook_resid_post"]
    with pytest.raises(TypeError, match="names= or names_filter=.*not both"):
        model.run_with_cache(tokens, names=["hook_embed"], names_filter=["hook_embed"])


class ScalarReads(TorchDispatchMode):
    """Counts the ops that copy a tensor's value to Python (int(t), t.item()): each waits for the device."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_a_decode_step_with_check_ids_off_reads_nothing_back_from_the_device():
    model = gqa_model()
    cache = me.KVCache.for_model(model, max_seq_len=8)
    with torch.no_grad():
        model(torch.tensor([[1, 5, 9]]), cache=cache)
        with ScalarReads() as checked:
            model(torch.tensor([[4]]), cache=cache)
        with ScalarReads() as unchecked:
            model(torch.tensor([[7]]), cache=cache, check_ids=False)
    assert checked.count > 0 and unchecked.count == 0
    with pytest.raises(ValueError, match="token id 256 is outside the vocabulary"):
        model(torch.tensor([[256]]))
