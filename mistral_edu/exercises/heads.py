"""Head-score exercises (notebooks 08, 09, 10): previous-token scores, entropy, induction scores and heads.

The references are mistral_edu.analysis's head scores, the functions the lessons' grids are drawn
with; the induction checkers score the sequences analysis.repeated_random_tokens makes.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..analysis.heads import head_entropy, induction_score, induction_scores, previous_token_score, repeated_random_tokens
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, diagnose

TIED = 0.01   # induction scores this close to the best are a tie: which head leads depends on the sample

__all__ = ["check_head_entropy", "check_induction_head", "check_induction_scores", "check_previous_token_scores",
           "model_induction_scores", "repeated_tokens"]

PREVIOUS_TOKEN_SCORES = register(Exercise(
    name="previous_token_scores", notebook="08", difficulty=1, minutes=10,
    task="write previous_token_scores(pattern): for pattern (batch, heads, q, k), each head's mean attention from "
         "query i to key i-1, over batch and queries i >= 1",
    hints=("the entries pattern[b, h, i, i-1] form the diagonal just below the main one; query 0 has no previous "
           "token",
           "pattern.diagonal(offset=-1, dim1=-2, dim2=-1) is (batch, heads, seq-1); average over batch and positions"),
    solution='''def previous_token_scores(pattern):
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))''',
))

HEAD_ENTROPY = register(Exercise(
    name="head_entropy", notebook="08", difficulty=2, minutes=10,
    task="write head_entropy(pattern): each head's mean over batch and queries of -sum_k p log p (natural log, "
         "masked keys with p = 0 contribute 0)",
    hints=("entropy measures how spread out a row is: 0 when a head looks at one key, log(k) when it spreads evenly "
           "over k keys; 0 * log 0 counts as 0",
           "torch.where(p > 0, p * p.log(), 0) avoids the NaN of 0 * log(0); sum over the keys, negate, average over "
           "batch and queries"),
    solution='''def head_entropy(pattern):
    plogp = torch.where(pattern > 0, pattern * pattern.log(), torch.zeros_like(pattern))
    return (-plogp.sum(-1)).mean(dim=(0, -1))''',
))

INDUCTION_SCORES = register(Exercise(
    name="induction_scores", notebook="09, 10", difficulty=2, minutes=15,
    task="write induction_scores(pattern, period): on BOS + period tokens + the same again, each head's mean "
         "attention from a second-copy query i to key i - period + 1",
    hints=("an induction head, at the second copy of a token, looks at what FOLLOWED its first copy: that token is "
           "the prediction",
           "queries i = period+1 .. 2*period; take pattern[..., i, i - period + 1] with index tensors and average "
           "over batch and those queries"),
    solution='''def induction_scores(pattern, period):
    q = torch.arange(period + 1, 2 * period + 1)                 # the second copy's queries
    return pattern[..., q, q - period + 1].mean(dim=(0, -1))     # the token after the first copy''',
))

INDUCTION_HEAD = register(Exercise(
    name="induction_head", notebook="10", difficulty=3, minutes=25, takes_function=False,
    task="find the loaded model's strongest induction head on the checker's tokens and give it as (layer, head) "
         f"(any head within {TIED} of the best score counts: such a gap is sampling noise)",
    hints=("run the model once on the repeated tokens, score every layer's pattern with your induction_scores, and "
           "take the best of all (layer, head) pairs",
           "model.run_with_cache(tokens, names=lambda n: n.endswith('hook_pattern')); cache['pattern', layer]; stack "
           "the scores into (n_layers, n_heads) and divmod(int(scores.argmax()), n_heads)"),
    solution='''def find_induction_head(model, tokens, period):
    _, cache = model.run_with_cache(tokens, names=lambda n: n.endswith("hook_pattern"))
    scores = torch.stack([induction_scores(cache["pattern", layer], period)
                          for layer in range(model.cfg.n_layers)])          # (n_layers, n_heads)
    return divmod(int(scores.argmax()), model.cfg.n_heads)''',
))


def _random_pattern(seed: int, batch: int = 2, heads: int = 3, seq: int = 7) -> torch.Tensor:
    scores = torch.randn(batch, heads, seq, seq, generator=torch.Generator().manual_seed(seed))
    future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)     # (batch, heads, q, k)


def check_previous_token_scores(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(pattern (batch, heads, q, k)) -> (heads,) mean attention on the key just before each query."""
    pattern = _random_pattern(4)
    seq = torch.arange(7)

    def verify(fn) -> str | None:
        return diagnose(attempt(fn, pattern.clone()), previous_token_score(pattern), {
            "that is the main diagonal (attention to the token itself): use offset=-1":
                lambda: pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1)),
            "that is a sum: average over the positions (and batch), so scores are in [0, 1]":
                lambda: pattern.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0),
            "you included query 0, whose 'previous token' wraps around to the last key":
                lambda: pattern[..., seq, seq - 1].mean(dim=(0, -1)),
        })

    return check(PREVIOUS_TOKEN_SCORES, fn, verify, "previous-token scores per head")


