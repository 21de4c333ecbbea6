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
from .verdict import Case, Verdict, as_pair, as_tensor, attempt, check, judge_tensors

TIED = 0.01   # induction scores this close to the best are a tie: which head leads depends on the sample

__all__ = ["check_head_entropy", "check_induction_head", "check_induction_scores", "check_previous_token_scores",
           "model_induction_scores", "repeated_tokens"]

PREVIOUS_TOKEN_SCORES = register(Exercise(
    name="previous_token_scores", notebook="08", difficulty=1, minutes=10,
    task="write previous_token_scores(pattern): for pattern (batch, heads, q, k), each head's mean attention from "
         "query i to key i-1, over batch and queries i >= 1",
    hints=("a previous-token head sends query i's attention to key i-1: those entries form the diagonal just "
           "below the main one; query 0 has no previous token",
           "read that diagonal out of the last two dimensions, then average it over the batch and the positions,"
           " keeping one number per head"),
    solution='''def previous_token_scores(pattern):
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))''',
))

HEAD_ENTROPY = register(Exercise(
    name="head_entropy", notebook="08", difficulty=2, minutes=10,
    task="write head_entropy(pattern): each head's mean over batch and queries of -sum_k p log p (natural log, "
         "masked keys with p = 0 contribute 0)",
    hints=("entropy measures how spread out a row is: 0 when a head looks at one key, log(k) when it spreads "
           "evenly over k keys; a masked key has probability 0 and adds nothing",
           "compute each row's entropy over its keys, making the terms with probability 0 count as zero rather "
           "than NaN; then average over the batch and the queries, keeping one number per head"),
    solution='''def head_entropy(pattern):
    plogp = torch.where(pattern > 0, pattern * pattern.log(), torch.zeros_like(pattern))
    return (-plogp.sum(-1)).mean(dim=(0, -1))''',
))

INDUCTION_SCORES = register(Exercise(
    name="induction_scores", notebook="09, 10", difficulty=2, minutes=15,
    task="write induction_scores(pattern, period): on BOS + period tokens + the same again, each head's mean "
         "attention from a second-copy query i to key i - period + 1",
    hints=("an induction head, at the second copy of a token, looks at what FOLLOWED its first copy: that token "
           "is the prediction",
           "the second copy's queries are positions period+1 .. 2*period; for each, pick the key one past its "
           "first copy with index tensors, and average over the batch and those queries"),
    solution='''def induction_scores(pattern, period):
    q = torch.arange(period + 1, 2 * period + 1)                 # the second copy's queries
    return pattern[..., q, q - period + 1].mean(dim=(0, -1))     # the token after the first copy''',
))

INDUCTION_HEAD = register(Exercise(
    name="induction_head", notebook="10", difficulty=3, minutes=25, takes_function=False,
    task="find the loaded model's strongest induction head on the checker's tokens and give it as (layer, head) "
         f"(any head within {TIED} of the best score counts: such a gap is sampling noise)",
    hints=("run the model once on the repeated tokens, score every layer's pattern with your induction_scores, "
           "and take the best of all (layer, head) pairs",
           "cache only the attention patterns, score them layer by layer into one (n_layers, n_heads) grid, find"
           " the largest entry of the whole grid and turn its flat index back into a row and a column"),
    solution='''def find_induction_head(model, tokens, period):
    _, cache = model.run_with_cache(tokens, names=lambda n: n.endswith("hook_pattern"))
    scores = torch.stack([induction_scores(cache["pattern", layer], period)
                          for layer in range(model.cfg.n_layers)])          # (n_layers, n_heads)
    return divmod(int(scores.argmax()), model.cfg.n_heads)''',
))


