"""RoPE exercises (notebooks 03 and 10): Mistral's rotation in real arithmetic, and wavelengths.

Every reference comes from the package's apply_rope, rope_rotations and rope_inverse_frequencies.
The rotate-half slip is Mistral's rotation seen through the channel permutation that the checkpoint
conversion applies to wq and wk (permute_for_hf): the lesson of notebook 03, used to name the slip.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..checkpoints import permute_for_hf
from ..model import apply_rope, rope_inverse_frequencies, rope_rotations
from .catalogue import Exercise, register
from .verdict import Case, Verdict, as_tensor, attempt, check, compare_tensors, judge_numbers, judge_tensors

__all__ = ["check_rope", "check_wavelength"]

ROPE = register(Exercise(
    name="rope", notebook="03, 10", difficulty=3, minutes=25,
    task="write rope(x, positions, theta) for x (batch, seq, heads, head_dim): rotate each pair of neighbouring "
         "dimensions (2i, 2i+1) at position m by the angle m * theta**(-2i/head_dim)",
    hints=("a pair (a, b) is a point in the plane; rotating it by an angle turns it around the origin; pair i "
           "turns by a fixed angle per position, fast for the first pairs and slowly for the last",
           "compute each pair's angle at each position in float32 (bfloat16 cannot hold position 30,000 "
           "exactly), split x into the even and odd channels, rotate, put every pair back in its two "
           "neighbouring slots, and return x's dtype"),
    solution='''def rope(x, positions, theta):
    head_dim = x.shape[-1]
    freqs = theta ** (-torch.arange(0, head_dim, 2).float() / head_dim)   # (head_dim/2,)
    angles = torch.outer(positions.float(), freqs)[None, :, None, :]      # (1, seq, 1, head_dim/2)
    cos, sin = angles.cos(), angles.sin()
    a, b = x[..., 0::2].float(), x[..., 1::2].float()                     # (batch, seq, heads, head_dim/2)
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], -1)     # (batch, seq, heads, head_dim/2, 2)
    return rotated.flatten(-2).type_as(x)                                 # pairs back in place, x's dtype''',
))

WAVELENGTH = register(Exercise(
    name="wavelength", notebook="03", difficulty=1, minutes=5,
    task="write wavelength(i, head_dim, theta): how many tokens RoPE pair i needs for one full turn",
    hints=("a wavelength is a full turn divided by how far the pair turns per token",
           "pair i turns by theta raised to minus twice i over head_dim radians per token; a full turn is "
           "measured in radians too"),
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


def _freqs_off(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """The rotation with pair i turning theta**(-i/head_dim): i counted as a channel, not a pair."""
    hd = x.shape[-1]
    angles = torch.outer(positions.float(), rope_inverse_frequencies(2 * hd, theta)[:hd // 2])   # (seq, hd/2)
    return apply_rope(x, torch.polar(torch.ones_like(angles), angles))


def _rope_cases() -> list[Case]:
    """Two float32 configurations (positions not from 0, theta 1e6 and 1e4), and bfloat16 at large positions."""
    g = torch.Generator().manual_seed(1)
    specs = [("float32 x (1, 6, 2, 16) at positions 3..8, theta 1e6", torch.randn(1, 6, 2, 16, generator=g),
              torch.arange(3, 9), 1e6),
             ("float32 x (2, 4, 3, 8) at positions [0, 5, 17, 2], theta 1e4", torch.randn(2, 4, 3, 8, generator=g),
              torch.tensor([0, 5, 17, 2]), 1e4)]
    return [Case(label, (x, pos, theta), mistral_rope(x, pos, theta)) for label, x, pos, theta in specs]


BF16_POSITIONS = torch.tensor([100, 4096, 30000])


def _rope_bf16_case() -> Case:
    x = torch.randn(1, 3, 2, 16, generator=torch.Generator().manual_seed(7)).bfloat16()   # (1, 3, 2, 16)
    return Case("bfloat16 x (1, 3, 2, 16) at positions 100, 4096, 30000", (x, BF16_POSITIONS, 1e6),
                mistral_rope(x, BF16_POSITIONS, 1e6))


def _precision_problem(got: torch.Tensor, case: Case, atol: float) -> str | None:
    """A half-precision case: the output keeps x's dtype, and only angles computed in float32 or wider agree."""
    if got.dtype != case.expected.dtype:
        return f"{case.label}: {case.expected.dtype} in should give {case.expected.dtype} out, got {got.dtype}"
    problem = compare_tensors(got, case.expected, atol=atol, rtol=1e-2)
    if problem:
        return (f"{case.label}: right in float32 but not here ({problem}); bfloat16 keeps 8 bits of mantissa, so "
                "position x frequency loses the angle at large positions (30000 is not even a bfloat16 number): "
                "compute the angles and the rotation in float32, and cast only the result back")
    return None


