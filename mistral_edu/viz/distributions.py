"""Figures of a measurement's spread over many draws: every draw as a dot, the mean and the 10th percentile.

They take analysis.Distribution objects (anything with .values, .mean, .low and .high): a chart of
means alone would hide exactly what a claim over many inputs has to show, how far the draws scatter.
"""
from __future__ import annotations

import torch

from .figure import finish, new_figure, tidy


def _jitter(n: int, width: float = 0.25) -> torch.Tensor:
    """Fixed horizontal offsets for n dots (evenly spread, no randomness): the figure is the same every run."""
    return torch.linspace(-width, width, n) if n > 1 else torch.zeros(1)


def spread_chart(distributions: dict, ylabel: str, title: str, reference: dict[str, float] | None = None,
                 save=None):
    """One column per labelled Distribution: each draw a dot, the mean a bar, the 10th percentile a tick.

    reference draws labelled horizontal lines (a baseline, chance, a threshold the lesson asserts).
    """
    if not distributions:
        raise ValueError("give at least one labelled Distribution to draw")
    fig = new_figure(1.8 + 1.3 * len(distributions), 3.6)
    ax = tidy(fig.add_subplot())
    for k, (label, dist) in enumerate(distributions.items()):
        values = dist.values.sort().values                                       # (draws,)
        ax.scatter(k + _jitter(len(values)).numpy(), values.numpy(), s=12, alpha=0.6, color="tab:blue",
                   label="one draw" if k == 0 else None)
        ax.hlines(dist.mean, k - 0.35, k + 0.35, color="black", linewidth=2, label="mean" if k == 0 else None)
        ax.hlines(dist.low, k - 0.2, k + 0.2, color="tab:red", linewidth=1.5, linestyle="--",
                  label="10th percentile" if k == 0 else None)
    for (name, value), style in zip((reference or {}).items(), (":", "-.", (0, (1, 3)))):
        ax.axhline(value, color="grey", linewidth=1, linestyle=style, label=name)
    ax.set_xticks(range(len(distributions)), list(distributions), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return finish(fig, save)


def spread_curves(x, curves: dict, xlabel: str, ylabel: str, title: str, save=None, ax=None):
    """Lines of means over x, each with a band from the 10th to the 90th percentile of its draws.

    curves: label -> one Distribution per x value. Given ax, draws into it (for a panel of several
    charts) and returns the axes; otherwise returns a new figure.
    """
    if not curves:
        raise ValueError("give at least one labelled list of Distributions to draw")
    x = list(x)
    for label, dists in curves.items():
        if len(dists) != len(x):
            raise ValueError(f"curve {label!r} has {len(dists)} distributions for {len(x)} x values: one per x")
    fig = None
    if ax is None:
        fig = new_figure(6, 3.6)
        ax = fig.add_subplot()
    tidy(ax)
    for label, dists in curves.items():
        line, = ax.plot(x, [d.mean for d in dists], "o-", label=f"{label} (mean)")
        ax.fill_between(x, [d.low for d in dists], [d.high for d in dists], color=line.get_color(), alpha=0.2,
                        label=f"{label} (10th-90th percentile)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax if fig is None else finish(fig, save)