def _random_pattern(seed: int, batch: int = 2, heads: int = 3, seq: int = 7, queries: int | None = None
                    ) -> torch.Tensor:
    """A causal pattern (batch, heads, queries, seq); queries < seq are the last positions, as with a KV cache."""
    queries = seq if queries is None else queries
    scores = torch.randn(batch, heads, queries, seq, generator=torch.Generator().manual_seed(seed))
    future = torch.ones(queries, seq, dtype=torch.bool).triu(seq - queries + 1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)     # (batch, heads, queries, seq)


def _pattern_case(seed: int, batch: int, heads: int, seq: int, queries: int | None = None, *extra) -> Case:
    pattern = _random_pattern(seed, batch, heads, seq, queries)
    shape = tuple(pattern.shape)
    return Case(f"a pattern of shape {shape}" + (" (queries != keys, as with a KV cache)" if shape[2] != shape[3] else ""),
                (pattern, *extra), None)


def _diag_mean(p: torch.Tensor, offset: int, dims=(0, -1)) -> torch.Tensor:
    return p.diagonal(offset=offset, dim1=-2, dim2=-1).mean(dim=dims)


PREVIOUS_TOKEN_SLIPS = {
    "that is the main diagonal (attention to the token itself): the previous token is one key to the left":
        lambda c: _diag_mean(c.args[0], 0),
    "that is a sum: average over the positions (and batch), so scores are in [0, 1]":
        lambda c: c.args[0].diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0),
    "you included query 0, which has no previous token (its 'key -1' wraps round to the last key, which the mask "
    "hides): average over queries 1 .. q-1":
        lambda c: c.args[0].diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0) / c.args[0].shape[-2],
    "that is the attention to the first token (key 0, the sink): the previous token is key i - 1":
        lambda c: c.args[0][..., 1:, 0].mean(dim=(0, -1)),
    "that is the key AFTER each query (offset +1), which a causal head never sees": lambda c: _diag_mean(c.args[0], 1),
    "you averaged over the heads: the score is one number per head, averaged over batch and queries":
        lambda c: _diag_mean(c.args[0], -1, dims=(1, -1)),
}


