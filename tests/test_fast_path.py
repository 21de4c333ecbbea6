"""The fast path (static cache, fused matmuls, graph-ready step) computes what the plain path computes.

CUDA graphs cannot run here, so the step the graph records (static shapes: every slot read, unwritten
ones masked) is run eagerly on the CPU instead; torch.compile is traced with the "aot_eager" backend,
which checks the pieces compile as one graph each without paying for code generation.
"""
from __future__ import annotations

import subprocess
import sys
import weakref

import pytest
import torch

import mistral_edu as me
from mistral_edu.generation import FastDecoder, fast_path, fast_path_applies, fuse_projections

from conftest import randomize_, small_config


@pytest.fixture
def model():
    return randomize_(me.Transformer(small_config(max_seq_len=256)), seed=3).eval()


@pytest.fixture
def built(monkeypatch):
    """Weak references to every FastDecoder made during the test, and to its first layer's key cache."""
    made = []
    build = FastDecoder.__init__

    def recording(self, *args, **kwargs):
        build(self, *args, **kwargs)
        made.append((weakref.ref(self), weakref.ref(self.k[0])))

    monkeypatch.setattr(FastDecoder, "__init__", recording)
    return made


def prompt(n: int, seed: int = 0) -> list[int]:
    return torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("n", [1, 6, 7, 8, 30])
def test_greedy_tokens_equal_the_plain_path_for_prompts_in_one_or_many_chunks(model, built, monkeypatch, n):
    monkeypatch.setattr(fast_path, "PREFILL_CHUNK", 7)   # 30 tokens: five chunks, the last one short
    ids = prompt(n)
    plain = me.generate(model, ids, 24, stop_at_eos=False, fast=False)
    assert not built, "fast=False built a fast decoder"
    fast = me.generate(model, ids, 24, stop_at_eos=False)
    assert len(set(plain)) > 5, "the test model must not repeat one token"
    assert fast == plain
    assert len(built) == 1, "generate did not take the fast path"


@pytest.mark.parametrize("seed", [5, 6])
def test_sampled_tokens_equal_the_plain_path(model, built, seed):
    ids = prompt(12, seed=1)
    kwargs = dict(temperature=0.8, top_p=0.9, seed=seed, stop_at_eos=False)
    fast = me.generate(model, ids, 25, **kwargs)
    assert built and fast == me.generate(model, ids, 25, fast=False, **kwargs)


def test_sliding_window_shorter_than_the_generation_falls_back_to_the_plain_path(built):
    windowed = randomize_(me.Transformer(small_config(sliding_window=8, max_seq_len=256)), seed=4).eval()
    ids = prompt(6, seed=3)
    assert not fast_path_applies(windowed, 9) and fast_path_applies(windowed, 8)
    fast = me.generate(windowed, ids, 14, stop_at_eos=False)
    assert not built, "a window shorter than the generation needs the rolling buffer of the plain path"
    assert fast == me.generate(windowed, ids, 14, stop_at_eos=False, fast=False)
    within = me.generate(windowed, ids[:3], 5, stop_at_eos=False)
    assert len(built) == 1 and within == me.generate(windowed, ids[:3], 5, stop_at_eos=False, fast=False)


def test_hooks_see_every_step_because_generate_takes_the_plain_path(model, built):
    seen = []
    with model.hooks([("layers.1.hook_resid_post", lambda x, hook: seen.append(x.shape[1]))]):
        assert not fast_path_applies(model, 20)
        me.generate(model, prompt(6), 8, stop_at_eos=False)
    assert seen == [6] + [1] * 7 and not built


def _torch_hook(module_path, kind):
    """Install one torch hook of `kind` on the module at module_path; return a remover and the call counter."""
    def install(model, calls):
        module = model.get_submodule(module_path)
        if kind == "forward":
            return module.register_forward_hook(lambda m, args, out: calls.append(m))
        return module.register_forward_pre_hook(lambda m, args: calls.append(m))
    return install


def _global_hook(kind):
    """Install a torch hook on every module at once; it counts only the model's final norm."""
    def install(model, calls):
        if kind == "forward":
            return torch.nn.modules.module.register_module_forward_hook(
                lambda m, args, out: calls.append(m) if m is model.norm else None)
        return torch.nn.modules.module.register_module_forward_pre_hook(
            lambda m, args: calls.append(m) if m is model.norm else None)
    return install