ROPE_SLIPS = {
    "you rotated the right pairs but returned them as [all first halves, all second halves]: re-interleave "
    "them so pair i lands back on dims (2i, 2i+1)": lambda c: to_half_layout(mistral_rope(*c.args)),
    "you paired dimension i with i + head_dim/2 (rotate-half, Hugging Face's layout); Mistral pairs "
    "neighbours (2i, 2i+1)": lambda c: rotate_half_rope(*c.args),
    "you rotated the wrong way: a positive angle turns (a, b) towards (-b, a)":
        lambda c: apply_rope(c.args[0], rope_rotations(c.args[1], c.args[0].shape[-1], c.args[2]).conj()),
    "the frequencies are off: pair i turns by theta**(-2i/head_dim), with i counting pairs":
        lambda c: _freqs_off(*c.args),
    "the rotation ignores the positions given (it counts 0, 1, 2, ...): use the positions argument":
        lambda c: mistral_rope(c.args[0], torch.arange(c.args[0].shape[1]), c.args[2]),
    "theta is hard-coded to 1e6: use the theta argument (v0.1 used 1e4)":
        lambda c: mistral_rope(c.args[0], c.args[1], 1e6),
    "theta is hard-coded to 1e4 (v0.1's): use the theta argument": lambda c: mistral_rope(c.args[0], c.args[1], 1e4),
}


def check_rope(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(x, positions, theta) rotates (batch, seq, heads, head_dim) in Mistral's (2i, 2i+1) pairing."""
    cases, bf16 = _rope_cases(), _rope_bf16_case()

    def verify(fn) -> str | None:
        return (judge_tensors(fn, cases, ROPE_SLIPS)
                or _precision_problem(as_tensor(attempt(fn, *bf16.args)), bf16, atol=0.05))

    return check(ROPE, fn, verify, "your rotation matches apply_rope, in float32 and in bfloat16 at position 30,000")


def check_wavelength(fn: Callable[[int, int, float], float] | None) -> Verdict:
    """fn(i, head_dim, theta): the wavelength, in tokens, of RoPE pair i."""
    cases = [Case(f"wavelength({i}, {hd}, {theta:g})", (i, hd, theta), 2 * math.pi * theta ** (2 * i / hd))
             for i, hd, theta in [(1, 128, 1e4), (32, 128, 1e6), (63, 128, 1e6), (5, 16, 1e4), (0, 128, 1e6)]]
    turns = lambda c: c.args[2] ** (-2 * c.args[0] / c.args[1])          # radians per token
    slips = {
        "that is 1 / frequency: a full turn is 2 * pi radians, not 1": lambda c: 1 / turns(c),
        "that is the frequency (radians per token), not the wavelength": turns,
        "the exponent is 2i / head_dim: pair i holds channels 2i and 2i+1":
            lambda c: 2 * math.pi * c.args[2] ** (c.args[0] / c.args[1]),
        "that is half a turn (pi radians): a full turn is 2 * pi": lambda c: math.pi / turns(c),
        "that counts degrees (360): the angles are in radians, a full turn is 2 * pi": lambda c: 360 / turns(c),
        "that is 2 pi times the frequency: the wavelength is a full turn DIVIDED by the turn per token":
            lambda c: 2 * math.pi * turns(c),
    }

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, rel_tol=1e-5, show="{:.6g}".format)

    return check(WAVELENGTH, fn, verify, "pair 0 turns every 6.3 tokens; pair 63 of theta 1e6 takes about 5 million")
