"""RMSNorm exercises (notebooks 02 and 10): the norm itself, and the length of its output.

The reference is the package's rms_norm, float32 statistic included; the float16 case uses values
whose squares overflow float16, so skipping the float32 step is caught on the CPU too (PyTorch's
CPU bfloat16 mean accumulates in float32 internally, so bfloat16 inputs would not catch it).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import ModelConfig
from ..model import rms_norm
from .catalogue import Exercise, register
from .verdict import Case, Verdict, as_number, as_tensor, attempt, check, compare_tensors, judge_tensors

__all__ = ["check_normalized_length", "check_rms_norm"]

RMS_NORM = register(Exercise(
    name="rms_norm", notebook="10", difficulty=2, minutes=15,
    task="write rms_norm(x, weight, eps): x divided by its root mean square over the last dimension, times "
         "weight, with the statistic computed in float32 and the result in x's dtype",
    hints=("RMSNorm is LayerNorm without the centring: it rescales each vector so its root mean square is 1 (eps"
           " keeps the division safe), then applies a learnt gain; float16 and bfloat16 squares overflow or lose"
           " precision",
           "move x to float32 first, measure each vector's root mean square over the last dimension with eps "
           "inside the root, divide, cast back to x's dtype, and only then apply the gain"),
    solution='''def rms_norm(x, weight, eps):
    x32 = x.float()                                                       # float16 squares overflow
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)   # (..., dim)
    return normed.type_as(x) * weight                                     # (..., dim), x's dtype''',
))

NORMALIZED_LENGTH = register(Exercise(
    name="normalized_length", notebook="02", difficulty=1, minutes=5, takes_function=False,
    task="give the L2 length of RMSNorm's output (all gains 1) for the real model's dim",
    hints=("RMSNorm makes the mean of the squares of the output equal to 1",
           "from the mean of the squares, get their sum (how many entries are there?), and the length is its "
           "square root"),
    solution="normalized_length = math.sqrt(real.dim)   # 64 for dim 4096",
))


def _cases() -> list[Case]:
    """Two float32 configurations (small activations where eps shows, and a large eps), away from zero mean."""
    g = torch.Generator().manual_seed(2)
    small = (torch.randn(2, 5, 16, generator=g) * 3 + 1) * 1e-3        # (2, 5, 16): rms ~ 3e-3, mean ~ 1e-3
    wide = torch.randn(3, 24, generator=g) + 0.5                        # (3, 24)
    cases = []
    for label, x, eps in [("x (2, 5, 16) with eps 1e-5", small, 1e-5), ("x (3, 24) with eps 0.01", wide, 1e-2)]:
        weight = torch.rand(x.shape[-1], generator=g) + 0.5             # (dim,)
        cases.append(Case(label, (x, weight, eps), rms_norm(x, weight, eps)))
    return cases


def _loud() -> torch.Tensor:
    """float16 activations of size ~300: their squares overflow float16 (max 65504)."""
    return (torch.randn(2, 16, generator=torch.Generator().manual_seed(3)) * 300).half()   # (2, 16)


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(-1, keepdim=True)


RMS_NORM_SLIPS = {
    "the output ignores eps: add it inside the square root, mean(x**2) + eps":
        lambda c: rms_norm(c.args[0], c.args[1], 0.0),
    "you divided by sqrt(mean(x)): RMSNorm needs the mean of the SQUARES of x":
        lambda c: c.args[0] * torch.rsqrt(c.args[0].mean(-1, keepdim=True) + c.args[2]) * c.args[1],
    "you subtracted the mean (that is LayerNorm); RMSNorm does not centre":
        lambda c: rms_norm(_centred(c.args[0]), c.args[1], c.args[2]),
    "the weight (gain) is missing: the normalised vector is scaled by the learnt gain at the end":
        lambda c: rms_norm(c.args[0], torch.ones_like(c.args[1]), c.args[2]),
    "eps is outside the root: it belongs inside, next to the mean of the squares":
        lambda c: c.args[0] / (c.args[0].pow(2).mean(-1, keepdim=True).sqrt() + c.args[2]) * c.args[1],
    "you normalised over the wrong dimension: the mean runs over the last one (the features)":
        lambda c: c.args[0] * torch.rsqrt(c.args[0].pow(2).mean(0, keepdim=True) + c.args[2]) * c.args[1],
    "you divided by the mean of the squares without its square root":
        lambda c: c.args[0] / (c.args[0].pow(2).mean(-1, keepdim=True) + c.args[2]) * c.args[1],
}


def check_rms_norm(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Verdict:
    """fn(x, weight, eps) equal to the package's rms_norm, in two float32 configurations and on float16 input."""
    cases, loud = _cases(), _loud()
    weight = cases[0].args[1].half()

    def verify(fn) -> str | None:
        return (judge_tensors(fn, cases, RMS_NORM_SLIPS, atol=1e-6)
                or _float16_problem(as_tensor(attempt(fn, loud, weight, 1e-5)), rms_norm(loud, weight, 1e-5)))

    return check(RMS_NORM, fn, verify, "your RMSNorm equals the package's, in float32 and on float16 input")


def _float16_problem(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    """The float16 case: overflowing squares reveal a missing float32 step, the dtype a missing cast."""
    if got.shape == expected.shape and ((~torch.isfinite(got)).any() or (got == 0).all()):
        return ("with float16 input of size ~300 your output is inf, NaN or zero: 300**2 overflows float16 (max "
                "65504), so the squares must be summed in float32 and the result cast back after")
    if got.dtype != expected.dtype:
        return (f"float16 in should give float16 out, got {got.dtype}: cast the float32 result back to x's dtype "
                "before multiplying by weight")
    problem = compare_tensors(got, expected, atol=1e-2, rtol=1e-2)
    return f"float16 x (2, 16) of size ~300: {problem}" if problem else None


def check_normalized_length(answer: float | None) -> Verdict:
    """The L2 length of RMSNorm's output (gain 1) for the real model's dim."""
    dim = ModelConfig.mistral_7b_instruct_v02().dim
    expected = math.sqrt(dim)

    def verify(x) -> str | None:
        x = as_number(x, "the length as a number")
        if math.isclose(x, expected, rel_tol=1e-5):     # eps = 1e-5 moves the length by a few parts in a million
            return None
        wrong = {1.0: "1 is the root-mean-square of the output; its length (L2 norm) is larger",
                 float(dim): f"{dim} is the squared length: take its square root",
                 1 / expected: "that is 1/sqrt(dim): the length grows with the number of entries, it does not shrink",
                 expected / math.sqrt(2): "that halves the squared length: every one of the dim entries counts",
                 math.sqrt(ModelConfig.tiny().dim): "that is the embedded default's dim; the question asks for the "
                                                     "real model's"}
        return next((why for value, why in wrong.items() if math.isclose(x, value, rel_tol=1e-5)),
                    f"{x:.6g} is not it; the length is the same for every input vector")

    return check(NORMALIZED_LENGTH, answer, verify,
                 f"every normalised vector lies on the sphere of radius sqrt({dim}) = {expected:.0f}")