HOOK_KINDS = {
    "forward hook on a hook point": _torch_hook("layers.0.hook_resid_post", "forward"),
    "forward pre-hook on a hook point": _torch_hook("layers.1.attention.hook_z", "pre"),
    "forward hook on a block": _torch_hook("layers.1", "forward"),
    "forward pre-hook on a norm": _torch_hook("layers.0.ffn_norm", "pre"),
    "forward hook on the model itself": _torch_hook("", "forward"),
    "forward hook on a fused projection": _torch_hook("layers.0.attention.wk", "forward"),
    "forward pre-hook on a fused projection": _torch_hook("layers.1.feed_forward.w3", "pre"),
    "forward hook on the output head": _torch_hook("output", "forward"),
    "global forward hook": _global_hook("forward"),
    "global forward pre-hook": _global_hook("pre"),
}


@pytest.mark.parametrize("kind", list(HOOK_KINDS))
def test_every_kind_of_torch_hook_runs_in_generate_as_in_the_plain_path(model, built, kind):
    ids = prompt(6, seed=9)
    me.generate(model, ids, 2)                    # fuse first, so hooks on the fused projections are tested as such
    built.clear()
    counts = {}
    for fast in (True, False):
        calls = []
        handle = HOOK_KINDS[kind](model, calls)
        try:
            tokens = me.generate(model, ids, 7, stop_at_eos=False, fast=fast)
        finally:
            handle.remove()
        counts[fast] = (len(calls), tokens)
    assert counts[True][0] == counts[False][0] > 0, f"{kind}: ran {counts[True][0]} times, {counts[False][0]} with fast=False"
    assert counts[True][1] == counts[False][1] and not built, "generate took the fast path with a hook attached"
    assert fast_path_applies(model, 13), "the hook's removal was not noticed"


def test_backward_hooks_also_keep_generate_off_the_fast_path(model):
    handle = model.layers[0].feed_forward.register_full_backward_hook(lambda m, grad_in, grad_out: None)
    assert not fast_path_applies(model, 10)
    handle.remove()
    handle = torch.nn.modules.module.register_module_full_backward_hook(lambda m, grad_in, grad_out: None)
    try:
        assert not fast_path_applies(model, 10)
    finally:
        handle.remove()
    assert fast_path_applies(model, 10)


def test_hooks_added_after_a_decoder_was_built_run_and_the_decoder_refuses_them(model, built):
    ids = prompt(8, seed=10)
    decoder = FastDecoder(fuse_projections(model), 64, use_graph=False)
    reference = me.generate(model, ids, 6, stop_at_eos=False, decoder=decoder)
    seen, calls = [], []
    handle = model.layers[0].attention.wq.register_forward_hook(lambda m, args, out: calls.append(out.shape[1]))
    try:
        with model.hooks([("layers.1.hook_mlp_out", lambda x, hook: seen.append(x.shape[1]))]):
            assert me.generate(model, ids, 6, stop_at_eos=False, decoder=decoder) == reference
        assert seen == [8] + [1] * 5 and calls == seen
        with pytest.raises(ValueError, match="hooks are attached.*layers.0.attention.wq.*fast=False"):
            decoder.prefill(ids)
    finally:
        handle.remove()
    assert me.generate(model, ids, 6, stop_at_eos=False, decoder=decoder) == reference and calls == seen


def test_prefill_logits_match_the_model_forward(model, monkeypatch):
    monkeypatch.setattr(fast_path, "PREFILL_CHUNK", 5)
    ids = prompt(23, seed=2)
    decoder = FastDecoder(fuse_projections(model), 64, use_graph=False)
    expected = model(torch.tensor([ids]))[0, -1]
    torch.testing.assert_close(decoder.prefill(ids)[0], expected, rtol=1e-4, atol=1e-4)


