"""Feed-forward exercise (notebook 05): SwiGLU with nn.Linear-shaped weights.

The reference is the package's swiglu, the function FeedForward calls, wrapped in the three matrices.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..model import swiglu
from .catalogue import Exercise, register
from .verdict import Case, Verdict, check, judge_tensors

__all__ = ["check_swiglu"]

SWIGLU = register(Exercise(
    name="swiglu", notebook="05", difficulty=2, minutes=10,
    task="write swiglu_exercise(x, w1, w2, w3) with the weight matrices shaped as in nn.Linear, (out, in)",
    hints=("SwiGLU is a gated MLP: one projection (w1, the gate) goes through SiLU and multiplies another (w3, "
           "'up'), and w2 projects the product back down to dim",
           "an nn.Linear weight is stored (out, in), so applying it to a row vector needs its transpose; gate "
           "the up projection elementwise, then project down"),
    solution='''def swiglu_exercise(x, w1, w2, w3):
    return (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ w2.T''',
))


def _ffn(c: Case, gate_fn: Callable[[torch.Tensor], torch.Tensor] = F.silu, combine: str = "gate * up",
         swap: bool = False) -> torch.Tensor:
    """The feed-forward of case c with one choice changed: the gate's nonlinearity, how the branches combine."""
    x, w1, w2, w3 = c.args
    gate, up = (x @ w3.T, x @ w1.T) if swap else (x @ w1.T, x @ w3.T)        # (..., hidden)
    mixed = {"gate * up": gate_fn(gate) * up, "gate only": gate_fn(gate), "after the product": gate_fn(gate * up),
             "gate + up": gate_fn(gate) + up}[combine]
    return mixed @ w2.T                                                       # (..., dim)


SWIGLU_SLIPS = {
    "w1 and w3 are swapped: the gate (through SiLU) is w1, the plain 'up' projection is w3": lambda c: _ffn(c, swap=True),
    "that uses ReLU; Mistral's gate goes through SiLU (x * sigmoid(x))": lambda c: _ffn(c, torch.relu),
    "that uses a plain sigmoid; SiLU is x * sigmoid(x)": lambda c: _ffn(c, torch.sigmoid),
    "that uses GELU; Mistral's gate goes through SiLU (x * sigmoid(x))": lambda c: _ffn(c, F.gelu),
    "no gating: the SiLU output must be multiplied by the up projection w3 x": lambda c: _ffn(c, combine="gate only"),
    "SiLU is applied after the product; it acts on the gate w1 x alone, which then multiplies w3 x":
        lambda c: _ffn(c, combine="after the product"),
    "the branches are added; a gate multiplies, elementwise": lambda c: _ffn(c, combine="gate + up"),
}


def check_swiglu(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(x, w1, w2, w3): SwiGLU with nn.Linear-shaped (out, in) weight matrices, in two configurations."""
    g = torch.Generator().manual_seed(5)
    cases = []
    for shape, hidden in [((2, 3, 8), 20), ((4, 6), 10)]:
        dim = shape[-1]
        x = torch.randn(*shape, generator=g)                                             # (..., dim)
        w1, w3 = torch.randn(hidden, dim, generator=g), torch.randn(hidden, dim, generator=g)   # (hidden, dim)
        w2 = torch.randn(dim, hidden, generator=g)                                       # (dim, hidden)
        cases.append(Case(f"x {shape}, hidden {hidden}", (x, w1, w2, w3), swiglu(x @ w1.T, x @ w3.T) @ w2.T))

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, SWIGLU_SLIPS, atol=1e-4)

    return check(SWIGLU, fn, verify, "SwiGLU, exactly as FeedForward computes it")
