"""Generation exercises (notebook 06): v0.1's rolling-buffer slot, and top-p (nucleus) filtering.

The top-p reference is the package's top_p_filter, the very function generate() samples through.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..generation import top_p_filter
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, diagnose

__all__ = ["check_rolling_slot", "check_top_p"]

ROLLING_SLOT = register(Exercise(
    name="rolling_slot", notebook="06", difficulty=1, minutes=5,
    task="write rolling_slot(position, window): the slot of a rolling buffer of `window` slots that position "
         "is written to",
    hints=("the buffer keeps only the last `window` positions: each new position overwrites the oldest slot, "
           "going round and round",
           "positions 0 .. window-1 fill slots 0 .. window-1; position window goes back to slot 0: a remainder"),
    solution='''def rolling_slot(position, window):
    return position % window''',
))

TOP_P = register(Exercise(
    name="top_p", notebook="06", difficulty=2, minutes=15,
    task="write top_p_filter(probs, p): probs (1-D) with only the nucleus kept, renormalised, in vocabulary order",
    hints=("the nucleus is the smallest set of most likely tokens whose mass reaches p: keep a token while the "
           "mass of the tokens ranked BEFORE it is still below p (so the token that crosses p is kept)",
           "probs.sort(descending=True) gives the values and their ids; cumsum minus the value itself is the mass "
           "before; zero the rest, scatter back to vocabulary order, divide by the sum"),
    solution='''def top_p_filter(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs                  # mass of the more likely tokens
    sorted_probs = torch.where(before < p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)  # back in vocabulary order
    return kept / kept.sum()''',
))


def check_rolling_slot(fn: Callable[[int, int], int] | None) -> Verdict:
    """fn(position, window) -> the rolling-buffer slot that position is written to."""

    def verify(fn) -> str | None:
        for pos, window in [(0, 4), (3, 4), (4, 4), (9, 4), (5000, 4096), (4095, 4096)]:
            got = attempt(fn, pos, window)
            if got == pos % window:
                continue
            mistakes = {min(pos, window - 1): "the buffer does not stop at its last slot: it wraps round to slot 0",
                        (pos + 1) % window: "off by one: position 0 is written to slot 0",
                        pos // window: "that is how many times the buffer wrapped; the slot is the remainder",
                        pos: f"slot {pos} does not exist in a buffer of {window} slots: wrap round"}
            why = mistakes.get(got, f"got {got}, expected {pos % window}")
            return f"position {pos}, window {window}: {why}"
        return None

    return check(ROLLING_SLOT, fn, verify, "positions wrap around the window")


def _inclusive_cut(probs: torch.Tensor, p: float) -> torch.Tensor:
    """The usual slip: keep a token only while the mass up to AND including it is <= p."""
    sorted_probs, order = probs.sort(descending=True)
    sorted_probs = torch.where(sorted_probs.cumsum(-1) <= p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum() if kept.sum() > 0 else kept


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(probs, p) -> probs with only the nucleus kept, renormalised to sum to 1."""
    probs = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])

    def verify(fn) -> str | None:
        for p in (0.5, 0.8, 1.0):
            got = attempt(fn, probs.clone(), p)
            reference = top_p_filter(probs, p)
            problem = diagnose(got, reference, {
                "you dropped the token that crosses p: keep tokens while the mass BEFORE them is < p":
                    lambda: _inclusive_cut(probs, p),
                "the kept probabilities do not sum to 1: divide by their sum": lambda: probs * (reference > 0),
                "the tokens are out of place: scatter the kept probabilities back to their vocabulary ids":
                    lambda: reference.sort(descending=True).values,
            })
            if problem:
                return f"top_p={p}: {problem}"
        return None

    return check(TOP_P, fn, verify, "this is the nucleus generate() samples from")
