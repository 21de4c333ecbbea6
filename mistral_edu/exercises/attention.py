"""Attention exercises (notebooks 04, 06 and 10): grouped-query attention, repeat_kv, one cached decoding step.

The references are PyTorch's scaled_dot_product_attention and the package's repeat_kv; each wrong
answer a learner usually writes is built from them with the one slip changed.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..model import repeat_kv
from .catalogue import Exercise, register
from .verdict import Case, Verdict, WrongAnswer, as_tensor, attempt, check, compare_tensors, judge_tensors

__all__ = ["check_decode_step", "check_grouped_attention", "check_repeat_kv"]

GROUPED_ATTENTION = register(Exercise(
    name="grouped_attention", notebook="04", difficulty=3, minutes=20,
    task="write grouped_attention(q, k, v) for q (seq, n_heads, head_dim) and k, v (seq, n_kv_heads, head_dim): causal "
         "attention in which query head h reads KV head h // (n_heads // n_kv_heads), WITHOUT copying k or v (the "
         "section above repeats them; fast kernels do not): return (seq, n_heads, head_dim)",
    hints=("the query heads that share a KV head form a group: seen as groups, the queries are (seq, n_kv_heads, "
           "n_rep, head_dim), and every query in group g meets the same keys and values, so nothing needs copying",
           "reshape the queries into their groups, score each group's queries against its own KV head (a sum over "
           "head_dim that keeps the group index on both sides), scale by the square root of head_dim, hide the "
           "future, normalise over the keys, mix that KV head's values, and merge the group axes back into heads"),
    solution='''def grouped_attention(q, k, v):
    seq, n_heads, head_dim = q.shape
    n_kv = k.shape[1]
    groups = q.reshape(seq, n_kv, n_heads // n_kv, head_dim)                   # (seq, n_kv, n_rep, head_dim)
    scores = torch.einsum("qgrd,kgd->grqk", groups, k) / math.sqrt(head_dim)   # (n_kv, n_rep, seq, seq)
    future = torch.ones(seq, seq, dtype=torch.bool).triu(1)                    # above the diagonal only
    weights = scores.masked_fill(future, float("-inf")).softmax(-1)            # (n_kv, n_rep, seq, seq)
    z = torch.einsum("grqk,kgd->qgrd", weights, v)                             # (seq, n_kv, n_rep, head_dim)
    return z.reshape(seq, n_heads, head_dim)''',
))

REPEAT_KV = register(Exercise(
    name="repeat_kv", notebook="04", difficulty=1, minutes=10,
    task="write repeat_kv(x, n_rep): (batch, seq, n_kv_heads, head_dim) -> (batch, seq, n_kv_heads * n_rep, "
         "head_dim), so that head h of the result is KV head h // n_rep",
    hints=("grouped-query attention shares each KV head among n_rep consecutive query heads: heads 0..n_rep-1 "
           "read KV head 0, the next n_rep read KV head 1",
           "there are two ways to repeat a tensor along a dimension; only one keeps the copies of a head "
           "together (0,0,0,0,1,1,1,1 rather than 0,1,0,1,...); the heads are dim 2"),
    solution='''def repeat_kv(x, n_rep):
    return x.repeat_interleave(n_rep, dim=2)   # (batch, seq, n_kv_heads * n_rep, head_dim)''',
))

DECODE_STEP = register(Exercise(
    name="decode_step", notebook="06, 10", difficulty=3, minutes=20,
    task="write decode_step(q, k_new, v_new, k_cache, v_cache) -> (z, k_cache, v_cache): one new token's "
         "grouped-query attention over the cache, with the new key and value appended to it",
    hints=("a cached step appends the new key and value first (a token attends to itself), then attends from the"
           " one new query to every cached key; no mask is needed, every cached key is in the past",
           "grow both caches by one row; give every query head the KV head of its group, as repeat_kv does but "
           "on the head dimension of these smaller tensors; then score, normalise over the keys and mix the "
           "values, head by head"),
    solution='''def decode_step(q, k_new, v_new, k_cache, v_cache):
    k_cache = torch.cat([k_cache, k_new[None]])                          # (past + 1, n_kv_heads, head_dim)
    v_cache = torch.cat([v_cache, v_new[None]])
    n_rep = q.shape[0] // k_cache.shape[1]
    k = k_cache.repeat_interleave(n_rep, dim=1)                          # (past + 1, n_heads, head_dim)
    v = v_cache.repeat_interleave(n_rep, dim=1)
    scores = torch.einsum("hd,khd->hk", q, k) / math.sqrt(q.shape[-1])   # (n_heads, past + 1)
    z = torch.einsum("hk,khd->hd", scores.softmax(-1), v)                # (n_heads, head_dim)
    return z, k_cache, v_cache''',
))


def _causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, diagonal: int = 1,
            dim: int = -1, fill: float = float("-inf"), past: bool = False) -> torch.Tensor:
    """Causal attention with one knob turned: the scale, which diagonal the mask starts at, the softmax's dim."""
    seq = q.shape[0]
    scores = q @ k.T * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)            # (seq, seq)
    hidden = torch.ones(seq, seq, dtype=torch.bool)
    hidden = hidden.tril(-1) if past else hidden.triu(diagonal)                               # (seq, seq)
    return scores.masked_fill(hidden, fill).softmax(dim) @ v                                  # (seq, head_dim)


