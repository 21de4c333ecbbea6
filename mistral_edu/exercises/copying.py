"""The OV-copying exercise (notebook 11): how often a head's OV circuit raises the logit of the very token
it attends to.

The checker builds small embeddings and head weights in which some tokens are copied and others not,
so that the share is neither 0 nor 1 and each usual slip (rows for columns, a count for a share, the
eigenvalue score, argmin, the embedding as unembedding) gives a number of its own. The eigenvalue
score it names is mistral_edu.analysis's copying_score, the one lesson 11 prints.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..analysis.circuits import copying_score
from .catalogue import Exercise, register
from .verdict import Case, Verdict, check, judge_numbers

__all__ = ["check_ov_copying", "ov_copying"]

OV_COPYING = register(Exercise(
    name="ov_copying", notebook="11", difficulty=2, minutes=15,
    task="write ov_copying(W_E, W_V, W_O, W_U): the share of tokens j for which the head's full OV circuit "
         "W_U W_O W_V W_E^T (column j: the logits that attending to token j adds) is largest at row j itself; "
         "W_E, W_U (n_tokens, dim), W_V (head_dim, dim), W_O (dim, head_dim)",
    hints=("a copying head, having attended to a token, raises that same token's logit: in the OV circuit, each "
           "column's biggest entry sits on the diagonal",
           "build the n_tokens x n_tokens circuit by chaining the four matrices in the order the signal flows (embed, "
           "value, output, unembed), find for each column the row with the largest entry, and count the columns "
           "where that row is the column's own token, as a share"),
    solution='''def ov_copying(W_E, W_V, W_O, W_U):
    circuit = W_U @ W_O @ W_V @ W_E.T                              # (n_tokens, n_tokens): column j = attending to j
    own = torch.arange(circuit.shape[1])
    return float((circuit.argmax(dim=0) == own).float().mean())''',
))


def ov_copying(W_E: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, W_U: torch.Tensor, dim: int = 0,
               pick=torch.argmax) -> float:
    """Share of columns (dim=0: argmax down each column) whose extreme entry is on the diagonal."""
    circuit = W_U @ W_O @ W_V @ W_E.T                                                  # (n, n)
    return float((pick(circuit, dim=dim) == torch.arange(circuit.shape[0])).double().mean())


def _weights(seed: int, n: int, dim: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """Embeddings with an unembedding close to them, and a head whose OV circuit copies some directions."""
    g = torch.Generator().manual_seed(seed)
    W_E = torch.randn(n, dim, generator=g, dtype=torch.float64)
    W_U = W_E + 0.8 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    W_V = torch.randn(head_dim, dim, generator=g, dtype=torch.float64)
    W_O = 0.7 * W_V.T + 0.5 * torch.randn(dim, head_dim, generator=g, dtype=torch.float64)
    return W_E, W_V, W_O, W_U


OV_SLIPS = {
    "you looked along the rows (the best source for each output token); a column j is what attending to token j "
    "writes, so find each column's largest entry": lambda c: ov_copying(*c.args, dim=1),
    "that is a count of tokens; return the share (divide by the number of tokens)":
        lambda c: c.expected * c.args[0].shape[0],
    "that is the eigenvalue copying score of lesson 11 (analysis.copying_score); this exercise asks for the share "
    "of columns whose top entry is on the diagonal":
        lambda c: copying_score(c.args[3] @ c.args[2], c.args[1] @ c.args[0].T),
    "you took each column's SMALLEST entry: copying raises the attended token's logit the most":
        lambda c: ov_copying(*c.args, pick=torch.argmin),
    "you unembedded with W_E: the logits come from W_U (Mistral's output matrix is not tied to the embedding)":
        lambda c: ov_copying(c.args[0], c.args[1], c.args[2], c.args[0]),
}


def check_ov_copying(fn: Callable[..., float] | None) -> Verdict:
    """fn(W_E, W_V, W_O, W_U) -> the share of tokens the OV circuit copies, on two sets of weights."""
    cases = []
    for seed, n, dim, head_dim in [(21, 40, 16, 4), (22, 30, 12, 6)]:
        weights = _weights(seed, n, dim, head_dim)
        cases.append(Case(f"{n} tokens, dim {dim}, head_dim {head_dim}", weights, ov_copying(*weights)))

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, OV_SLIPS, rel_tol=1e-6, what="the share as one number", show="{:.4g}".format)

    return check(OV_COPYING, fn, verify, "the share of tokens whose OV column peaks on the token itself")
