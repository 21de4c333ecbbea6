"""Generation exercises (notebook 06): v0.1's rolling-buffer slot, top-p (nucleus) filtering, a whole sampler.

The top-p reference is the package's top_p_filter, the very function generate() samples through.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..generation import top_p_filter
from .catalogue import Exercise, register
from .verdict import Case, Verdict, as_tensor, attempt, check, judge_numbers, judge_tensors

__all__ = ["check_rolling_slot", "check_sampler", "check_top_p"]

ROLLING_SLOT = register(Exercise(
    name="rolling_slot", notebook="06", difficulty=1, minutes=5,
    task="write rolling_slot(position, window): the slot of a rolling buffer of `window` slots that position "
         "is written to",
    hints=("the buffer keeps only the last `window` positions: each new position overwrites the oldest slot, "
           "going round and round",
           "positions 0 .. window-1 fill slots 0 .. window-1; position window goes back to slot 0: what is left "
           "after taking out whole laps of the buffer"),
    solution='''def rolling_slot(position, window):
    return position % window''',
))

TOP_P = register(Exercise(
    name="top_p", notebook="06", difficulty=2, minutes=15,
    task="write top_p_filter(probs, p): probs (1-D) with only the nucleus kept, renormalised, in vocabulary order",
    hints=("the nucleus is the smallest set of most likely tokens whose mass reaches p: keep a token while the "
           "mass of the tokens ranked BEFORE it is still below p (so the token that crosses p is kept)",
           "rank the probabilities from most to least likely, remembering where each came from; for each, the "
           "running mass of the ones ranked before it decides whether it stays; put the kept ones back in "
           "vocabulary order and rescale them so they sum to 1"),
    solution='''def top_p_filter(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs                  # mass of the more likely tokens
    sorted_probs = torch.where(before < p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)  # back in vocabulary order
    return kept / kept.sum()''',
))


def check_rolling_slot(fn: Callable[[int, int], int] | None) -> Verdict:
    """fn(position, window) -> the rolling-buffer slot that position is written to."""
    cases = [Case(f"position {pos}, window {window}", (pos, window), pos % window)
             for pos, window in [(0, 4), (3, 4), (4, 4), (9, 4), (5000, 4096), (4095, 4096)]]
    slips = {"the buffer does not stop at its last slot: it wraps round to slot 0":
                 lambda c: min(c.args[0], c.args[1] - 1),
             "off by one: position 0 is written to slot 0": lambda c: (c.args[0] + 1) % c.args[1],
             "slots count from 0 (0 .. window - 1), not from 1": lambda c: c.args[0] % c.args[1] + 1,
             "that is how many times the buffer wrapped; the slot is what is left over": lambda c: c.args[0] // c.args[1],
             "a buffer of `window` slots has no slot `window` or beyond: wrap round": lambda c: c.args[0],
             "the buffer wraps after `window` slots, not `window - 1`": lambda c: c.args[0] % (c.args[1] - 1)}

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, rel_tol=0, what="a slot number")

    return check(ROLLING_SLOT, fn, verify, "positions wrap around the window")


def _nucleus(probs: torch.Tensor, p: float, keep: str = "before < p", renormalise: bool = True,
             descending: bool = True) -> torch.Tensor:
    """The top-p filter with one rule changed: which tokens are kept, whether the rest is renormalised."""
    sorted_probs, order = probs.sort(descending=descending)
    total = sorted_probs.cumsum(-1)
    kept_mask = {"before < p": total - sorted_probs < p, "before <= p": total - sorted_probs <= p,
                 "total <= p": total <= p}[keep]
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * kept_mask)
    return kept / kept.sum() if renormalise and kept.sum() > 0 else kept


TOP_P_SLIPS = {
    "you dropped the token that crosses p: keep tokens while the mass BEFORE them is < p":
        lambda c: _nucleus(*c.args, keep="total <= p"),
    "you kept a token whose predecessors already reach p exactly: the nucleus is complete once their mass reaches "
    "p, so keep tokens while the mass before them is strictly below p": lambda c: _nucleus(*c.args, keep="before <= p"),
    "the kept probabilities do not sum to 1: renormalise them": lambda c: _nucleus(*c.args, renormalise=False),
    "the tokens are out of place: the kept probabilities go back to their vocabulary ids":
        lambda c: _nucleus(*c.args).sort(descending=True).values,
    "you sorted in increasing order: the nucleus takes the MOST likely tokens first":
        lambda c: _nucleus(*c.args, descending=False),
}


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(probs, p) -> probs with only the nucleus kept, renormalised to sum to 1.

    One distribution is exact in binary (halves and quarters), so the mass of the kept tokens lands
    on p exactly: that boundary tells "before < p" from "before <= p".
    """
    plain = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])
    exact = torch.tensor([0.125, 0.5, 0.0625, 0.25, 0.0625])
    cases = [Case(f"probs {[round(float(v), 4) for v in probs]} with p={p}", (probs, p), top_p_filter(probs, p))
             for probs, p in [(plain, 0.5), (plain, 0.8), (plain, 1.0), (exact, 0.75), (exact, 0.5)]]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, TOP_P_SLIPS)

    return check(TOP_P, fn, verify, "this is the nucleus generate() samples from")