def _grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tiled: bool = False, **slip) -> torch.Tensor:
    """Grouped causal attention head by head, with one slip of _causal (or tiled KV heads) applied."""
    n_rep = q.shape[1] // k.shape[1]
    expand = (lambda t: t.repeat(1, n_rep, 1)) if tiled else (lambda t: t.repeat_interleave(n_rep, 1))
    k, v = expand(k), expand(v)                                                               # (seq, n_heads, hd)
    return torch.stack([_causal(q[:, h], k[:, h], v[:, h], **slip) for h in range(q.shape[1])], 1)


GROUPED_SLIPS = {
    "query heads read the wrong KV heads (tiled 0,1,0,1,...): query head h reads KV head h // n_rep, so the copies "
    "of one KV head stay together": lambda c: _grouped(*c.args, tiled=True),
    "no causal mask: each token may read the future": lambda c: _grouped(*c.args, diagonal=c.args[0].shape[0]),
    "no 1/sqrt(head_dim) scaling": lambda c: _grouped(*c.args, scale=1.0),
    "you scaled by 1/head_dim: the scores are divided by the SQUARE ROOT of head_dim, which keeps their variance at 1":
        lambda c: _grouped(*c.args, scale=1 / c.args[0].shape[-1]),
    "softmax over the queries instead of the keys": lambda c: torch.nan_to_num(_grouped(*c.args, dim=0)),
    "the mask hides the diagonal too, so token 0 has no key left to read (softmax of all -inf gives NaN); a token "
    "may attend to itself, so only the entries ABOVE the diagonal are hidden": lambda c: _grouped(*c.args, diagonal=0),
    "the mask hides the diagonal as well: a token may attend to itself, so only the entries ABOVE the diagonal "
    "are hidden": lambda c: _grouped(*c.args, diagonal=0, fill=-1e9),
    "the mask starts one diagonal too far: each token can still read the token right after it":
        lambda c: _grouped(*c.args, diagonal=2),
    "you hid the past instead of the future (the triangle BELOW the diagonal): a token reads itself and what "
    "came before it": lambda c: _grouped(*c.args, past=True),
}


