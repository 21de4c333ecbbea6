"""Distributions, not anecdotes: a measurement repeated over many draws of whatever varies, and its spread.

One prompt, one split or one random baseline can be lucky. A number that carries a claim is measured
over at least MIN_DRAWS draws of the unit that varies (prompts, seeds, resampled splits, random
directions), reported as a mean with its spread, and asserted on the distribution: the mean and the
10th percentile, so that a few good draws cannot carry a bad majority.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

__all__ = ["MIN_DRAWS", "Distribution", "over_draws"]

MIN_DRAWS = 20      # fewer draws than this give a 10th percentile that is one or two draws, not a tail
LOW, HIGH = 0.1, 0.9


@dataclass(frozen=True)
class Distribution:
    """One number measured over many draws: values (draws,), with the statistics a claim is read from."""

    values: torch.Tensor    # (draws,) float32, in draw order

    @classmethod
    def of(cls, values, min_draws: int = MIN_DRAWS) -> "Distribution":
        """Wrap a sequence or 1-D tensor of per-draw values; refuses fewer than min_draws or a non-finite value."""
        values = torch.as_tensor(values, dtype=torch.float32).detach().cpu()
        if values.dim() != 1:
            raise ValueError(f"a Distribution holds one value per draw, shape (draws,); "
                             f"got shape {tuple(values.shape)}")
        if len(values) < min_draws:
            raise ValueError(f"{len(values)} draws is too few to read a spread from: measure at least {min_draws} "
                             "(more prompts, seeds or splits), or pass min_draws= to say why fewer are enough")
        if not torch.isfinite(values).all():
            raise ValueError(f"{int((~torch.isfinite(values)).sum())} draw(s) gave a non-finite value: "
                             "find which input made the measurement fail before summarising it")
        return cls(values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    def quantile(self, q: float) -> float:
        """The q-quantile of the draws (linear interpolation between neighbouring draws)."""
        return float(torch.quantile(self.values, q))

    @property
    def low(self) -> float:
        """The 10th percentile: nine draws in ten are at least this."""
        return self.quantile(LOW)

    @property
    def high(self) -> float:
        """The 90th percentile: nine draws in ten are at most this."""
        return self.quantile(HIGH)

    @property
    def minimum(self) -> float:
        return float(self.values.min())

    @property
    def maximum(self) -> float:
        return float(self.values.max())

    def holds(self, mean_at_least: float | None = None, low_at_least: float | None = None,
              mean_at_most: float | None = None, high_at_most: float | None = None) -> bool:
        """Whether the distribution meets every bound given: the mean and the 10th (or 90th) percentile.

        Asserting on the mean alone lets a few extreme draws carry a failing majority; the percentile
        bound says that nine draws in ten pass too.
        """
        if all(bound is None for bound in (mean_at_least, low_at_least, mean_at_most, high_at_most)):
            raise ValueError("give at least one bound: mean_at_least=, low_at_least=, mean_at_most= or high_at_most=")
        return ((mean_at_least is None or self.mean >= mean_at_least)
                and (low_at_least is None or self.low >= low_at_least)
                and (mean_at_most is None or self.mean <= mean_at_most)
                and (high_at_most is None or self.high <= high_at_most))

    def summary(self, fmt: str = "{:.2f}") -> str:
        """'mean m (10th-90th percentile a to b, min c, max d; n draws)', every number printed with fmt."""
        f = fmt.format
        return (f"mean {f(self.mean)} (10th-90th percentile {f(self.low)} to {f(self.high)}, "
                f"min {f(self.minimum)}, max {f(self.maximum)}; {len(self)} draws)")


def over_draws(measure: Callable, draws: torch.Tensor | Sequence, batch: int = 32,
               min_draws: int = MIN_DRAWS) -> Distribution:
    """Run measure over the draws, batch at a time, and return the per-draw values as a Distribution.

    draws is a tensor whose first dimension is the draw (e.g. prompts (draws, seq)) or a sequence of
    draws (seeds, splits). measure takes a slice of draws, the same kind of object, and returns one
    value per draw in it, (len(slice),): a model runs many prompts in one forward pass, so a lesson
    measures twenty draws for little more than the cost of one.
    """
    if batch < 1:
        raise ValueError(f"batch must be a positive number of draws per call, got {batch}")
    if len(draws) < min_draws:
        raise ValueError(f"{len(draws)} draws is too few to read a spread from: draw at least {min_draws} "
                         "(more prompts, seeds or splits), or pass min_draws= to say why fewer are enough")
    values = []
    for start in range(0, len(draws), batch):
        part = draws[start:start + batch]
        value = torch.as_tensor(measure(part), dtype=torch.float32).detach().cpu().reshape(-1)  # (len(part),)
        if len(value) != len(part):
            raise ValueError(f"measure returned {len(value)} values for {len(part)} draws: it must return one "
                             "value per draw, shape (draws,)")
        values.append(value)
    return Distribution.of(torch.cat(values), min_draws=min_draws)                         # (draws,)