def test_static_step_the_graph_records_equals_the_eager_step(model):
    """All slots read and the unwritten masked (what the CUDA graph replays) = only written slots read."""
    fuse_projections(model)
    ids = prompt(10, seed=4)
    static, eager = FastDecoder(model, 64, use_graph=False), FastDecoder(model, 64, use_graph=False)
    static.k[0].fill_(1e4)   # garbage in unwritten slots must not leak through the mask
    logits_a, logits_b = static.prefill(ids), eager.prefill(ids)
    for _ in range(12):
        token = int(logits_a.argmax())
        static.token.fill_(token)
        static.position.fill_(static.pos)
        static.pos += 1
        logits_a, logits_b = static.step(), eager.decode(token)
        torch.testing.assert_close(logits_a, logits_b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("new_tokens", [1, 3, fast_path.HEAD_COPY_MIN_TOKENS - 1, fast_path.HEAD_COPY_MIN_TOKENS])
def test_only_generations_long_enough_to_repay_it_copy_the_output_head(model, monkeypatch, new_tokens):
    heads = []
    read = FastDecoder.read_weights
    monkeypatch.setattr(FastDecoder, "read_weights", lambda self: (read(self), heads.append(self.output)))
    ids = prompt(5, seed=11)
    fast = me.generate(model, ids, new_tokens, stop_at_eos=False)
    assert fast == me.generate(model, ids, new_tokens, stop_at_eos=False, fast=False)
    head, = heads
    copied = head.data_ptr() != model.output.weight.data_ptr()
    assert copied == (new_tokens >= fast_path.HEAD_COPY_MIN_TOKENS)
    assert head.is_contiguous() != copied and torch.equal(head, model.output.weight)


def test_a_first_short_generate_does_not_import_torch_dynamo():
    """torch._dynamo takes about a second to import; a prompt of one prefill chunk must not need it."""
    script = ("import sys, torch, mistral_edu as me\n"
              "cfg = me.ModelConfig(dim=64, n_layers=2, head_dim=16, hidden_dim=160, n_heads=4, n_kv_heads=2,"
              " norm_eps=1e-5, vocab_size=256, rope_theta=1e6, max_seq_len=128)\n"
              "me.generate(me.Transformer(cfg).eval(), [1, 5, 9], 8)\n"
              "print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "the first generate call imported torch._dynamo"


def test_no_static_cache_outlives_generate(model, built):
    me.generate(model, prompt(9), 6, stop_at_eos=False)
    (decoder, keys), = built
    assert decoder() is None and keys() is None, "generate left its decoder's cache allocated"


def test_a_kept_decoder_is_reused_and_follows_weight_edits(model, built):
    ids = prompt(9, seed=6)
    decoder = FastDecoder(fuse_projections(model), 64, use_graph=False)
    keys = decoder.k[0]
    me.generate(model, ids, 3, decoder=decoder)
    with torch.no_grad():
        model.layers[1].attention.wv.weight.mul_(-1)    # in place: lands in the fused matrix
        model.output.weight[:, :8] = 0                  # in place: the CPU's transposed head copy is stale
        model.layers[0].feed_forward.w2.weight = torch.nn.Parameter(torch.randn(64, 160) / 12)  # replaced
    kept = me.generate(model, ids, 12, stop_at_eos=False, decoder=decoder)
    assert kept == me.generate(model, ids, 12, stop_at_eos=False, fast=False)
    assert len(built) == 1 and decoder.k[0] is keys, "generate built a decoder instead of using the one given"
    model.double()
    with pytest.raises(ValueError, match="build a new FastDecoder"):
        me.generate(model, ids, 3, decoder=decoder)


def test_weight_edits_and_moves_reach_fresh_decoders(model):
    ids = prompt(9, seed=6)
    me.generate(model, ids, 3)
    with torch.no_grad():
        model.layers[1].attention.wq.weight.mul_(-1)
        model.output.weight[:, :8] = 0
    assert me.generate(model, ids, 12, stop_at_eos=False) == me.generate(model, ids, 12, stop_at_eos=False, fast=False)
    model.double()                                      # every parameter moves: generate fuses them again
    assert me.generate(model, ids, 12, stop_at_eos=False) == me.generate(model, ids, 12, stop_at_eos=False, fast=False)


def test_decoder_sizes_and_their_errors(model, monkeypatch):
    with pytest.raises(ValueError, match="fuse_projections"):
        FastDecoder(model, 32, use_graph=False)
    fuse_projections(model)
    monkeypatch.setattr(fast_path, "SLOT_ROUNDING", 32)
    assert FastDecoder.sized_for(model, 40).slots == 64 and FastDecoder.sized_for(model, 250).slots == 256
    decoder = FastDecoder(model, 16, use_graph=False)
    decoder.prefill(prompt(16, seed=7))
    with pytest.raises(ValueError, match="cache is full"):
        decoder.decode(3)
    with pytest.raises(ValueError, match=r"the decoder holds 16; build one with FastDecoder\(model, max_seq_len=20\)"):
        me.generate(model, prompt(10), 10, decoder=decoder)
    other = fuse_projections(randomize_(me.Transformer(model.cfg), seed=1))
    with pytest.raises(ValueError, match="built for another model"):
        me.generate(other, prompt(4), 2, decoder=decoder)
    with pytest.raises(ValueError, match="max_seq_len"):
        FastDecoder(model, model.cfg.max_seq_len + 1)


def test_out_of_vocabulary_prompt_is_rejected_before_the_fast_path(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        me.generate(model, [1, 999], 3)


def test_compiled_step_pieces_trace_as_single_graphs_and_match(model):
    torch._dynamo.reset()
    decoder = FastDecoder(fuse_projections(model), 32, use_graph=False)
    decoder.prefill(prompt(4, seed=8))
    decoder.token.fill_(5)
    decoder.position.fill_(decoder.pos)
    expected = decoder.step()
    decoder.step_functions = {name: torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=False)
                              for name, fn in fast_path.PLAIN_STEP_FUNCTIONS.items()}
    torch.testing.assert_close(decoder.step(), expected)
    torch._dynamo.reset()