def check_grouped_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(q, k, v): causal grouped-query attention, (seq, heads, head_dim) inputs, in two configurations."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for seq, n_heads, n_kv, d in [(7, 8, 2, 16), (5, 6, 3, 4)]:
        q = torch.randn(seq, n_heads, d, generator=g) * 2                                     # (seq, n_heads, d)
        k, v = (torch.randn(seq, n_kv, d, generator=g) * 2 for _ in range(2))                 # (seq, n_kv, d)
        expected = F.scaled_dot_product_attention(q.transpose(0, 1), repeat_kv(k[None], n_heads // n_kv)[0].transpose(0, 1),
                                                  repeat_kv(v[None], n_heads // n_kv)[0].transpose(0, 1), is_causal=True)
        cases.append(Case(f"q ({seq}, {n_heads}, {d}) with {n_kv} KV heads", (q, k, v), expected.transpose(0, 1)))

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, GROUPED_SLIPS)

    return check(GROUPED_ATTENTION, fn, verify, "equal to F.scaled_dot_product_attention over repeat_kv's heads")


REPEAT_KV_SLIPS = {
    "you tiled the heads (KV heads 0,1,0,1,...); query head h must read KV head h // n_rep (0,0,0,0,1,1,1,1): "
    "the copies of one head stay together": lambda c: c.args[0].repeat(1, 1, c.args[1], 1),
    "you repeated along the sequence (dim 1); the heads are dim 2 of (batch, seq, heads, head_dim)":
        lambda c: repeat_kv(c.args[0].transpose(1, 2), c.args[1]).transpose(1, 2),
    "you repeated along head_dim (the last dim); the heads are dim 2 of (batch, seq, heads, head_dim)":
        lambda c: c.args[0].repeat_interleave(c.args[1], dim=-1),
    "the KV heads came back unrepeated: each must appear n_rep times": lambda c: c.args[0],
    "you repeated each head n_kv_heads times; repeat it n_rep times (n_rep = n_heads // n_kv_heads)":
        lambda c: repeat_kv(c.args[0], c.args[0].shape[2]),
    "the copies are a new dimension (batch, seq, n_kv_heads, n_rep, head_dim): merge it with the heads' dim":
        lambda c: c.args[0][:, :, :, None].expand(*c.args[0].shape[:3], c.args[1], c.args[0].shape[-1]),
}


def check_repeat_kv(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> Verdict:
    """fn(x, n_rep): (batch, seq, n_kv_heads, head_dim) -> (batch, seq, n_kv_heads * n_rep, head_dim)."""
    g = torch.Generator().manual_seed(2)
    cases = [Case(f"x {tuple(x.shape)} with n_rep={n}", (x, n), repeat_kv(x, n))
             for x, n in [(torch.randn(1, 3, 2, 4, generator=g), 4), (torch.randn(2, 2, 3, 5, generator=g), 2),
                          (torch.randn(1, 2, 2, 3, generator=g), 1)]]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, REPEAT_KV_SLIPS)

    return check(REPEAT_KV, fn, verify, "each query head reads the right KV head")


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, tiled: bool = False,
            over_heads: bool = False) -> torch.Tensor:
    """One query position with GQA: q (n_heads, hd), k/v (keys, n_kv_heads, hd) -> (n_heads, hd)."""
    n_rep = q.shape[0] // k.shape[1]
    if tiled:
        k, v = k.repeat(1, n_rep, 1), v.repeat(1, n_rep, 1)                   # (keys, n_heads, hd), wrong order
    else:
        k, v = k.repeat_interleave(n_rep, 1), v.repeat_interleave(n_rep, 1)   # (keys, n_heads, hd)
    scores = torch.einsum("hd,khd->hk", q, k) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    weights = scores.softmax(0 if over_heads else -1)                          # (n_heads, keys)
    return torch.einsum("hk,khd->hd", weights, v)                              # (n_heads, hd)


def _decode_case(label: str, seed: int, n_heads: int, n_kv: int, hd: int, past: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_heads, hd, generator=g)                                                  # (n_heads, hd)
    k_new, v_new = torch.randn(n_kv, hd, generator=g), torch.randn(n_kv, hd, generator=g)     # (n_kv, hd)
    k_cache, v_cache = torch.randn(past, n_kv, hd, generator=g), torch.randn(past, n_kv, hd, generator=g)
    k_all, v_all = torch.cat([k_cache, k_new[None]]), torch.cat([v_cache, v_new[None]])       # (past + 1, n_kv, hd)
    return Case(label, (q, k_new, v_new, k_cache, v_cache), _attend(q, k_all, v_all), {"k_all": k_all, "v_all": v_all})


DECODE_SLIPS = {
    "the new token does not attend to itself: its key and value join the cache BEFORE it attends":
        lambda c: _attend(c.args[0], c.args[3], c.args[4]),
    "the scores are not divided by sqrt(head_dim)": lambda c: _attend(c.args[0], c.extra["k_all"], c.extra["v_all"], 1.0),
    "you divided by head_dim: the scores are divided by its square root":
        lambda c: _attend(c.args[0], c.extra["k_all"], c.extra["v_all"], 1 / c.args[0].shape[-1]),
    "query heads read the wrong KV heads (tiled 0,1,0,1,...): query head h reads KV head h // n_rep":
        lambda c: _attend(c.args[0], c.extra["k_all"], c.extra["v_all"], tiled=True),
    "the softmax runs over the heads; each head's weights are a distribution over the cached keys":
        lambda c: _attend(c.args[0], c.extra["k_all"], c.extra["v_all"], over_heads=True),
}


def check_decode_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None) -> Verdict:
    """fn(q, k_new, v_new, k_cache, v_cache) -> (z, k_cache, v_cache) for one new token with GQA.

    q (n_heads, head_dim); k_new, v_new (n_kv_heads, head_dim); caches (past, n_kv_heads, head_dim).
    z is the new token's attention output; the returned caches include the new key and value.
    Two configurations (4 and 3 query heads per KV head) tell tiled heads from other slips.
    """
    cases = [_decode_case("8 query heads, 2 KV heads, head_dim 16, 5 cached tokens", 3, 8, 2, 16, 5),
             _decode_case("6 query heads, 2 KV heads, head_dim 8, 3 cached tokens", 5, 6, 2, 8, 3)]

    def z_of(fn: Callable) -> Callable:
        def run(q, k_new, v_new, k_cache, v_cache):
            case = next(c for c in cases if torch.equal(c.args[0], q))
            out = attempt(fn, q, k_new, v_new, k_cache, v_cache)
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                raise WrongAnswer(f"return three things, (z, k_cache, v_cache); got {type(out).__name__}")
            z, k_out, v_out = (as_tensor(t) for t in out)
            problem = compare_tensors(k_out, case.extra["k_all"]) or compare_tensors(v_out, case.extra["v_all"])
            if problem:
                raise WrongAnswer(f"{case.label}: the returned cache is wrong ({problem}): it must be the old cache "
                                  "plus the new row")
            return z
        return run

    def verify(fn) -> str | None:
        return judge_tensors(z_of(fn), cases, DECODE_SLIPS)

    return check(DECODE_STEP, fn, verify, "one cached step equals attention over the whole sequence")
