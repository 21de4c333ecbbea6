"""A measurement over many draws: its statistics, its batching, the bounds asserted on it, its figures."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from mistral_edu import analysis, viz
from mistral_edu.analysis import Distribution


def test_statistics_are_those_of_the_draws():
    dist = Distribution.of(torch.arange(1, 21))                  # 1 .. 20
    assert len(dist) == 20
    assert dist.mean == pytest.approx(10.5)
    assert dist.low == pytest.approx(torch.quantile(torch.arange(1.0, 21), 0.1).item())   # 2.9
    assert dist.high == pytest.approx(18.1)
    assert (dist.minimum, dist.maximum) == (1.0, 20.0)
    assert dist.summary() == "mean 10.50 (10th-90th percentile 2.90 to 18.10, min 1.00, max 20.00; 20 draws)"


def test_a_lucky_few_pass_the_mean_but_not_the_tenth_percentile():
    lucky = Distribution.of([0.2] * 4 + [1.0] * 16)             # mean 0.84, but one draw in five fails
    assert lucky.holds(mean_at_least=0.8)
    assert not lucky.holds(mean_at_least=0.8, low_at_least=0.5)
    assert Distribution.of([0.9] * 20).holds(mean_at_least=0.8, low_at_least=0.5)
    assert not Distribution.of([0.0] * 16 + [5.0] * 4).holds(high_at_most=1.0)
    with pytest.raises(ValueError, match="at least one bound"):
        lucky.holds()


def test_over_draws_batches_in_order_and_returns_one_value_per_draw():
    seen = []

    def measure(rows):                                           # rows: (batch, 3)
        seen.append(len(rows))
        return rows.float().sum(1)
    draws = torch.arange(25 * 3).reshape(25, 3)
    dist = analysis.over_draws(measure, draws, batch=8)
    assert seen == [8, 8, 8, 1]
    assert torch.equal(dist.values, draws.float().sum(1))
    seeds = analysis.over_draws(lambda part: [s * 2 for s in part], list(range(20)), batch=1)
    assert seeds.values.tolist() == [2.0 * s for s in range(20)]


def test_too_few_draws_or_a_wrong_measurement_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 20"):
        analysis.over_draws(lambda part: part, torch.ones(5))
    assert len(analysis.over_draws(lambda part: part, torch.ones(5), min_draws=5)) == 5
    with pytest.raises(ValueError, match="one value per draw"):
        analysis.over_draws(lambda part: part.sum(), torch.ones(20, 2))
    with pytest.raises(ValueError, match="non-finite"):
        Distribution.of([1.0] * 19 + [float("nan")])
    with pytest.raises(ValueError, match="shape \\(draws,\\)"):
        Distribution.of(torch.ones(20, 2))
    with pytest.raises(ValueError, match="batch must be"):
        analysis.over_draws(lambda part: part, torch.ones(20), batch=0)


def test_spread_chart_shows_every_draw_mean_and_tenth_percentile(tmp_path):
    dists = {"task": Distribution.of(torch.linspace(0.6, 0.9, 20)), "control": Distribution.of(torch.full((24,), 0.5))}
    fig = viz.spread_chart(dists, "accuracy", "two distributions", reference={"chance": 0.5},
                           save=tmp_path / "spread.png")
    assert isinstance(fig, Figure) and (tmp_path / "spread.png").stat().st_size > 2000
    ax = fig.axes[0]
    dots = [c for c in ax.collections if type(c).__name__ == "PathCollection"]      # scatter, not hlines
    assert [len(c.get_offsets()) for c in dots] == [20, 24]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["task", "control"]
    assert {"mean", "10th percentile", "chance"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    with pytest.raises(ValueError, match="at least one"):
        viz.spread_chart({}, "y", "t")


def test_spread_curves_draw_a_band_from_the_tenth_to_the_ninetieth_percentile():
    dists = [Distribution.of(torch.linspace(0, 1, 21) + x) for x in range(3)]
    fig = viz.spread_curves([0, 1, 2], {"steered": dists}, "scale", "score", "title")
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.5, 1.5, 2.5])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.1) and band.max() == pytest.approx(2.9)
    with pytest.raises(ValueError, match="one per x"):
        viz.spread_curves([0, 1], {"steered": dists}, "scale", "score", "title")
