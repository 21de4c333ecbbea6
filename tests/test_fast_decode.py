"""The fast path (static cache, fused matmuls, graph-ready step) computes what the plain path computes.

CUDA graphs cannot run here, so the step the graph records (static shapes: every slot read, unwritten
ones masked) is run eagerly on the CPU instead; torch.compile is traced with the "aot_eager" backend,
which checks the pieces compile as one graph each without paying for code generation.
"""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from mistral_edu.generation import fast_path as fast_decode
from mistral_edu.generation.fast_path import FastDecoder, fast_path_applies

from conftest import randomize_, small_config


@pytest.fixture
def model():
    return randomize_(me.Transformer(small_config(max_seq_len=256)), seed=3).eval()


def prompt(n: int, seed: int = 0) -> list[int]:
    return torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_greedy_tokens_equal_the_plain_path_across_prefill_chunks(model, monkeypatch):
    monkeypatch.setattr(fast_decode, "PREFILL_CHUNK", 7)   # a 30-token prompt in five chunks
    ids = prompt(30)
    plain = me.generate(model, ids, 24, stop_at_eos=False, fast=False)
    fast = me.generate(model, ids, 24, stop_at_eos=False)
    assert len(set(plain)) > 5, "the test model must not repeat one token"
    assert fast == plain
    assert fast_decode._DECODERS.get(model) is not None, "generate did not take the fast path"


def test_sampled_tokens_equal_the_plain_path(model):
    ids = prompt(12, seed=1)
    kwargs = dict(temperature=0.8, top_p=0.9, seed=5, stop_at_eos=False)
    assert me.generate(model, ids, 25, **kwargs) == me.generate(model, ids, 25, fast=False, **kwargs)


def test_prefill_logits_match_the_model_forward(model, monkeypatch):
    monkeypatch.setattr(fast_decode, "PREFILL_CHUNK", 5)
    ids = prompt(23, seed=2)
    decoder = FastDecoder(model, 64, use_graph=False)
    expected = model(torch.tensor([ids]))[0, -1]
    torch.testing.assert_close(decoder.prefill(ids)[0], expected, rtol=1e-4, atol=1e-4)


def test_static_step_the_graph_records_equals_the_eager_step(model):
    """All slots read and the unwritten masked (what the CUDA graph replays) = only written slots read."""
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


def test_hooks_see_every_step_because_generate_takes_the_plain_path(model):
    seen = []
    with model.hooks([("layers.1.hook_resid_post", lambda x, hook: seen.append(x.shape[1]))]):
        assert not fast_path_applies(model, 20)
        me.generate(model, prompt(6), 8, stop_at_eos=False)
    assert seen == [6] + [1] * 7


def test_sliding_window_shorter_than_the_generation_takes_the_plain_path():
    model = me.Transformer(small_config(sliding_window=8))
    assert not fast_path_applies(model, 9) and fast_path_applies(model, 8)


def test_fused_weights_are_the_modules_own_storage(model):
    me.generate(model, prompt(5), 2)
    attn, ffn = model.layers[0].attention, model.layers[0].feed_forward
    weights = fast_decode._DECODERS[model].layers[0]
    assert weights.wqkv.data_ptr() == attn.wq.weight.data_ptr()
    assert weights.wqkv[-attn.wv.weight.shape[0]:].data_ptr() == attn.wv.weight.data_ptr()
    assert weights.w13[ffn.w1.weight.shape[0]:].data_ptr() == ffn.w3.weight.data_ptr()
    assert set(model.state_dict()) == set(me.Transformer(model.cfg).state_dict())


def test_weight_edits_reach_the_fast_path(model):
    ids = prompt(9, seed=6)
    me.generate(model, ids, 3)                          # builds and caches a decoder
    with torch.no_grad():
        model.layers[1].attention.wv.weight.mul_(-1)    # in place: lands in the fused matrix
        model.output.weight[:, :8] = 0                  # in place: the CPU's transposed head copy is stale
        model.layers[0].feed_forward.w2.weight = torch.nn.Parameter(torch.randn(64, 160) / 12)  # replaced
    assert me.generate(model, ids, 12, stop_at_eos=False) == me.generate(model, ids, 12, stop_at_eos=False, fast=False)
    model.double()                                      # every parameter moves: the decoder is rebuilt
    assert me.generate(model, ids, 12, stop_at_eos=False) == me.generate(model, ids, 12, stop_at_eos=False, fast=False)


def test_decoder_is_reused_for_similar_lengths_and_rejects_overflow(model):
    first = FastDecoder.for_model(model, 40)
    assert FastDecoder.for_model(model, 41) is first
    first.prefill(prompt(first.slots, seed=7))
    with pytest.raises(ValueError, match="cache is full"):
        first.decode(3)
    with pytest.raises(ValueError, match="max_seq_len"):
        FastDecoder(model, model.cfg.max_seq_len + 1)


def test_out_of_vocabulary_prompt_is_rejected_before_the_fast_path(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        me.generate(model, [1, 999], 3)


def test_compiled_step_pieces_trace_as_single_graphs_and_match(model):
    torch._dynamo.reset()
    decoder = FastDecoder(model, 32, use_graph=False)
    decoder.prefill(prompt(4, seed=8))
    decoder.token.fill_(5)
    decoder.position.fill_(decoder.pos)
    expected = decoder.step()
    decoder.step_functions = {name: torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=False)
                              for name, fn in fast_decode.PLAIN_STEP_FUNCTIONS.items()}
    torch.testing.assert_close(decoder.step(), expected)
    torch._dynamo.reset()
