"""Head-detection scores: how much each attention head behaves like a known kind of head.

Each score is the mean attention weight a head puts where that kind of head would look:
  previous-token  query i -> key i-1, on natural text;
  first-token     query i -> key 0 (the "attention sink"), on natural text;
  induction       on BOS + R + R (R random tokens), a second-half query -> the token after its
                  earlier occurrence (the copy it should predict);
  duplicate-token on the same sequences, a second-half query -> its own earlier occurrence.
The pattern functions take one layer's pattern (batch, heads, q, k) and return (heads,); the model
functions run the model once and return (n_layers, n_heads). Notebooks and the default model's
tests use these same functions.
"""
from __future__ import annotations

import re

import torch

__all__ = [
    "attention_patterns", "previous_token_score", "first_token_score", "induction_score",
    "duplicate_token_score", "previous_token_scores", "first_token_scores", "induction_scores",
    "duplicate_token_scores", "head_entropy", "repeated_random_tokens", "word_token_ids", "top_heads",
]


def _check_pattern(pattern: torch.Tensor) -> None:
    if pattern.dim() != 4 or pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"expected a pattern of shape (batch, heads, q, k) with q == k, got {tuple(pattern.shape)}; "
                         "take it from cache['pattern', layer] of a run without a KV cache")


def _check_span(pattern: torch.Tensor, span: int) -> None:
    if not isinstance(span, int) or span < 2 or pattern.shape[-1] != 1 + 2 * span:
        raise ValueError(f"span {span!r} does not fit a pattern over {pattern.shape[-1]} positions: the "
                         "sequence must be BOS + span tokens + the same span again (1 + 2 * span positions)")


def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """(heads,): mean attention from each position i >= 1 to position i - 1."""
    _check_pattern(pattern)
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).float().mean(dim=(0, -1))


def first_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """(heads,): mean attention from each position i >= 1 to position 0 (the sink)."""
    _check_pattern(pattern)
    return pattern[..., 1:, 0].float().mean(dim=(0, -1))


def head_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """(heads,): mean entropy (nats) of each head's attention rows, 0 log 0 taken as 0.

    0 for a head that looks at one key, log(k) for one that spreads evenly over k keys.
    """
    p = pattern.double()                                                           # (batch, heads, q, k)
    plogp = torch.where(p > 0, p * p.log(), torch.zeros_like(p))
    return (-plogp.sum(-1)).mean(dim=(0, -1)).to(pattern.dtype)                   # (heads,)


def _second_half_offset_score(pattern: torch.Tensor, span: int, offset: int) -> torch.Tensor:
    """Mean attention from second-half query p to key p - span + offset."""
    _check_pattern(pattern)
    _check_span(pattern, span)
    queries = torch.arange(1 + span, 1 + 2 * span)                 # (span,)
    weights = pattern[..., queries, queries - span + offset]         # (batch, heads, span)
    return weights.float().mean(dim=(0, -1))


def induction_score(pattern: torch.Tensor, span: int) -> torch.Tensor:
    """(heads,): mean attention from each second-half token to the token after its first occurrence."""
    return _second_half_offset_score(pattern, span, 1)


def duplicate_token_score(pattern: torch.Tensor, span: int) -> torch.Tensor:
    """(heads,): mean attention from each second-half token to its own first occurrence."""
    return _second_half_offset_score(pattern, span, 0)


@torch.no_grad()
def attention_patterns(model, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's pattern (batch, heads, q, k) for tokens (batch, seq), from model.run_with_cache."""
    names = [f"layers.{i}.attention.hook_pattern" for i in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names=names)
    return [cache["pattern", i] for i in range(model.cfg.n_layers)]


def previous_token_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_heads) previous-token scores on tokens (batch, seq) of natural text."""
    return torch.stack([previous_token_score(p) for p in attention_patterns(model, tokens)])


def first_token_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_heads) first-token (sink) scores on tokens (batch, seq) of natural text."""
    return torch.stack([first_token_score(p) for p in attention_patterns(model, tokens)])


def induction_scores(model, tokens: torch.Tensor, span: int) -> torch.Tensor:
    """(n_layers, n_heads) induction scores on repeated_random_tokens(...) sequences of this span."""
    return torch.stack([induction_score(p, span) for p in attention_patterns(model, tokens)])


def duplicate_token_scores(model, tokens: torch.Tensor, span: int) -> torch.Tensor:
    """(n_layers, n_heads) duplicate-token scores on repeated_random_tokens(...) sequences of this span."""
    return torch.stack([duplicate_token_score(p, span) for p in attention_patterns(model, tokens)])


def repeated_random_tokens(vocab, batch: int, span: int, seed: int = 0, bos_id: int = 1) -> torch.Tensor:
    """(batch, 1 + 2 * span): BOS, then span tokens drawn uniformly from vocab, then the same span again."""
    vocab = torch.as_tensor(vocab, dtype=torch.long)
    if vocab.dim() != 1 or len(vocab) < 2:
        raise ValueError(f"vocab must be a 1-D list of at least 2 token ids, got shape {tuple(vocab.shape)}")
    generator = torch.Generator().manual_seed(seed)
    spans = vocab[torch.randint(len(vocab), (batch, span), generator=generator)]  # (batch, span)
    bos = torch.full((batch, 1), bos_id, dtype=torch.long)                        # (batch, 1)
    return torch.cat([bos, spans, spans], dim=1)                                   # (batch, 1 + 2 * span)


def word_token_ids(tokenizer, text: str, min_count: int = 1) -> list[int]:
    """Ids of the word-initial pieces ("▁" then two or more lower-case letters) in text, min_count+ times.

    A piece qualifies whether it is a whole word ("▁house") or the start of a longer one ("▁coun"):
    drawing from pieces that occur in real text (rather than from the whole vocabulary) keeps the
    induction test about copying, not about tokens the model never saw.
    """
    counts: dict[int, int] = {}
    for i in tokenizer.encode(text, bos=False):
        counts[i] = counts.get(i, 0) + 1
    return sorted(i for i, c in counts.items()
                  if c >= min_count and re.fullmatch(r"▁[a-z]{2,}", tokenizer.id_to_piece(i)))


def top_heads(scores: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
    """The k highest-scoring heads of a (n_layers, n_heads) score table as ("layer.head", score)."""
    n_heads = scores.shape[1]
    values, flat = scores.flatten().topk(min(k, scores.numel()))
    return [(f"{int(i) // n_heads}.{int(i) % n_heads}", float(v)) for v, i in zip(values, flat)]