def check_previous_token_scores(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(pattern (batch, heads, q, k)) -> (heads,) mean attention on the key just before each query."""
    cases = [_pattern_case(4, 2, 3, 7), _pattern_case(8, 4, 2, 5)]
    for case in cases:
        case.expected = previous_token_score(case.args[0])

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, PREVIOUS_TOKEN_SLIPS)

    return check(PREVIOUS_TOKEN_SCORES, fn, verify, "previous-token scores per head")


def _plogp(p: torch.Tensor, log=torch.log) -> torch.Tensor:
    return torch.where(p > 0, p * log(p.clamp_min(1e-30)), torch.zeros_like(p))


HEAD_ENTROPY_SLIPS = {
    "the sign is flipped: entropy is MINUS sum p log p (it is never negative)": lambda c: -c.expected,
    "you used log2 (bits); use the natural log (nats) here": lambda c: c.expected / math.log(2),
    "you summed over the queries instead of averaging: the score is the mean entropy of a row":
        lambda c: (-_plogp(c.args[0]).sum(-1)).sum(-1).mean(0),
    "you divided the sum over queries by the number of KEYS (or summed each key's column): average each query's "
    "row entropy over the queries (q and k differ once a cache holds earlier tokens)": lambda c: (-_plogp(c.args[0]).sum(-1)).sum(-1).mean(0) / c.args[0].shape[-1],
    "you averaged p log p over the keys: a row's entropy is the SUM over its keys":
        lambda c: (-_plogp(c.args[0]).mean(-1)).mean(dim=(0, -1)),
}


def check_head_entropy(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(pattern) -> (heads,) mean over batch and queries of -sum_k p log p, on a square and a non-square pattern."""
    cases = [_pattern_case(5, 2, 3, 7), _pattern_case(9, 1, 2, 8, 3)]
    for case in cases:
        case.expected = head_entropy(case.args[0])

    def verify(fn) -> str | None:
        if any(torch.isnan(as_tensor(attempt(fn, *case.args)).double()).any() for case in cases):
            return "you got NaN: masked keys have p = 0 and 0 * log(0) is NaN in floats; count those terms as 0"
        return judge_tensors(fn, cases, HEAD_ENTROPY_SLIPS)

    return check(HEAD_ENTROPY, fn, verify, "0 for a head that looks at one token, log(k) for a uniform one")


def _second_copy(p: torch.Tensor, period: int, offset: int, start: int | None = None) -> torch.Tensor:
    """Mean attention from second-copy queries to key i - period + offset (queries from `start`)."""
    q = torch.arange(period + 1 if start is None else start, 2 * period + 1)
    return p[..., q, q - period + offset].mean(dim=(0, -1))


INDUCTION_SLIPS = {
    "that is the earlier copy of the SAME token (i - period, a duplicate-token head); an induction head looks one "
    "further, at i - period + 1": lambda c: _second_copy(c.args[0], c.args[1], 0),
    "that is the previous token (i - 1): a previous-token head, not an induction head":
        lambda c: _second_copy(c.args[0], c.args[1], c.args[1] - 1),
    "you averaged over every query, including the first copy where nothing can be predicted":
        lambda c: _diag_mean(c.args[0], -(c.args[1] - 1)),
    "your queries start one too early (at position period, the last token of the first copy): the second copy "
    "is positions period+1 .. 2*period": lambda c: _second_copy(c.args[0], c.args[1], 1, start=c.args[1]),
    "that is two tokens after the first copy (i - period + 2): the prediction is the token right after it":
        lambda c: _second_copy(c.args[0], c.args[1], 2),
    "that is a sum over the queries: average them, so scores are in [0, 1]":
        lambda c: _second_copy(c.args[0], c.args[1], 1) * c.args[1],
}


def check_induction_scores(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> Verdict:
    """fn(pattern, period) -> (heads,) induction scores on repeated_tokens() sequences of two periods."""
    cases = [_pattern_case(6, 2, 3, 11, None, 5), _pattern_case(10, 1, 4, 7, None, 3)]
    for case in cases:
        case.label += f" with period {case.args[1]}"
        case.expected = induction_score(*case.args)

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, INDUCTION_SLIPS)

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

    Heads within TIED of the best are accepted: on the embedded default the two best differ by a few
    thousandths, and which one leads changes with the sampled tokens.
    """

    def verify(a) -> str | None:
        layer, head = as_pair(a)
        scores = model_induction_scores(model, period, batch, seed)          # (n_layers, n_heads)
        n_layers, n_heads = scores.shape
        flat = int(scores.argmax())
        best = divmod(flat, n_heads)
        top = float(scores.max())
        if 0 <= layer < n_layers and 0 <= head < n_heads and float(scores[layer, head]) >= top - TIED:
            return None
        if (head, layer) == best:
            return "you have the right head with layer and head swapped: answer (layer, head)"
        if (layer - 1, head - 1) == best:
            return "you counted from 1: layers and heads are numbered from 0"
        if (layer, head) == divmod(flat, n_layers) and n_layers != n_heads:
            return (f"you unflattened the argmax with n_layers ({n_layers}); each row of the (layer, head) grid holds "
                    f"n_heads ({n_heads}) scores")
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            return f"({layer}, {head}) is not a head of this model ({n_layers} layers x {n_heads} heads)"
        if (layer, head) == divmod(int(scores.argmin()), n_heads):
            return "that is the WEAKEST induction head: the strongest has the highest score"
        if head == int(scores[layer].argmax()):
            return (f"head {head} is the best of layer {layer} only; the best scores {top:.3f}: compare the heads of "
                    "every layer")
        return (f"head ({layer}, {head}) scores {float(scores[layer, head]):.3f} on these tokens, and the strongest "
                f"head scores {top:.3f}")

    return check(INDUCTION_HEAD, answer, verify, "that is the model's strongest induction head")
