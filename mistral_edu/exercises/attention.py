"""Attention exercises (notebooks 04, 06 and 10): causal attention, repeat_kv, one cached decoding step.

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
from .verdict import Verdict, attempt, check, compare_tensors, diagnose

__all__ = ["check_causal_attention", "check_decode_step", "check_repeat_kv"]

CAUSAL_ATTENTION = register(Exercise(
    name="causal_attention", notebook="04", difficulty=2, minutes=15,
    task="write causal_attention(q, k, v) for one head, (seq, head_dim) inputs: each token attends to itself "
         "and the tokens before it",
    hints=("scores compare every query with every key, scaled by 1/sqrt(head_dim) to keep unit variance; the causal "
           "mask hides the future (not the present: a token may read itself); softmax turns each query's row of "
           "scores into weights over the keys",
           "scores = q @ k.T / sqrt(head_dim); set the entries ABOVE the diagonal to -inf with "
           "torch.triu(ones, diagonal=1); softmax over the last dim; multiply by v"),
    solution='''def causal_attention(q, k, v):
    scores = q @ k.T / math.sqrt(q.shape[-1])                                # (seq, seq)
    future = torch.ones(scores.shape, dtype=torch.bool).triu(1)              # above the diagonal only
    return scores.masked_fill(future, float("-inf")).softmax(-1) @ v         # (seq, head_dim)''',
))

REPEAT_KV = register(Exercise(
    name="repeat_kv", notebook="10", difficulty=1, minutes=10,
    task="write repeat_kv(x, n_rep): (batch, seq, n_kv_heads, head_dim) -> (batch, seq, n_kv_heads * n_rep, "
         "head_dim), so that head h of the result is KV head h // n_rep",
    hints=("grouped-query attention shares each KV head among n_rep consecutive query heads: heads 0..n_rep-1 read "
           "KV head 0, the next n_rep read KV head 1",
           "there are two ways to repeat a tensor along a dimension; only one keeps the copies of a head "
           "together (0,0,0,0,1,1,1,1 rather than 0,1,0,1,...); the heads are dim 2"),
    solution='''def repeat_kv(x, n_rep):
    return x.repeat_interleave(n_rep, dim=2)   # (batch, seq, n_kv_heads * n_rep, head_dim)''',
))

DECODE_STEP = register(Exercise(
    name="decode_step", notebook="06, 10", difficulty=3, minutes=20,
    task="write decode_step(q, k_new, v_new, k_cache, v_cache) -> (z, k_cache, v_cache): one new token's "
         "grouped-query attention over the cache, with the new key and value appended to it",
    hints=("a cached step appends the new key and value first (a token attends to itself), then attends from the "
           "one new query to every cached key; no mask is needed, every cached key is in the past",
           "k_cache = torch.cat([k_cache, k_new[None]]) (same for v); KV head g serves query heads g*n_rep .. "
           "g*n_rep+n_rep-1 (repeat_interleave on the head dim); torch.einsum('hd,khd->hk', q, k) / sqrt(head_dim) "
           "gives every head's scores"),
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


def check_causal_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(q, k, v): one head of causal attention with (seq, head_dim) inputs."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(7, 16, generator=g) * 2 for _ in range(3))       # (7, 16) each
    seq, d = q.shape
    scores = q @ k.T / math.sqrt(d)                                          # (7, 7)
    future = torch.ones(seq, seq, dtype=torch.bool).triu(1)                  # (7, 7)

    def verify(fn) -> str | None:
        got = attempt(fn, q.clone(), k.clone(), v.clone())
        if isinstance(got, torch.Tensor) and got.shape == (seq, d) and torch.isnan(got[0]).all():
            return ("the first row is NaN: your mask hides the diagonal too, so token 0 has no key left to read "
                    "(softmax of all -inf); a token may attend to itself, mask only ABOVE the diagonal "
                    "(torch.triu(..., diagonal=1))")
        return diagnose(got, F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0], {
            "no causal mask: each token may read the future": lambda: scores.softmax(-1) @ v,
            "no 1/sqrt(head_dim) scaling": lambda: (q @ k.T).masked_fill(future, float("-inf")).softmax(-1) @ v,
            "softmax over the queries (dim 0) instead of the keys":
                lambda: torch.nan_to_num(scores.masked_fill(future, float("-inf")).softmax(0)) @ v,
            "the mask hides the diagonal as well: a token may attend to itself, mask only ABOVE the diagonal "
            "(torch.triu(..., diagonal=1))":
                lambda: scores.masked_fill(future | torch.eye(seq, dtype=torch.bool), -1e9).softmax(-1) @ v,
        })

    return check(CAUSAL_ATTENTION, fn, verify, "equal to F.scaled_dot_product_attention(is_causal=True)")


def check_repeat_kv(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> Verdict:
    """fn(x, n_rep): (batch, seq, n_kv_heads, head_dim) -> (batch, seq, n_kv_heads * n_rep, head_dim)."""
    x = torch.randn(1, 3, 2, 4, generator=torch.Generator().manual_seed(2))     # (1, 3, 2, 4)

    def verify(fn) -> str | None:
        got = attempt(fn, x.clone(), 4)
        if isinstance(got, torch.Tensor) and got.shape == (1, 12, 2, 4):
            return "you repeated along the sequence (dim 1); the heads are dim 2 of (batch, seq, heads, head_dim)"
        if isinstance(got, torch.Tensor) and got.shape == x.shape and torch.equal(got, x):
            return "the KV heads came back unrepeated: each must appear n_rep times"
        return diagnose(got, repeat_kv(x, 4), {
            "you tiled the heads (.repeat: KV heads 0,1,0,1,...); query head h must read KV head h // n_rep "
            "(0,0,0,0,1,1,1,1): use repeat_interleave": lambda: x.repeat(1, 1, 4, 1),
            "you repeated each head n_kv_heads times; repeat it n_rep times (n_rep = n_heads // n_kv_heads)":
                lambda: repeat_kv(x, 2),
        }) or compare_tensors(attempt(fn, x.clone(), 1), x)

    return check(REPEAT_KV, fn, verify, "each query head reads the right KV head")


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: bool = True, tiled: bool = False) -> torch.Tensor:
    """One query position with GQA: q (n_heads, hd), k/v (keys, n_kv_heads, hd) -> (n_heads, hd)."""
    n_rep = q.shape[0] // k.shape[1]
    if tiled:
        k, v = k.repeat(1, n_rep, 1)[None], v.repeat(1, n_rep, 1)[None]          # (1, keys, n_heads, hd), wrong order
    else:
        k, v = repeat_kv(k[None], n_rep), repeat_kv(v[None], n_rep)              # (1, keys, n_heads, hd)
    z = F.scaled_dot_product_attention(q[None, :, None], k.transpose(1, 2), v.transpose(1, 2),
                                       scale=None if scale else 1.0)           # (1, n_heads, 1, hd)
    return z[0, :, 0]                                                            # (n_heads, hd)


def check_decode_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None) -> Verdict:
    """fn(q, k_new, v_new, k_cache, v_cache) -> (z, k_cache, v_cache) for one new token with GQA.

    q (n_heads, head_dim); k_new, v_new (n_kv_heads, head_dim); caches (past, n_kv_heads, head_dim).
    z is the new token's attention output; the returned caches include the new key and value.
    """
    g = torch.Generator().manual_seed(3)
    n_heads, n_kv, hd, past = 8, 2, 16, 5
    q = torch.randn(n_heads, hd, generator=g)                                   # (8, 16)
    k_new, v_new = torch.randn(n_kv, hd, generator=g), torch.randn(n_kv, hd, generator=g)   # (2, 16)
    k_cache, v_cache = torch.randn(past, n_kv, hd, generator=g), torch.randn(past, n_kv, hd, generator=g)
    k_all, v_all = torch.cat([k_cache, k_new[None]]), torch.cat([v_cache, v_new[None]])     # (6, 2, 16)

    def verify(fn) -> str | None:
        out = attempt(fn, q.clone(), k_new.clone(), v_new.clone(), k_cache.clone(), v_cache.clone())
        if not isinstance(out, tuple) or len(out) != 3:
            return "return three things: (z, k_cache, v_cache)"
        z, k_out, v_out = out
        problem = compare_tensors(k_out, k_all) or compare_tensors(v_out, v_all)
        if problem:
            return f"the returned cache is wrong ({problem}): it must be the old cache plus the new row"
        return diagnose(z, _attend(q, k_all, v_all), {
            "the new token does not attend to itself: append k_new/v_new BEFORE attending":
                lambda: _attend(q, k_cache, v_cache),
            "the scores are not divided by sqrt(head_dim)": lambda: _attend(q, k_all, v_all, scale=False),
            "query heads read the wrong KV heads (.repeat tiles them); use repeat_interleave":
                lambda: _attend(q, k_all, v_all, tiled=True),
        })

    return check(DECODE_STEP, fn, verify, "one cached step equals attention over the whole sequence")
