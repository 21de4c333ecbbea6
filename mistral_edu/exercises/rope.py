"""RoPE exercises (notebooks 03 and 10): Mistral's rotation, Hugging Face's rotate-half form, wavelengths.

Every reference comes from the package's apply_rope, rope_rotations and rope_inverse_frequencies.
The rotate-half form is Mistral's rotation seen through the channel permutation that the checkpoint
conversion applies to wq and wk (permute_for_hf): the lesson of notebook 03, used as its checker.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..checkpoints.layouts import permute_for_hf
from ..model import apply_rope, rope_inverse_frequencies, rope_rotations
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, diagnose

__all__ = ["check_rope", "check_rope_rotate_half", "check_wavelength"]

ROPE = register(Exercise(
    name="rope", notebook="10", difficulty=3, minutes=25,
    task="write rope(x, positions, theta) for x (batch, seq, heads, head_dim): rotate each pair of neighbouring "
         "dimensions (2i, 2i+1) at position m by the angle m * theta**(-2i/head_dim)",
    hints=("a pair (a, b) is a point in the plane; rotating it by an angle gives (a cos - b sin, a sin + b cos); "
           "pair i turns theta**(-2i/head_dim) radians per position, so far pairs turn slowly",
           "a, b = x[..., 0::2], x[..., 1::2]; angles = torch.outer(positions, freqs) is (seq, head_dim/2), add "
           "axes to broadcast over batch and heads; put the rotated pairs back in place with "
           "torch.stack([a2, b2], -1).flatten(-2)"),
    solution='''def rope(x, positions, theta):
    head_dim = x.shape[-1]
    freqs = theta ** (-torch.arange(0, head_dim, 2).float() / head_dim)   # (head_dim/2,)
    angles = torch.outer(positions.float(), freqs)[None, :, None, :]      # (1, seq, 1, head_dim/2)
    cos, sin = angles.cos(), angles.sin()
    a, b = x[..., 0::2], x[..., 1::2]                                     # (batch, seq, heads, head_dim/2)
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)   # pairs back in place''',
))

ROPE_ROTATE_HALF = register(Exercise(
    name="rope_rotate_half", notebook="03", difficulty=3, minutes=20,
    task="write rope_hf(x, positions, theta) for x (seq, head_dim) in Hugging Face's rotate-half form, pairing "
         "channel i with channel i + head_dim/2",
    hints=("the same rotation as Mistral's, only the pairs are (i, i + d/2): x * cos + rotate_half(x) * sin, where "
           "cos and sin are repeated for both halves",
           "angles = positions[:, None] * theta ** (-arange(0, d, 2) / d), then cat([angles, angles], -1); "
           "rotate_half(x) = cat([-x[..., d/2:], x[..., :d/2]], -1): note the minus sign"),
    solution='''def rope_hf(x, positions, theta):
    d = x.shape[-1]
    angles = positions.double()[:, None] * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (seq, d/2)
    cos = torch.cat([angles.cos(), angles.cos()], -1).to(x.dtype)                                     # (seq, d)
    sin = torch.cat([angles.sin(), angles.sin()], -1).to(x.dtype)
    rotated = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)                                      # rotate_half(x)
    return x * cos + rotated * sin''',
))

WAVELENGTH = register(Exercise(
    name="wavelength", notebook="03", difficulty=1, minutes=5,
    task="write wavelength(i, head_dim, theta): how many tokens RoPE pair i needs for one full turn",
    hints=("a wavelength is a full turn (2 pi radians) divided by how far the pair turns per token",
           "pair i turns theta ** (-2 * i / head_dim) radians per token"),
    solution='''def wavelength(i, head_dim, theta):
    return 2 * math.pi * theta ** (2 * i / head_dim)''',
))


def mistral_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """The package's rotation of x (..., seq, heads, head_dim) at these positions."""
    return apply_rope(x, rope_rotations(positions, x.shape[-1], theta))


def to_half_layout(x: torch.Tensor) -> torch.Tensor:
    """Reorder the last dim from pairs (2i, 2i+1) to halves (i, i + d/2), as permute_for_hf does to wq rows."""
    rows = x.reshape(-1, x.shape[-1]).T                          # (head_dim, everything else)
    return permute_for_hf(rows, 1).T.reshape(x.shape)            # (..., head_dim)


def rotate_half_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Hugging Face's rotate-half RoPE of x (batch, seq, heads, head_dim): Mistral's in permuted channels."""
    inverse = to_half_layout(torch.arange(x.shape[-1])).argsort()    # (head_dim,): halves back to pairs
    return to_half_layout(mistral_rope(x[..., inverse], positions, theta))


def rope_rotate_half_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """The rotate-half RoPE of x (seq, head_dim), the shape notebook 03's exercise uses."""
    return rotate_half_rope(x[None, :, None], positions, theta)[0, :, 0]     # (seq, head_dim)


