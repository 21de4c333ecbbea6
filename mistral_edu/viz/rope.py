"""Rotary position embeddings: a pair of channels turning with position, the wavelengths of every
pair, and why q.k depends only on the distance m - n."""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps

from .figure import finish, new_figure, tidy


def _rotated(vector, angle: float) -> tuple[float, float]:
    return (vector[0] * math.cos(angle) - vector[1] * math.sin(angle),
            vector[0] * math.sin(angle) + vector[1] * math.cos(angle))


def rotation_figure(vector=(1.0, 0.3), step: float = math.pi / 8, positions: int = 6, save=None):
    """One pair of channels rotated by position * step: the same arrow, turned further for later tokens."""
    fig = new_figure(4.2, 4.2)
    ax = tidy(fig.add_subplot())
    colours = colormaps["viridis"](np.linspace(0, 0.9, positions))
    for m in range(positions):
        x, y = _rotated(vector, m * step)
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colours[m], lw=2))
        ax.text(x * 1.12, y * 1.12, f"m={m}", fontsize=8, ha="center", va="center", color=colours[m])
    limit = 1.3 * math.hypot(*vector)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("channel 2i")
    ax.set_ylabel("channel 2i+1")
    ax.set_title(f"A pair rotated by m x {step:.3f} rad")
    return finish(fig, save)


def wavelengths_figure(head_dim: int, thetas=(1e4, 1e6), contexts=(4096, 32768), save=None):
    """Wavelength 2*pi/freq of every RoPE pair, in tokens, for several bases."""
    from ..model.rope import rope_inverse_frequencies
    fig = new_figure(7, 3.5)
    ax = tidy(fig.add_subplot())
    for theta, marker in zip(thetas, "os^"):
        wavelengths = (2 * math.pi / rope_inverse_frequencies(head_dim, theta)).numpy()
        ax.plot(range(head_dim // 2), wavelengths, marker=marker, markersize=3, label=f"theta = {theta:.0e}")
    for context, style in zip(contexts, (":", "--")):
        ax.axhline(context, color="grey", linestyle=style, linewidth=1)
        ax.text(0, context * 1.15, f"{context:,} tokens", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel(f"pair index i (head_dim {head_dim} -> {head_dim // 2} pairs)")
    ax.set_ylabel("wavelength (tokens)")
    ax.set_title("RoPE wavelengths: one full turn every ... tokens")
    ax.legend(fontsize=8)
    return finish(fig, save)


def score_grid_figure(scores: torch.Tensor, by_distance: torch.Tensor, save=None):
    """scores (positions, positions) of one rotated q and k at every pair of positions, and score vs distance."""
    fig = new_figure(8.5, 3.5)
    ax1, ax2 = fig.subplots(1, 2)
    image = ax1.imshow(scores.numpy(), cmap="RdBu_r", interpolation="nearest")
    ax1.set_xlabel("key position n")
    ax1.set_ylabel("query position m")
    ax1.set_title("q_m . k_n: constant along diagonals")
    fig.colorbar(image, ax=ax1, fraction=0.046, label="q . k")
    tidy(ax2)
    ax2.plot(by_distance.numpy())
    ax2.set_xscale("symlog")
    ax2.set_xlabel("distance m - n (tokens)")
    ax2.set_ylabel("q . k (same q = k = ones)")
    ax2.set_title("...and slowly decaying with distance")
    return finish(fig, save)


def rope_pair_figure(q_pair, k_pair, m: int, n: int, freq: float, save=None):
    """One pair of channels of q (rotated by m*freq) and k (rotated by n*freq) in the plane; dashed: unrotated."""
    fig = new_figure(4, 4)
    ax = tidy(fig.add_subplot())
    for vec, pos, colour, name in ((q_pair, m, "#e15759", "q"), (k_pair, n, "#4e79a7", "k")):
        x, y = _rotated(vec, pos * freq)
        ax.annotate("", xy=(vec[0], vec[1]), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1, alpha=0.35, linestyle="--"))
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2.5))
        ax.text(x * 1.15, y * 1.15, f"{name} at {pos}", color=colour, ha="center", fontsize=9)
    limit = 1.35 * max(math.hypot(*q_pair), math.hypot(*k_pair))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    gap = ((m - n) * freq) % (2 * math.pi)
    ax.set_title(f"freq {freq:.3g} rad/token: relative rotation (m - n) x freq = {math.degrees(gap):.0f} deg", fontsize=9)
    return finish(fig, save)
