"""RMSNorm exercises (notebooks 02 and 10): the norm itself, and the length of its output.

The reference is the package's rms_norm, float32 statistic included; the float16 case uses values
whose squares overflow float16, so skipping the float32 step is caught on the CPU too (PyTorch's
CPU bfloat16 mean accumulates in float32 internally, so bfloat16 inputs would not catch it).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..config import ModelConfig
from ..model import rms_norm
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, compare_tensors, diagnose

__all__ = ["check_normalized_length", "check_rms_norm"]

RMS_NORM = register(Exercise(
    name="rms_norm", notebook="02, 10", difficulty=2, minutes=15,
    task="write rms_norm(x, weight, eps): x divided by its root mean square over the last dimension, times "
         "weight, with the statistic computed in float32 and the result in x's dtype",
    hints=("RMSNorm is LayerNorm without the mean: divide by sqrt(mean(x**2) + eps), eps inside the root, "
           "then scale by the learnt gain; float16 and bfloat16 squares overflow or lose precision, so the "
           "statistic is computed in float32",
           "x32 = x.float(); mean of x32.pow(2) over dim -1 with keepdim=True; multiply x32 by torch.rsqrt(that + "
           "eps); cast back with .type_as(x) and only then multiply by weight"),
    solution='''def rms_norm(x, weight, eps):
    x32 = x.float()                                                       # float16 squares overflow
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)   # (..., dim)
    return normed.type_as(x) * weight                                     # (..., dim), x's dtype''',
))

NORMALIZED_LENGTH = register(Exercise(
    name="normalized_length", notebook="02", difficulty=1, minutes=5, takes_function=False,
    task="give the L2 length of RMSNorm's output (all gains 1) for the real model's dim",
    hints=("RMSNorm makes the mean of the squares of the output equal to 1; the length is about the sum",
           "sum(y**2) = dim * mean(y**2) = dim; the length is the square root of that sum"),
    solution="normalized_length = math.sqrt(real.dim)   # 64 for dim 4096",
))


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Small activations away from zero mean (eps and centring both show), a gain, and float16 overflow."""
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(2, 5, 16, generator=g) * 3 + 1) * 1e-3          # (2, 5, 16): rms ~ 3e-3, mean ~ 1e-3
    weight = torch.rand(16, generator=g) + 0.5                          # (16,)
    loud = (torch.randn(2, 16, generator=g) * 300).half()              # (2, 16): 300**2 overflows float16
    return x, weight, loud


def check_rms_norm(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(x, weight, eps) equal to the package's rms_norm, in float32 and on overflowing float16 input."""
    x, weight, loud = _inputs()
    eps = 1e-5

    def verify(fn) -> str | None:
        got = attempt(fn, x.clone(), weight.clone(), eps)
        centred = x - x.mean(-1, keepdim=True)                          # (2, 5, 16)
        problem = diagnose(got, rms_norm(x, weight, eps), {
            "the output ignores eps: add it inside the square root, mean(x**2) + eps": lambda: rms_norm(x, weight, 0.0),
            "you divided by sqrt(mean(x)): RMSNorm needs the mean of the SQUARES, x.pow(2).mean(-1)":
                lambda: x * torch.rsqrt(x.mean(-1, keepdim=True) + eps) * weight,
            "you subtracted the mean (that is LayerNorm); RMSNorm does not centre":
                lambda: centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * weight,
            "the weight (gain) is missing: multiply by weight at the end": lambda: rms_norm(x, torch.ones(16), eps),
            "eps is outside the root: it must be sqrt(mean(x**2) + eps), not sqrt(mean(x**2)) + eps":
                lambda: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight,
            "you normalised over the wrong dimension: the mean runs over the last one (dim=-1)":
                lambda: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight,
        }, atol=1e-6)
        if problem:
            return problem
        return _float16_problem(attempt(fn, loud.clone(), weight.half(), eps), rms_norm(loud, weight.half(), eps))

    return check(RMS_NORM, fn, verify, "your RMSNorm equals the package's, in float32 and on float16 input")


def _float16_problem(got: Any, expected: torch.Tensor) -> str | None:
    """The float16 case: overflowing squares reveal a missing float32 step, the dtype a missing cast."""
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and (
            (~torch.isfinite(got)).any() or (got == 0).all()):
        return ("with float16 input of size ~300 your output is inf, NaN or zero: 300**2 overflows float16 (max "
                "65504), so the squares must be summed in float32 (x.float()) and cast back after")
    if isinstance(got, torch.Tensor) and got.dtype != expected.dtype:
        return (f"float16 in should give float16 out, got {got.dtype}: cast the float32 result back with "
                ".type_as(x) before multiplying by weight")
    problem = compare_tensors(got, expected, atol=1e-2, rtol=1e-2)
    return f"float16 case: {problem}" if problem else None


def check_normalized_length(answer: float | None) -> Verdict:
    """The L2 length of RMSNorm's output (gain 1) for the real model's dim."""
    dim = ModelConfig.mistral_7b_instruct_v02().dim
    y = rms_norm(torch.randn(dim, generator=torch.Generator().manual_seed(0)), torch.ones(dim), 0.0)  # (dim,)
    expected = float(y.norm())

    def verify(x) -> str | None:
        x = float(x)
        if math.isclose(x, expected, rel_tol=1e-3):
            return None
        wrong = {1.0: "1 is the root-mean-square of the output; its length (L2 norm) is larger",
                 float(dim): f"{dim} is the squared length: take its square root",
                 1 / expected: "that is 1/sqrt(dim): the length grows with the number of entries, it does not shrink"}
        return next((why for value, why in wrong.items() if math.isclose(x, value, rel_tol=1e-3)),
                    f"{x:.4g} is not it")

    return check(NORMALIZED_LENGTH, answer, verify,
                 f"every normalised vector lies on the sphere of radius sqrt({dim}) = {expected:.0f}")