def check_rope(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(x, positions, theta) rotates (batch, seq, heads, head_dim) in Mistral's (2i, 2i+1) pairing."""
    x = torch.randn(1, 6, 2, 16, generator=torch.Generator().manual_seed(1))   # (1, 6, 2, 16)
    positions = torch.arange(3, 9)          # not starting at 0, so "ignored the positions" shows
    theta = 1e6

    def verify(fn) -> str | None:
        got = attempt(fn, x.clone(), positions.clone(), theta)
        return diagnose(got, mistral_rope(x, positions, theta), {
            "you rotated the right pairs but returned them as [all first halves, all second halves]: re-interleave "
            "them with torch.stack([a2, b2], -1).flatten(-2) so pair i lands back on dims (2i, 2i+1)":
                lambda: to_half_layout(mistral_rope(x, positions, theta)),
            "you paired dimension i with i + head_dim/2 (rotate-half, Hugging Face's layout); Mistral pairs "
            "neighbours (2i, 2i+1)": lambda: rotate_half_rope(x, positions, theta),
            "you rotated the wrong way: use +angle, (a cos - b sin, a sin + b cos)":
                lambda: apply_rope(x, rope_rotations(positions, 16, theta).conj()),
            "the frequencies are off: pair i turns by theta**(-2i/head_dim), with i counting pairs":
                lambda: apply_rope(x, torch.polar(torch.ones(6, 8), torch.outer(
                    positions.float(), rope_inverse_frequencies(32, theta)[:8]))),
            "the rotation ignores the positions given (it starts at 0): use the positions argument":
                lambda: mistral_rope(x, torch.arange(6), theta),
            "theta is 1e4 here (v0.1's): use the theta argument": lambda: mistral_rope(x, positions, 1e4),
        })

    return check(ROPE, fn, verify, "your rotation matches apply_rope")


def check_rope_rotate_half(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(x, positions, theta): the rotate-half form of RoPE with x (seq, head_dim)."""
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))          # (6, 16)
    positions = torch.tensor([0, 1, 2, 7, 100, 5000])
    rotations = rope_rotations(positions, 16, 1e6)                               # (6, 8)
    cos = torch.cat([rotations.real, rotations.real], -1)                        # (6, 16)
    sin = torch.cat([rotations.imag, rotations.imag], -1)                        # (6, 16)

    def verify(fn) -> str | None:
        for theta in (1e6, 1e4):
            got = attempt(fn, x.clone(), positions.clone(), theta)
            problem = diagnose(got, rope_rotate_half_reference(x, positions, theta), {
                "that is Mistral's interleaved pairing (2i, 2i+1), the complex form; the rotate-half form pairs "
                "i with i + d/2": lambda: mistral_rope(x[None, :, None], positions, theta)[0, :, 0],
                "rotate_half needs a minus sign on the second half before swapping":
                    lambda: x * cos + torch.cat([x[..., 8:], x[..., :8]], -1) * sin,
                "the rotation ignores the positions given: use positions, not 0, 1, 2, ...":
                    lambda: rope_rotate_half_reference(x, torch.arange(6), theta),
                "theta is hard-coded to 1e6: use the theta argument":
                    lambda: rope_rotate_half_reference(x, positions, 1e6),
            }, atol=1e-4)
            if problem:
                return f"theta = {theta:g}: {problem}"
        return None

    return check(ROPE_ROTATE_HALF, fn, verify, "rotate-half RoPE, as Hugging Face's modeling_mistral computes it")


def check_wavelength(fn: Callable[[int, int, float], float] | None) -> Verdict:
    """fn(i, head_dim, theta): the wavelength, in tokens, of RoPE pair i."""

    def verify(fn) -> str | None:
        for theta in (1e4, 1e6):
            turns = rope_inverse_frequencies(128, theta).double()                # (64,) radians per token
            halved = rope_inverse_frequencies(256, theta).double()[:64]          # theta ** (-i/128)
            for i in (1, 32, 63, 0):     # pair 0 last: there 1 / frequency = frequency = 1
                got = float(attempt(fn, i, 128, theta))
                expected = 2 * math.pi / float(turns[i])
                if math.isclose(got, expected, rel_tol=1e-5):
                    continue
                mistakes = {1 / float(turns[i]): "that is 1 / frequency: a full turn is 2 * pi radians, not 1",
                            float(turns[i]): "that is the frequency (radians per token), not the wavelength",
                            2 * math.pi / float(halved[i]):
                                "the exponent is 2i / head_dim: pair i holds channels 2i and 2i+1"}
                return next((why for value, why in mistakes.items() if math.isclose(got, value, rel_tol=1e-5)),
                            f"wavelength({i}, 128, {theta:g}) returned {got:.6g}, expected {expected:.6g}")
        return None

    return check(WAVELENGTH, fn, verify, "pair 0 turns every 6.3 tokens; pair 63 of theta 1e6 takes about 5 million")
