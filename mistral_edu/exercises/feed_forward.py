"""Feed-forward exercise (notebook 05): SwiGLU with nn.Linear-shaped weights.

The reference is the package's swiglu, the function FeedForward calls, wrapped in the three matrices.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..model import swiglu
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, diagnose

__all__ = ["check_swiglu"]

SWIGLU = register(Exercise(
    name="swiglu", notebook="05", difficulty=2, minutes=10,
    task="write swiglu_exercise(x, w1, w2, w3) with the weight matrices shaped as in nn.Linear, (out, in)",
    hints=("SwiGLU is a gated MLP: one projection (w1, the gate) goes through SiLU and multiplies another (w3, "
           "'up'), and w2 projects the product back down to dim",
           "an nn.Linear weight is (out, in), so w1 x is x @ w1.T; the result is (silu(x @ w1.T) * (x @ w3.T)) @ w2.T"),
    solution='''def swiglu_exercise(x, w1, w2, w3):
    return (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ w2.T''',
))


def check_swiglu(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(x, w1, w2, w3): SwiGLU with nn.Linear-shaped (out, in) weight matrices."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, generator=g)                                        # (2, 3, dim=8)
    w1, w3 = torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g)   # (hidden=20, dim)
    w2 = torch.randn(8, 20, generator=g)                                         # (dim, hidden)
    gate, up = x @ w1.T, x @ w3.T                                                # (2, 3, 20)

    def verify(fn) -> str | None:
        got = attempt(fn, x.clone(), w1.clone(), w2.clone(), w3.clone())
        return diagnose(got, swiglu(gate, up) @ w2.T, {
            "w1 and w3 are swapped: the gate (through SiLU) is w1, the plain 'up' projection is w3":
                lambda: swiglu(up, gate) @ w2.T,
            "that uses ReLU; Mistral's gate goes through SiLU (x * sigmoid(x))": lambda: (torch.relu(gate) * up) @ w2.T,
            "no gating: the SiLU output must be multiplied by w3 x": lambda: F.silu(gate) @ w2.T,
        }, atol=1e-4)

    return check(SWIGLU, fn, verify, "SwiGLU, exactly as FeedForward computes it")