def check_head_entropy(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(pattern) -> (heads,) mean over batch and queries of -sum_k p log p (natural log)."""
    pattern = _random_pattern(5)

    def verify(fn) -> str | None:
        got = attempt(fn, pattern.clone())
        reference = head_entropy(pattern)
        if isinstance(got, torch.Tensor) and got.shape == reference.shape and torch.isnan(got).any():
            return "you got NaN: masked keys have p = 0 and 0 * log(0) is NaN in floats; treat it as 0"
        return diagnose(got, reference, {
            "the sign is flipped: entropy is MINUS sum p log p (it is never negative)": lambda: -reference,
            "you used log2 (bits); use the natural log (nats) here": lambda: reference / math.log(2),
            "you summed over the queries instead of averaging: the score is the mean entropy of a row":
                lambda: reference * 7,
        })

    return check(HEAD_ENTROPY, fn, verify, "0 for a head that looks at one token, log(k) for a uniform one")


def check_induction_scores(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> Verdict:
    """fn(pattern, period) -> (heads,) induction scores on a repeated_tokens() sequence."""
    period = 5
    pattern = _random_pattern(6, seq=2 * period + 1)
    q = torch.arange(period + 1, 2 * period + 1)

    def verify(fn) -> str | None:
        return diagnose(attempt(fn, pattern.clone(), period), induction_score(pattern, period), {
            "that is the earlier copy of the SAME token (i - period, a duplicate-token head); an induction head "
            "looks one further, at i - period + 1": lambda: pattern[..., q, q - period].mean(dim=(0, -1)),
            "that is the previous token (i - 1): a previous-token head, not an induction head":
                lambda: pattern[..., q, q - 1].mean(dim=(0, -1)),
            "you averaged over every query, including the first copy where nothing can be predicted":
                lambda: pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1).mean(dim=(0, -1)),
        })

    return check(INDUCTION_SCORES, fn, verify, "induction scores per head")


def repeated_tokens(vocab_size: int, period: int = 20, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """BOS, then `period` random tokens, then the same tokens again: (batch, 1 + 2 * period).

    The tokens avoid BOS/EOS, the byte pieces and the rarest-trained ids at the start of the vocabulary.
    """
    low = min(1000, vocab_size // 2)
    return repeated_random_tokens(torch.arange(low, vocab_size), batch, period, seed)


def model_induction_scores(model, period: int = 20, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """(n_layers, n_heads) induction scores of a model on repeated_tokens()."""
    return induction_scores(model, repeated_tokens(model.cfg.vocab_size, period, batch, seed).to(model.device), period)


def check_induction_head(answer: tuple[int, int] | None, model, period: int = 20, batch: int = 4,
                         seed: int = 0) -> Verdict:
    """answer = (layer, head): a head with the highest induction score on repeated_tokens(...), ties included.

    Heads within TIED of the best are accepted: on the embedded default 3.2 and 3.6 differ by about 0.002,
    and which one leads changes with the sampled tokens.
    """

    def verify(a) -> str | None:
        if not (isinstance(a, tuple) and len(a) == 2 and all(isinstance(i, int) for i in a)):
            return f"answer with a (layer, head) tuple of ints, got {a!r}"
        scores = model_induction_scores(model, period, batch, seed)          # (n_layers, n_heads)
        n_layers, n_heads = scores.shape
        layer, head = a
        best = divmod(int(scores.argmax()), n_heads)
        if 0 <= layer < n_layers and 0 <= head < n_heads and float(scores[layer, head]) >= float(scores.max()) - TIED:
            return None
        if (head, layer) == best:
            return "you have the right head with layer and head swapped: answer (layer, head)"
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            return f"({layer}, {head}) is not a head of this model ({n_layers} layers x {n_heads} heads)"
        if a == divmod(int(scores.argmin()), n_heads):
            return "that is the WEAKEST induction head: take the argmax, not the argmin"
        if head == int(scores[layer].argmax()):
            return (f"head {head} is the best of layer {layer} only; the best scores {float(scores.max()):.3f}: "
                    "compare the heads of every layer")
        return (f"head ({layer}, {head}) scores {float(scores[layer, head]):.3f}, but the best scores "
                f"{float(scores.max()):.3f} - did you take the argmax of the flattened (layer, head) grid and unflatten it?")

    return check(INDUCTION_HEAD, answer, verify, "that is the model's strongest induction head")
