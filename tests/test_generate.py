"""Generation: the KV cache changes the cost, never the tokens; sampling is seeded; EOS and streaming."""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from conftest import randomize_, small_config
from mistral_edu.generation import sample_next

CFG = small_config(dim=128, n_heads=8, n_kv_heads=2, head_dim=16, hidden_dim=448, vocab_size=512, max_seq_len=96)


@pytest.fixture(scope="module")
def model():
    return randomize_(me.Transformer(CFG), seed=5).eval()


PROMPT = [1, 17, 300, 42, 7, 99]


def greedy_by_recomputing(model, prompt, n):
    """The definition: run the whole sequence again for every new token, no cache."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("fast", [False, True])
def test_cached_greedy_equals_recomputation(model, fast):
    expected = greedy_by_recomputing(model, PROMPT, 30)
    assert len(set(expected)) > 5, "a degenerate repetition would prove little"
    assert me.generate(model, PROMPT, max_new_tokens=30, stop_at_eos=False, fast=fast) == expected


def test_sliding_window_generation_across_the_window():
    windowed = randomize_(me.Transformer(small_config(sliding_window=6, vocab_size=512)), seed=2).eval()
    expected = greedy_by_recomputing(windowed, PROMPT, 25)
    assert me.generate(windowed, PROMPT, max_new_tokens=25, stop_at_eos=False) == expected


def test_stops_after_eos(model):
    free = me.generate(model, PROMPT, max_new_tokens=20, stop_at_eos=False)
    eos = free[7]
    stopped = me.generate(model, PROMPT, max_new_tokens=20, eos_id=eos)
    assert stopped == free[:free.index(eos) + 1] and stopped[-1] == eos


def test_stream_sees_every_token_in_order(model):
    seen = []
    out = me.generate(model, PROMPT, max_new_tokens=12, stream=seen.append, stop_at_eos=False)
    assert seen == out and len(out) == 12


def test_zero_new_tokens(model):
    assert me.generate(model, PROMPT, max_new_tokens=0) == []


def test_sampling_is_reproducible_with_a_seed(model):
    a = me.generate(model, PROMPT, max_new_tokens=20, temperature=1.0, seed=11, stop_at_eos=False)
    b = me.generate(model, PROMPT, max_new_tokens=20, temperature=1.0, seed=11, stop_at_eos=False)
    c = me.generate(model, PROMPT, max_new_tokens=20, temperature=1.0, seed=12, stop_at_eos=False)
    assert a == b and a != c


def test_a_tiny_top_p_is_greedy(model):
    greedy = me.generate(model, PROMPT, max_new_tokens=15, stop_at_eos=False)
    assert me.generate(model, PROMPT, max_new_tokens=15, temperature=2.0, top_p=1e-6, seed=0,
                       stop_at_eos=False) == greedy


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, 0.7, generator)) for _ in range(400)}
    assert draws == {0, 1}, "0.5 alone is short of 0.7; 0.5 + 0.3 reaches it"
    draws = {int(sample_next(logits, 1.0, 1.0, generator)) for _ in range(400)}
    assert draws == {0, 1, 2, 3}
    assert int(sample_next(logits, 0.0, 1.0)) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": -1}, r"max_new_tokens must be a non-negative integer, got -1"),
    ({"max_new_tokens": 2.5}, r"max_new_tokens must be a non-negative integer, got 2\.5"),
    ({"temperature": -0.1}, r"temperature must be >= 0 \(0 is greedy\), got -0\.1"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0\.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1\.5"),
])
def test_bad_settings(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        me.generate(model, PROMPT, **kwargs)


# ----------------------------------------------------------------------------- chat

@pytest.fixture(scope="module")
def chat_model():
    """The embedded default's shape (vocabulary 32000, for the real tokenizer), random weights."""
    return randomize_(me.Transformer(me.ModelConfig.tiny()), seed=1).eval()


def test_chat_streams_the_reply_it_returns(chat_model, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    pieces = []
    reply = me.chat(chat_model, tokenizer, messages, max_new_tokens=12, stream=pieces.append)
    assert "".join(pieces) == reply
    tokens = me.generate(chat_model, tokenizer.encode_chat(messages), max_new_tokens=12)
    assert reply == tokenizer.decode(tokens)


def test_chat_answers_the_user(chat_model, tokenizer):
    with pytest.raises(ValueError, match=r"the last message must be the user's"):
        me.chat(chat_model, tokenizer, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(ValueError, match=r"user and assistant must alternate"):
        me.chat(chat_model, tokenizer, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
