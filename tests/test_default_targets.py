"""The fixed-definition measurements of analysis.copying and analysis.next_token, on models whose answers are known.

A hand-written copier (it predicts the token after the latest earlier occurrence of the current one)
must show a large copy drop and answer "▁mat"; a model with constant logits must show none and a loss
of log(vocab) everywhere. So each definition is checked against a value computed by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mistral_edu as me
from mistral_edu.analysis.copying import (CAT_PROMPT, NEW_SENTENCES, copy_drops, greedy_next_piece, natural_copy_drops,
                                          prose_induction_scores, prose_previous_token_scores,
                                          random_word_induction_scores, repeated_spans, sentence_copy_drops)
from mistral_edu.analysis.next_token import (heldout_windows, long_documents, min_logit, never_trained_types,
                                             nucleus_sizes, position_bucket_losses, token_losses, type_mass,
                                             window_loss)
from mistral_edu.default import corpus
from mistral_edu.tokenizer import mistral_common_v1_path

VOCAB = 32000


class ConstantModel:
    """Equal logits for every token: loss log(VOCAB) everywhere, no copying."""

    device = torch.device("cpu")
    cfg = me.ModelConfig.tiny()

    def __call__(self, tokens):
        return torch.zeros(*tokens.shape, VOCAB)                                  # (batch, seq, vocab)


class Copier(ConstantModel):
    """Logit 20 on the token after the latest earlier occurrence of the current token, 0 elsewhere."""

    def __call__(self, tokens):
        logits = super().__call__(tokens)
        for b, row in enumerate(tokens.tolist()):
            for p, t in enumerate(row):
                earlier = [j for j in range(p) if row[j] == t]
                if earlier:
                    logits[b, p, row[earlier[-1] + 1]] = 20.0
        return logits


@pytest.fixture(scope="module")
def tokenizer():
    return me.load_tokenizer(mistral_common_v1_path())


@pytest.fixture(scope="module")
def stream(tokenizer):
    return corpus.tokenize_documents(tokenizer, corpus.heldout_sample())


def test_repeated_spans_are_running_text_written_twice(stream):
    rows = repeated_spans(stream, 40, 24, seed=3)
    assert rows.shape == (40, 49) and (rows[:, 0] == 1).all()
    assert torch.equal(rows[:, 1:25], rows[:, 25:])
    assert not (rows[:, 1:] == 1).any(), "a span crossed a document boundary (BOS inside)"
    assert torch.equal(rows, repeated_spans(stream, 40, 24, seed=3))
    assert not torch.equal(rows, repeated_spans(stream, 40, 24, seed=4))
    assert len({tuple(r) for r in rows[:, 1:25].tolist()}) == 40


def test_repeated_spans_says_when_the_stream_is_too_short():
    with pytest.raises(ValueError, match="BOS-free spans"):
        repeated_spans(np.array([1, 5, 6, 7, 1, 8, 9, 10]), 3, 3)


class PeriodCopier(ConstantModel):
    """Logit 20 on the token one period back, at every position of the second copy: a perfect copier."""

    def __init__(self, span):
        self.span = span

    def __call__(self, tokens):
        logits = super().__call__(tokens)
        for p in range(self.span, tokens.shape[1]):
            logits[torch.arange(len(tokens)), p, tokens[:, p - self.span + 1]] = 20.0
        return logits


def test_copy_drop_is_log_vocab_for_a_perfect_copier_and_zero_without_copying(stream):
    rows = repeated_spans(stream, 8, 24)
    assert torch.allclose(copy_drops(ConstantModel(), rows, 24), torch.zeros(8))
    second = math.log1p((VOCAB - 1) * math.exp(-20.0))                            # loss of a token given logit 20
    drops = copy_drops(PeriodCopier(24), rows, 24)
    assert drops.shape == (8,) and torch.allclose(drops, torch.full((8,), math.log(VOCAB) - second), atol=1e-4)


def test_copy_drop_rejects_rows_of_another_shape(stream):
    with pytest.raises(ValueError, match="BOS, a span, the span again"):
        copy_drops(ConstantModel(), repeated_spans(stream, 2, 24), 20)


def test_natural_and_sentence_drops_have_one_value_per_input(tokenizer, stream):
    assert natural_copy_drops(Copier(), stream, n=5).shape == (5,)
    assert torch.allclose(sentence_copy_drops(ConstantModel(), tokenizer), torch.zeros(len(NEW_SENTENCES)))
    drops = sentence_copy_drops(Copier(), tokenizer)
    assert drops.shape == (len(NEW_SENTENCES),) and drops.mean() > 5.0


def test_the_new_sentences_are_new():
    """Written for the test: none occurs in the held-out text, and they are all different."""
    text = "\n".join(corpus.heldout_sample())
    assert len(set(NEW_SENTENCES)) == len(NEW_SENTENCES) >= 20
    assert not any(s in text for s in NEW_SENTENCES)


def test_the_cat_prompt_is_answered_by_copying(tokenizer):
    assert greedy_next_piece(Copier(), tokenizer, CAT_PROMPT) == "▁mat"
    assert greedy_next_piece(ConstantModel(), tokenizer, CAT_PROMPT) == tokenizer.id_to_piece(0)


def test_head_score_tables_have_the_model_shape(tokenizer, stream):
    model = me.Transformer(me.ModelConfig.tiny()).eval()
    text = tokenizer.decode(stream[:2000].tolist())
    for scores in (prose_induction_scores(model, stream, n=4), prose_previous_token_scores(model, stream, n=2),
                   random_word_induction_scores(model, tokenizer, text, n=4)):
        assert scores.shape == (4, 8) and ((scores >= 0) & (scores <= 1)).all()


def test_heldout_windows_cover_the_stream_in_order(stream):
    windows = heldout_windows(stream)
    assert windows.shape == (len(stream) // 128, 129) and (windows[:, 0] == 1).all()
    assert torch.equal(windows[:, 1:].flatten(), torch.from_numpy(stream[:len(windows) * 128].astype(np.int64)))


def test_long_documents_start_at_a_bos_and_reach_the_length():
    stream = np.array([1, 5, 6, 1, 7, 8, 9, 10, 1, 11, 12, 13, 14, 15])
    docs = long_documents(stream, 4)
    assert docs.tolist() == [[1, 7, 8, 9], [1, 11, 12, 13]]
    with pytest.raises(ValueError, match="reaches 9 tokens"):
        long_documents(stream, 9)


def test_losses_of_constant_logits_are_log_vocab(stream):
    assert window_loss(ConstantModel(), stream[:1000]) == pytest.approx(math.log(VOCAB), abs=1e-4)
    buckets = position_bucket_losses(ConstantModel(), stream)
    assert list(buckets) == ["0-64", "64-128", "128-256", "256-511"]
    assert all(v == pytest.approx(math.log(VOCAB), abs=1e-4) for v in buckets.values())
    assert token_losses(ConstantModel(), heldout_windows(stream[:1000])).shape == (7, 128)


def test_type_mass_nucleus_and_min_logit_of_constant_logits():
    rows = torch.ones(2, 5, dtype=torch.long)
    ids = torch.arange(100, 4100)
    assert torch.allclose(type_mass(ConstantModel(), rows, ids), torch.full((2, 5), 4000 / VOCAB))
    assert torch.allclose(type_mass(ConstantModel(), rows, ids, temperature=1.5), torch.full((2, 5), 4000 / VOCAB))
    assert (nucleus_sizes(ConstantModel(), rows, 0.9) == math.ceil(0.9 * VOCAB)).all()
    assert (nucleus_sizes(Copier(), torch.tensor([[1, 7, 8, 7]]))[0, -1] == 1).all()
    assert min_logit(ConstantModel(), rows) == 0.0
    with pytest.raises(ValueError, match="temperature"):
        type_mass(ConstantModel(), rows, ids, temperature=0)


def test_never_trained_types_complement_the_shipped_training_types():
    types = corpus.train_types()
    assert (np.diff(types) > 0).all() and 1 in types and len(types) == 16021
    unseen = never_trained_types(types, VOCAB)
    assert len(unseen) + len(types) == VOCAB and not np.isin(unseen.numpy(), types).any()