SAMPLER = register(Exercise(
    name="sampler", notebook="06", difficulty=2, minutes=20,
    task="write next_token_probs(logits, temperature, top_k, top_p): the distribution a sampler draws the next token "
         "from, for logits (vocab,): temperature 0 puts everything on the argmax; otherwise the logits are divided by "
         "the temperature, only the top_k most likely tokens are kept (top_k=0 keeps all), then only the nucleus of "
         "mass top_p (as top_p_filter), each step renormalised",
    hints=("temperature reshapes the distribution (below 1 sharper, above 1 flatter, 0 greedy); top-k and top-p "
           "then cut its tail, one by a count, one by a mass, and what survives is rescaled to sum to 1",
           "handle temperature 0 on its own; otherwise scale the logits, turn them into probabilities, zero all but "
           "the k largest when k is set, rescale, apply the nucleus rule to what is left, and rescale again"),
    solution='''def next_token_probs(logits, temperature, top_k, top_p):
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.numel()).float()   # greedy
    probs = (logits / temperature).softmax(-1)                          # (vocab,)
    if top_k:
        kth = probs.topk(top_k).values[-1]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    ranked, order = probs.sort(descending=True)
    before = ranked.cumsum(-1) - ranked                                 # mass of the more likely tokens
    ranked = torch.where(before < top_p, ranked, torch.zeros_like(ranked))
    kept = torch.zeros_like(probs).scatter(-1, order, ranked)
    return kept / kept.sum()''',
))


def sampling_distribution(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                          scale: str = "divide", rescale_k: bool = True) -> torch.Tensor:
    """The distribution generate() would sample from, with top-k added, and one choice changeable for the slips.

    rescale_k=False measures the nucleus on top-k's survivors as they are, not renormalised: the same as
    applying top-p to the full distribution before top-k, so one message names both.
    """
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.numel()).double()
    scaled = logits.double() / temperature if scale == "divide" else logits.double() * temperature
    probs = scaled.softmax(-1)                                                     # (vocab,)
    if top_k:
        probs = torch.where(probs >= probs.topk(top_k).values[-1], probs, torch.zeros_like(probs))
        probs = probs / probs.sum() if rescale_k else probs
    return top_p_filter(probs, top_p)


SAMPLER_SLIPS = {
    "you multiplied by the temperature: dividing the logits by it is what makes a low temperature sharpen":
        lambda c: sampling_distribution(*c.args, scale="multiply"),
    "the nucleus was measured on the full distribution (top-p before top-k, or top-k's survivors not rescaled): "
    "cut to the top k first, rescale them to sum to 1, then take the nucleus of that":
        lambda c: sampling_distribution(*c.args, rescale_k=False),
    "the temperature is ignored: it divides the logits before the softmax":
        lambda c: sampling_distribution(c.args[0], 1.0 if c.args[1] else 0, *c.args[2:]),
    "top-k is ignored: keep only the top_k most likely tokens when top_k > 0":
        lambda c: sampling_distribution(c.args[0], c.args[1], 0, c.args[3]),
    "top-p is ignored: after top-k, keep only the nucleus of mass top_p": lambda c: sampling_distribution(*c.args[:3], 1.0),
}


def check_sampler(fn: Callable[[torch.Tensor, float, int, float], torch.Tensor] | None) -> Verdict:
    """fn(logits, temperature, top_k, top_p) -> the (vocab,) distribution sampled from, on five settings."""
    logits = torch.tensor([1.0, 3.2, -0.5, 2.4, 0.3, 2.9, -1.2, 1.7])
    settings = [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.5, 0, 0.8), (1.0, 4, 0.6), (2.0, 5, 0.9), (0.0, 0, 1.0)]
    cases = [Case(f"temperature {t:g}, top_k {k}, top_p {p:g}", (logits, t, k, p), sampling_distribution(logits, t, k, p))
             for t, k, p in settings]

    def verify(fn) -> str | None:
        greedy = as_tensor(attempt(fn, *cases[-1].args))
        if greedy.is_floating_point() and not torch.isfinite(greedy).all():
            return ("temperature 0 gave inf or NaN (a division by 0): temperature 0 is greedy decoding, all the "
                    "probability on the argmax")
        return judge_tensors(fn, cases, SAMPLER_SLIPS)

    return check(SAMPLER, fn, verify, "the distribution your sampler draws from is generate()'s, with top-k added")
