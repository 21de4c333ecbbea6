"""The default's training script: its rows, its weighted loss, and fine-tuning from a saved checkpoint.

Run on a synthetic token stream (no corpus packages needed) with the script's own argument parser.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu.default import DEFAULT_DIR, corpus
from mistral_edu.training.train import Data, init_model, load_init, parse_args, restricted_loss
from mistral_edu.tokenizer import mistral_common_v1_path


@pytest.fixture(scope="module")
def tokenizer():
    return me.load_tokenizer(mistral_common_v1_path())


def synthetic_data(tokenizer, folder, loss_types) -> Data:
    """A Data over a cached random stream: 20,000 tokens of 3,000 types, a BOS every 500."""
    stream = np.random.default_rng(0).integers(300, 3300, size=20000).astype(np.int32)
    stream[::500] = 1
    np.savez(folder / "tokens.npz", train=stream, heldout=stream[:5000])
    return Data(tokenizer, folder, loss_types)


def test_repeat_span_batch_writes_an_earlier_span_again(tokenizer):
    stream = np.arange(10, 5010, dtype=np.int32)              # every token distinct: a copy is easy to find
    rows, second = corpus.repeat_span_batch(stream, np.random.default_rng(1), 32, 128, 8, 48)
    assert rows.shape == second.shape == (32, 129) and (rows[:, 0] == 1).all()
    for row, mask in zip(rows, second):
        positions = np.flatnonzero(mask)
        assert 7 <= len(positions) <= 47 and (np.diff(positions) == 1).all()
        start = positions[0] - 1                               # the copy's first token (unmasked: unpredictable)
        copied = row[start:positions[-1] + 1]
        source = np.flatnonzero(row[:start] == copied[0])
        assert len(source) == 1 and np.array_equal(row[source[0]:source[0] + len(copied)], copied)
    again, _ = corpus.repeat_span_batch(stream, np.random.default_rng(1), 32, 128, 8, 48)
    assert np.array_equal(rows, again)
    with pytest.raises(ValueError, match="span_max <= seq / 2"):
        corpus.repeat_span_batch(stream, np.random.default_rng(1), 1, 64, 8, 48)


def test_batch_mixes_row_kinds_and_weighs_only_second_copies(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    args = parse_args(["--batch", "8", "--seq", "128", "--natural-fraction", "0.5", "--copy-fraction", "0.25",
                       "--copy-weight", "3", "--steps", "100"])
    rows, weights = data.batch(7, args)
    assert rows.shape == (8, 129) and weights.shape == (8, 128)
    assert (weights[:2] == 1).all() and (weights[6:] == 1).all()
    assert ((weights[2:6] == 3).sum(1) >= 7).all() and set(weights.unique().tolist()) == {1.0, 3.0}
    assert torch.equal(data.batch(7, args)[0], rows)
    with pytest.raises(ValueError, match="exceed 1"):
        data.batch(0, parse_args(["--natural-fraction", "0.6", "--copy-fraction", "0.6"]))


def test_full_softmax_loss_is_plain_cross_entropy_and_weights_reweigh_it(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 0)
    assert len(data.used) == tokenizer.vocab_size
    model = init_model(me.ModelConfig.tiny(), 0)
    rows = torch.from_numpy(data.train[:2 * 33].reshape(2, 33).astype(np.int64))
    with torch.no_grad():
        plain = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten(), reduction="none")
        assert restricted_loss(model, rows, data).item() == pytest.approx(plain.mean().item(), rel=1e-5)
        weights = torch.ones(2, 32)
        weights[0, :16] = 4.0
        expected = (plain * weights.flatten()).sum() / weights.sum()
        assert restricted_loss(model, rows, data, weights).item() == pytest.approx(expected.item(), rel=1e-5)


def test_fine_tuning_starts_from_the_given_checkpoint():
    model = init_model(me.ModelConfig.tiny(), 0)
    load_init(model, DEFAULT_DIR)
    shipped = me.load_model(DEFAULT_DIR, verbose=False)
    assert all(torch.equal(p, shipped.state_dict()[n]) for n, p in model.named_parameters())


def test_unigram_copy_rows_repeat_tokens_drawn_from_the_stream(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    args = parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1", "--copy-tokens", "unigram"])
    rows, _ = data.batch(3, args)
    assert np.isin(rows[:, 1:].numpy(), data.train).all() and not (rows[:, 1:] == 1).any()
    uniform, _ = data.batch(3, parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1", "--steps", "10"]))
    assert not torch.equal(rows, uniform)
    for row in rows[:, 1:]:
        period = next(p for p in range(8, 65) if torch.equal(row[p:], row[:-p]))
        assert 8 <= period <= 64


def test_copy_first_weight_weighs_exactly_the_first_span(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    args = parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1", "--copy-first-weight", "0"])
    rows, weights = data.batch(5, args)
    for row, weight in zip(rows[:, 1:], weights):
        period = next(p for p in range(8, 65) if torch.equal(row[p:], row[:-p]))
        assert (weight[:period] == 0).all() and (weight[period:] == 1).all()
    assert torch.equal(rows, data.batch(5, parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1"]))[0])


def test_text_copy_rows_repeat_a_passage_of_the_stream(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    rows, _ = data.batch(2, parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1", "--copy-tokens", "text"]))
    text = data.train.tobytes()
    for row in rows[:, 1:].numpy().astype(np.int32):
        period = next(p for p in range(8, 65) if np.array_equal(row[p:], row[:-p]))
        assert row[:period].tobytes() in text                             # consecutive tokens of the stream


def test_copy_kinds_take_turns_row_by_row(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    args = parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1", "--copy-tokens", "uniform", "text"])
    rows, _ = data.batch(2, args)
    vocab = set(data.copy_vocab(2, args).tolist())
    text = data.train.tobytes()
    for k, row in enumerate(rows[:, 1:].numpy().astype(np.int32)):
        period = next(p for p in range(8, 65) if np.array_equal(row[p:], row[:-p]))
        if k % 2:
            assert row[:period].tobytes() in text                          # a passage of the stream
        else:
            assert set(row.tolist()) <= vocab                               # random draws from the copy vocabulary


def test_phrase_copy_rows_repeat_a_jumble_of_short_runs_of_the_stream(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    rows, _ = data.batch(4, parse_args(["--batch", "4", "--seq", "128", "--copy-fraction", "1",
                                        "--copy-tokens", "phrases"]))
    text = data.train.tobytes()
    for row in rows[:, 1:].numpy().astype(np.int32):
        period = next(p for p in range(8, 65) if np.array_equal(row[p:], row[:-p]))
        assert row[:2].tobytes() in text                                  # it opens with a run of the stream
        assert row[:period].tobytes() not in text                         # but the span is not one passage


def test_unseen_loss_is_minus_log_of_the_mass_left_to_seen_types():
    from mistral_edu.training.train import unseen_loss
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2]], [[0.9, 0.05, 0.05]]]))            # (2, 1, 3)
    expected = -(math.log(1 - 0.2) + math.log(1 - 0.05)) / 2
    assert math.isclose(unseen_loss(logits, torch.tensor([2])).item(), expected, rel_tol=1e-5)
    assert unseen_loss(torch.tensor([[[0.0, -50.0]]]), torch.tensor([1])).item() < 1e-15


def test_unseen_weight_needs_the_full_softmax(tokenizer, tmp_path):
    data = synthetic_data(tokenizer, tmp_path, 8000)
    rows, weights = data.batch(0, parse_args(["--batch", "2", "--seq", "128"]))
    with pytest.raises(ValueError, match="full softmax"):
        restricted_loss(init_model(me.ModelConfig.tiny(), 0), rows, data, weights, unseen_weight=1.0)
