"""The head-detection scores on hand-built attention patterns whose right answer is known."""
import pytest
import torch

from mistral_edu.analysis import heads


def one_hot_pattern(seq: int, target, n_heads: int = 1) -> torch.Tensor:
    """(1, n_heads, seq, seq): every query i puts all its weight on key target(i)."""
    pattern = torch.zeros(1, n_heads, seq, seq)
    for i in range(seq):
        pattern[0, :, i, target(i)] = 1.0
    return pattern


def uniform_causal_pattern(seq: int, n_heads: int = 1) -> torch.Tensor:
    """Each query spreads its attention evenly over itself and every earlier key."""
    mask = torch.ones(seq, seq).tril()
    return (mask / mask.sum(-1, keepdim=True)).expand(1, n_heads, seq, seq).clone()


def test_previous_token_head_scores_one_and_others_zero():
    prev = one_hot_pattern(10, lambda i: max(i - 1, 0))
    sink = one_hot_pattern(10, lambda i: 0)
    both = torch.cat([prev, sink], dim=1)                                      # (1, 2, 10, 10)
    assert heads.previous_token_score(both).tolist() == pytest.approx([1.0, 1 / 9])
    assert heads.first_token_score(both).tolist() == pytest.approx([1 / 9, 1.0])


def test_uniform_attention_scores_are_the_expected_averages():
    seq = 5
    expected = sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1)           # weight on i-1 (and on 0)
    pattern = uniform_causal_pattern(seq)
    assert heads.previous_token_score(pattern).item() == pytest.approx(expected)
    assert heads.first_token_score(pattern).item() == pytest.approx(expected)


def test_induction_and_duplicate_heads_on_a_repeated_span():
    span = 6
    seq = 1 + 2 * span
    induction = one_hot_pattern(seq, lambda i: i - span + 1 if i > span else 0)
    duplicate = one_hot_pattern(seq, lambda i: i - span if i > span else 0)
    both = torch.cat([induction, duplicate], dim=1)
    assert heads.induction_score(both, span).tolist() == pytest.approx([1.0, 0.0])
    assert heads.duplicate_token_score(both, span).tolist() == pytest.approx([0.0, 1.0])
    half = 0.5 * induction + 0.5 * duplicate
    assert heads.induction_score(half, span).item() == pytest.approx(0.5)


def test_scores_average_over_the_batch():
    prev = one_hot_pattern(6, lambda i: max(i - 1, 0))
    self_attn = one_hot_pattern(6, lambda i: i)
    assert heads.previous_token_score(torch.cat([prev, self_attn])).item() == pytest.approx(0.5)


def test_bad_shapes_and_spans_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="batch, heads, q, k"):
        heads.previous_token_score(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="1 \\+ 2 \\* span"):
        heads.induction_score(one_hot_pattern(10, lambda i: 0), 6)


def test_repeated_random_tokens_layout_and_determinism():
    tokens = heads.repeated_random_tokens([5, 6, 7, 8], batch=3, span=4, seed=1)
    assert tokens.shape == (3, 9)
    assert (tokens[:, 0] == 1).all()
    assert torch.equal(tokens[:, 1:5], tokens[:, 5:])
    assert set(tokens[:, 1:].flatten().tolist()) <= {5, 6, 7, 8}
    assert torch.equal(tokens, heads.repeated_random_tokens([5, 6, 7, 8], batch=3, span=4, seed=1))


def test_top_heads_names_layer_and_head():
    scores = torch.tensor([[0.1, 0.9], [0.7, 0.2]])
    assert heads.top_heads(scores, 2) == [("0.1", pytest.approx(0.9)), ("1.0", pytest.approx(0.7))]


def test_model_level_scores_use_the_models_own_patterns():
    """On a random model the table is (n_layers, n_heads) and equals the pattern function per layer."""
    from mistral_edu import ModelConfig, Transformer
    cfg = ModelConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2, vocab_size=50)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    tokens = torch.randint(2, 50, (2, 9))
    scores = heads.previous_token_scores(model, tokens)
    assert scores.shape == (2, 4)
    patterns = heads.attention_patterns(model, tokens)
    assert torch.allclose(scores[1], heads.previous_token_score(patterns[1]))
    assert ((scores > 0) & (scores < 1)).all()
