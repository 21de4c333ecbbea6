"""The composition exercise (notebook 11): the K-composition score between an earlier and a later head.

The reference is mistral_edu.analysis's composition_score, the function the lesson's grid is drawn
with; the checker feeds small random matrices whose norms differ, so that each usual slip (no
normalisation, the wrong product order, Q- instead of K-composition, a spectral norm) gives a number
of its own and can be named.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..analysis.circuits import composition_score
from .catalogue import Exercise, register
from .verdict import Case, Verdict, check, judge_numbers

__all__ = ["check_k_composition"]

K_COMPOSITION = register(Exercise(
    name="k_composition", notebook="11", difficulty=2, minutes=15,
    task="write k_composition(W_Q, W_K, W_O, W_V): how much a later head's keys read an earlier head's output, "
         "||W_Q^T W_K W_O W_V||_F / (||W_Q^T W_K||_F ||W_O W_V||_F), for W_Q, W_K, W_V (head_dim, dim) and "
         "W_O (dim, head_dim)",
    hints=("the later head's QK circuit reads the residual stream on its key side, the earlier head's OV circuit"
           " writes to it: the key side composes with the writer when their product is large compared with the "
           "two circuits' own sizes",
           "build the two dim x dim circuits from the weight matrices, multiply them with the writer acting "
           "first, and compare the size of that product with the sizes of the two circuits, all measured with "
           "the Frobenius norm"),
    solution='''def k_composition(W_Q, W_K, W_O, W_V):
    qk = W_Q.T @ W_K                       # (dim, dim): the later head's QK circuit; its key side reads the stream
    ov = W_O @ W_V                         # (dim, dim): the earlier head's OV circuit writes it
    fro = torch.linalg.matrix_norm
    return fro(qk @ ov) / (fro(qk) * fro(ov))''',
))


def _heads(seed: int, dim: int = 12, head_dim: int = 3) -> tuple[torch.Tensor, ...]:
    """W_Q, W_K, W_V (head_dim, dim) and W_O (dim, head_dim) with unequal scales, so each slip differs."""
    g = torch.Generator().manual_seed(seed)
    W_Q = torch.randn(head_dim, dim, generator=g, dtype=torch.float64) * 2.0
    W_K = torch.randn(head_dim, dim, generator=g, dtype=torch.float64) * 0.5
    W_O = torch.randn(dim, head_dim, generator=g, dtype=torch.float64) * 1.5
    W_V = torch.randn(head_dim, dim, generator=g, dtype=torch.float64) * 0.7
    return W_Q, W_K, W_O, W_V


def _ratio(reader: torch.Tensor, writer: torch.Tensor, ord: str | int = "fro") -> torch.Tensor:
    norm = lambda m: torch.linalg.matrix_norm(m, ord=ord)
    return norm(reader @ writer) / (norm(reader) * norm(writer))


def check_k_composition(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(W_Q, W_K, W_O, W_V) -> the K-composition score (a number in [0, 1]), on two pairs of heads."""
    cases = []
    for seed, dim, head_dim in [(11, 12, 3), (13, 10, 4)]:
        weights = _heads(seed, dim, head_dim)
        cases.append(Case(f"heads with dim {dim}, head_dim {head_dim}", weights, float(composition_score(*weights)),
                          {"qk": weights[0].T @ weights[1], "ov": weights[2] @ weights[3]}))
    fro = torch.linalg.matrix_norm
    slips = {
        "that is ||W_Q^T W_K W_O W_V|| without the normalisation: divide by ||W_Q^T W_K|| * ||W_O W_V||, so "
        "the score compares directions, not sizes (it must lie between 0 and 1)":
            lambda c: float(fro(c.extra["qk"] @ c.extra["ov"])),
        "you divided by the norms of the four matrices W_Q, W_K, W_O, W_V; divide by the norms of the two "
        "circuits, ||W_Q^T W_K|| and ||W_O W_V||":
            lambda c: float(fro(c.extra["qk"] @ c.extra["ov"]) / torch.stack([fro(m) for m in c.args]).prod()),
        "that is Q-composition (W_K^T W_Q: the QUERY side reads the earlier head); for K-composition the key "
        "side reads it: W_Q^T W_K @ W_O W_V": lambda c: float(_ratio(c.extra["qk"].T, c.extra["ov"])),
        "the product is in the wrong order: the earlier head writes first, so the later head's circuit comes on "
        "the left, W_Q^T W_K @ W_O W_V, not W_O W_V @ W_Q^T W_K": lambda c: float(_ratio(c.extra["ov"], c.extra["qk"])),
        "that uses the spectral norm (ord=2, the largest singular value); the score uses the Frobenius norm, "
        "torch.linalg.matrix_norm's default": lambda c: float(_ratio(c.extra["qk"], c.extra["ov"], ord=2)),
        "that is the squared score: the Frobenius norm is the square root of the sum of squares":
            lambda c: c.expected ** 2,
    }

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, rel_tol=1e-5, what="one number (the score of this pair of heads)",
                             show="{:.4g}".format)

    return check(K_COMPOSITION, fn, verify,
                 "the K-composition score; the lesson's grid computes the same number from head_dim x head_dim traces")
