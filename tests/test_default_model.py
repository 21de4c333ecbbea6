"""The shipped embedded default (mistral_edu/default/): it loads like real weights and has learned something.

Every number is computed from the checkpoint here, on held-out text it never trained on (shipped as
default/heldout.txt), with the same head-detection functions the notebooks use. Run with -s to see
them. Budget: under 30 s on a 2-core CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu.default import corpus
from mistral_edu.analysis import (attention_patterns, duplicate_token_score, first_token_score, induction_score,
                                  previous_token_score, repeated_random_tokens, top_heads, word_token_ids)
from mistral_edu.tokenizer import mistral_common_v1_path
from mistral_edu.default import DEFAULT_DIR

# The bars: a previous-token head at 0.6 and an induction head at 0.4.
PREVIOUS_TOKEN_MIN = 0.6
INDUCTION_MIN = 0.4
SPAN = 50


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """load_model() with no path and no real weights anywhere: the embedded default, the normal way."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MISTRAL_EDU_WEIGHTS", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
            mp.delenv(var, raising=False)
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        return me.load_model()


@pytest.fixture(scope="module")
def tokenizer():
    return me.load_tokenizer(mistral_common_v1_path())


@pytest.fixture(scope="module")
def heldout_stream(tokenizer) -> np.ndarray:
    """Every shipped held-out document as one id stream."""
    return corpus.tokenize_documents(tokenizer, corpus.heldout_sample())


@pytest.fixture(scope="module")
def heldout_rows(heldout_stream):
    """(16, 129) fixed windows of the held-out text, each starting with BOS."""
    rows = corpus.text_batch(heldout_stream, np.random.default_rng(12345), 16, 128)
    return torch.from_numpy(rows.astype(np.int64))


@pytest.fixture(scope="module")
def repeated_words(tokenizer):
    """BOS + 50 random ordinary English word tokens + the same 50 again, 16 rows."""
    words = word_token_ids(tokenizer, "\n".join(corpus.heldout_sample()))
    return repeated_random_tokens(words, batch=16, span=SPAN, seed=0)


@pytest.fixture(scope="module")
def text_patterns(model, heldout_rows):
    """Every layer's attention pattern on the held-out windows, via model.run_with_cache."""
    return attention_patterns(model, heldout_rows)


@pytest.fixture(scope="module")
def repeat_patterns(model, repeated_words):
    return attention_patterns(model, repeated_words)


def table(score, patterns, *args) -> torch.Tensor:
    """(n_layers, n_heads) table of a per-layer score function."""
    return torch.stack([score(p, *args) for p in patterns])


def test_the_trained_default_loads_through_the_real_weights_path(model):
    assert (DEFAULT_DIR / "params.json").is_file() and (DEFAULT_DIR / "consolidated.safetensors").is_file()
    assert model.checkpoint.is_embedded_default and model.checkpoint.layout == "mistral"
    assert me.ModelConfig.from_params_json(DEFAULT_DIR / "params.json") == me.ModelConfig.tiny()
    assert (DEFAULT_DIR / "consolidated.safetensors").stat().st_size <= 40 * 2**20
    assert model.dtype == torch.float32


@torch.no_grad()
def test_heldout_loss_is_clearly_below_a_unigram_model(model, heldout_rows, heldout_stream):
    """The unigram model is fitted on the held-out text itself, so it is a generous baseline."""
    logits = model(heldout_rows[:, :-1])                                           # (16, 128, 32000)
    targets = heldout_rows[:, 1:]                                                  # (16, 128)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
    counts = np.bincount(heldout_stream, minlength=model.cfg.vocab_size)
    unigram = float(-np.log(counts[targets.numpy()] / counts.sum()).mean())
    print(f"\nheld-out loss {loss:.3f} nats/token (full 32000-way softmax); unigram model fitted on the held-out text {unigram:.3f}")
    assert loss < unigram - 1.0


def test_a_previous_token_head_formed(text_patterns):
    scores = table(previous_token_score, text_patterns)
    print(f"\nprevious-token heads: {top_heads(scores, 3)}")
    assert scores.max() >= PREVIOUS_TOKEN_MIN


def test_an_induction_head_copies_ordinary_english_tokens(repeat_patterns):
    scores = table(induction_score, repeat_patterns, SPAN)
    duplicate = table(duplicate_token_score, repeat_patterns, SPAN)
    print(f"\ninduction heads: {top_heads(scores, 3)}; duplicate-token heads: {top_heads(duplicate, 2)}")
    assert scores.max() >= INDUCTION_MIN


@torch.no_grad()
def test_induction_lowers_the_loss_on_the_repeat(model, repeated_words):
    """The behaviour behind the head: the second copy is far more predictable than the first."""
    logits = model(repeated_words[:, :-1])
    losses = F.cross_entropy(logits.transpose(1, 2), repeated_words[:, 1:], reduction="none")  # (16, 2 * SPAN)
    first, second = losses[:, :SPAN - 1].mean().item(), losses[:, SPAN:].mean().item()
    print(f"\nloss on the first copy {first:.2f}, on the second {second:.2f}")
    assert second < first - 2.0


def test_first_token_sink_is_reported(model, text_patterns):
    scores = table(first_token_score, text_patterns)
    print(f"\nfirst-token (sink) heads: {top_heads(scores, 3)}; mean over all heads {scores.mean():.2f}")
    assert scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
