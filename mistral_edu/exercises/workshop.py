"""Checkers for notebooks 06-09 and the workshop (10): each names the common mistake it sees.

Every checker compares the learner's answer with a reference built from the package, and when the
answer is wrong, with the wrong answers people usually write (RMSNorm without eps, RoPE paired the
rotate-half way, .repeat instead of repeat_interleave, a KV cache without its factor 2, ...), so the
hint says what went wrong and not only that something did. They never raise and return True/False.

The checkers run on small tensors and a small private model of their own, so they cost the same
whether the notebook runs on the embedded default or on the real 7B weights.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from . import check, compare_tensors
from ..analysis.heads import head_entropy, induction_score, induction_scores, previous_token_score
from ..config import ModelConfig
from ..model import Transformer
from ..model.attention import repeat_kv
from ..model.rope import apply_rope, rope_rotations

__all__ = [
    "check_rmsnorm", "check_rope", "check_repeat_kv", "check_decode_step", "check_kv_cache_bytes",
    "check_weight_bytes", "check_top_p", "check_rolling_slot", "check_previous_token_scores",
    "check_head_entropy", "check_induction_scores", "check_induction_head", "check_patching",
    "repeated_tokens", "model_induction_scores",
]


def _diagnose(got, reference: torch.Tensor, wrong: dict[str, Callable[[], torch.Tensor]],
              atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got equals the reference; else the message of the known mistake it equals, if any."""
    problem = compare_tensors(got, reference, atol=atol, rtol=rtol)
    if problem is None:
        return None
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(reference.shape):
        for message, make in wrong.items():
            candidate = make()
            if torch.allclose(got.detach().double(), candidate.double(), atol=atol, rtol=rtol, equal_nan=True):
                return message
    return problem


def _call(fn: Callable, *args):
    """Call a learner's function; a stub (None or NotImplementedError) means 'not started'."""
    try:
        return fn(*args)
    except NotImplementedError:
        return None


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- RMSNorm (02, 10)

def _rmsnorm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def check_rmsnorm(fn) -> bool:
    """fn(x, weight, eps) -> x / sqrt(mean(x^2) + eps) * weight over the last dimension."""
    hint = ("divide x by sqrt(mean of x**2 over the last dim + eps), then multiply by weight: "
            "x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    g = _gen(0)
    # Small activations (rms ~ 1e-3) make eps = 1e-5 visible: forgetting it changes the answer.
    x = torch.randn(2, 5, 16, generator=g) * 1e-3
    weight = 1 + torch.randn(16, generator=g)
    eps = 1e-5

    def verify(_):
        got = _call(fn, x.clone(), weight.clone(), eps)
        if got is None:
            return "your function returned None (still the stub?)"
        return _diagnose(got, _rmsnorm(x, weight, eps), {
            "the output ignores eps: add it inside the square root, mean(x**2) + eps": lambda: _rmsnorm(x, weight, 0.0),
            "you divided by sqrt(mean(x)) - RMSNorm needs the mean of the SQUARES, x.pow(2).mean(-1)":
                lambda: x * torch.rsqrt(x.mean(-1, keepdim=True) + eps) * weight,
            "you subtracted the mean (that is LayerNorm); RMSNorm does not centre":
                lambda: (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps) * weight,
            "the weight (gain) is missing: multiply by weight at the end": lambda: _rmsnorm(x, 1.0, eps),
            "eps is outside the root: it must be sqrt(mean(x**2) + eps), not sqrt(mean(x**2)) + eps":
                lambda: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight,
            "you normalised over the wrong dimension: the mean runs over the last one (dim=-1)":
                lambda: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight,
        }, atol=1e-6, rtol=1e-4)
    return check(fn, verify, hint, "your RMSNorm matches the package's")


# ----------------------------------------------------------------------------- RoPE (03, 10)

def _rope(x, positions, theta):
    return apply_rope(x, rope_rotations(positions, x.shape[-1], theta))


def _rope_rotate_half(x, positions, theta):
    """Hugging Face's pairing (i, i + head_dim/2): right for permuted weights, wrong for Mistral's."""
    half = x.shape[-1] // 2
    inv = 1.0 / theta ** (torch.arange(0, x.shape[-1], 2).float() / x.shape[-1])   # (head_dim/2,)
    angles = positions.float()[:, None] * inv                                      # (seq, head_dim/2)
    cos = torch.cat([angles.cos(), angles.cos()], -1)[None, :, None]              # (1, seq, 1, head_dim)
    sin = torch.cat([angles.sin(), angles.sin()], -1)[None, :, None]
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def check_rope(fn) -> bool:
    """fn(x, positions, theta) rotates (batch, seq, heads, head_dim) in Mistral's (2i, 2i+1) pairing."""
    hint = ("pair neighbouring dims (x[..., 0::2], x[..., 1::2]); pair i turns by angle "
            "position * theta**(-2i/head_dim): (a, b) -> (a cos - b sin, a sin + b cos)")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    x = torch.randn(1, 6, 2, 16, generator=_gen(1))
    positions = torch.arange(3, 9)   # not starting at 0, so "ignored the positions" shows
    theta = 1e6

    def verify(_):
        got = _call(fn, x.clone(), positions.clone(), theta)
        if got is None:
            return "your function returned None (still the stub?)"
        return _diagnose(got, _rope(x, positions, theta), {
            "you paired dimension i with i + head_dim/2 (rotate-half, Hugging Face's layout); Mistral "
            "pairs neighbours (2i, 2i+1)": lambda: _rope_rotate_half(x, positions, theta),
            "you rotated the wrong way: use +angle, (a cos - b sin, a sin + b cos)":
                lambda: _rope(x, -positions, theta),
            "the frequencies are off: pair i turns by theta**(-2i/head_dim), with i counting pairs":
                lambda: apply_rope(x, torch.polar(torch.ones(6, 8), torch.outer(
                    positions.float(), 1.0 / theta ** (torch.arange(8).float() / 16)))),
            "the rotation ignores the positions given (it starts at 0): use the positions argument":
                lambda: _rope(x, torch.arange(6), theta),
            "theta is 1e4 here (v0.1's): use the theta argument": lambda: _rope(x, positions, 1e4),
        })
    return check(fn, verify, hint, "your rotation matches apply_rope")


# ----------------------------------------------------------------------------- repeat_kv (04, 10)

def check_repeat_kv(fn) -> bool:
    """fn(x, n_rep): (batch, seq, n_kv_heads, head_dim) -> (batch, seq, n_kv_heads * n_rep, head_dim)."""
    hint = ("query head h reads KV head h // n_rep, so each KV head is repeated n_rep times IN PLACE: "
            "x.repeat_interleave(n_rep, dim=2)")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    x = torch.randn(1, 3, 2, 4, generator=_gen(2))

    def verify(_):
        got = _call(fn, x.clone(), 4)
        if got is None:
            return "your function returned None (still the stub?)"
        problem = _diagnose(got, repeat_kv(x, 4), {
            "you tiled the heads (.repeat: KV heads 0,1,0,1,...); query head h must read KV head "
            "h // n_rep (0,0,0,0,1,1,1,1): use repeat_interleave": lambda: x.repeat(1, 1, 4, 1),
        })
        if problem is None and _call(fn, x.clone(), 1) is not None:
            return compare_tensors(_call(fn, x.clone(), 1), x)
        return problem
    return check(fn, verify, hint, "each query head reads the right KV head")


# ----------------------------------------------------------------------------- a cached decoding step (06, 10)

def _attend(q, k, v):
    """One query position: q (n_heads, hd), k/v (keys, n_kv_heads, hd) -> (n_heads, hd)."""
    n_rep = q.shape[0] // k.shape[1]
    k = k.repeat_interleave(n_rep, dim=1)                                 # (keys, n_heads, hd)
    v = v.repeat_interleave(n_rep, dim=1)                                 # (keys, n_heads, hd)
    scores = torch.einsum("hd,khd->hk", q, k) / math.sqrt(q.shape[-1])   # (n_heads, keys)
    return torch.einsum("hk,khd->hd", scores.softmax(-1), v)             # (n_heads, hd)


def check_decode_step(fn) -> bool:
    """fn(q, k_new, v_new, k_cache, v_cache) -> (z, k_cache, v_cache) for one new token with GQA.

    q (n_heads, head_dim); k_new, v_new (n_kv_heads, head_dim); caches (past, n_kv_heads, head_dim).
    z is the new token's attention output; the returned caches include the new key and value.
    """
    hint = ("append: k_cache = torch.cat([k_cache, k_new[None]]) (same for v); then softmax(q k^T / "
            "sqrt(head_dim)) v over ALL keys, the new one included; KV head g serves query heads "
            "g*n_rep .. g*n_rep+n_rep-1 (repeat_interleave)")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    g = _gen(3)
    n_heads, n_kv, hd, past = 8, 2, 16, 5
    q = torch.randn(n_heads, hd, generator=g)
    k_new, v_new = torch.randn(n_kv, hd, generator=g), torch.randn(n_kv, hd, generator=g)
    k_cache, v_cache = torch.randn(past, n_kv, hd, generator=g), torch.randn(past, n_kv, hd, generator=g)
    k_all, v_all = torch.cat([k_cache, k_new[None]]), torch.cat([v_cache, v_new[None]])

    def verify(_):
        out = _call(fn, q.clone(), k_new.clone(), v_new.clone(), k_cache.clone(), v_cache.clone())
        if out is None:
            return "your function returned None (still the stub?)"
        if not isinstance(out, tuple) or len(out) != 3:
            return "return three things: (z, k_cache, v_cache)"
        z, k_out, v_out = out
        problem = compare_tensors(k_out, k_all) or compare_tensors(v_out, v_all)
        if problem:
            return f"the returned cache is wrong ({problem}): it must be the old cache plus the new row"
        return _diagnose(z, _attend(q, k_all, v_all), {
            "the new token does not attend to itself: append k_new/v_new BEFORE attending":
                lambda: _attend(q, k_cache, v_cache),
            "the scores are not divided by sqrt(head_dim)":
                lambda: _attend(q * math.sqrt(hd), k_all, v_all),
            "query heads read the wrong KV heads (.repeat tiles them); use repeat_interleave":
                lambda: _attend_tiled(q, k_all, v_all),
        })
    return check(fn, verify, hint, "one cached step equals attention over the whole sequence")


def _attend_tiled(q, k, v):
    n_rep = q.shape[0] // k.shape[1]
    k, v = k.repeat(1, n_rep, 1), v.repeat(1, n_rep, 1)                 # (keys, n_heads, hd), wrong order
    scores = torch.einsum("hd,khd->hk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("hk,khd->hd", scores.softmax(-1), v)


# ----------------------------------------------------------------------------- memory arithmetic (06, 07, 10)

def _kv_bytes(cfg: ModelConfig, context: int, batch: int, bytes_per_value: float) -> float:
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * context * batch * bytes_per_value


def check_kv_cache_bytes(fn) -> bool:
    """fn(cfg, context, batch, bytes_per_value) -> bytes of the whole KV cache (no sliding window)."""
    hint = ("keys AND values (x2), for every layer, every KV head (n_kv_heads, not n_heads), head_dim "
            "numbers each, per token and sequence: 2 * n_layers * n_kv_heads * head_dim * context * batch * bytes")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    real, tiny = ModelConfig.mistral_7b_instruct_v02(), ModelConfig.tiny()
    cases = [(real, 1, 1, 2), (real, 32768, 1, 2), (real, 4096, 4, 4), (tiny, 1000, 2, 2)]
    wrong = {
        "your answer is half the right one: keys AND values are cached (factor 2)": 0.5,
        "your answer is n_heads/n_kv_heads = 4x too big: GQA caches only the 8 KV heads, not 32": 4.0,
        "your answer is 8x too big: bytes, not bits": 8.0,
    }

    def verify(_):
        for cfg, context, batch, nbytes in cases:
            got = _call(fn, cfg, context, batch, nbytes)
            if got is None:
                return "your function returned None (still the stub?)"
            expected = _kv_bytes(cfg, context, batch, nbytes)
            if not isinstance(got, (int, float)) or isinstance(got, bool):
                return f"return a number of bytes, got {type(got).__name__}"
            if got == expected:
                continue
            where = f"for {'the 7B' if cfg is real else 'tiny'}, context {context}, batch {batch}, {nbytes} bytes/value"
            ratio = got / expected if expected else float("nan")
            for message, r in wrong.items():
                if math.isclose(ratio, r, rel_tol=1e-9):
                    return f"{where}: {message}"
            if cfg is real and math.isclose(ratio, cfg.n_layers ** -1, rel_tol=1e-9):
                return f"{where}: you forgot the layers: every one of the 32 keeps its own cache"
            return f"{where}: got {got:,}, expected {expected:,.0f}"
        return None
    return check(fn, verify, hint, "128 KiB per token for the 7B in bf16, 4 GiB at 32k")


def check_weight_bytes(fn) -> bool:
    """fn(n_params, bits_per_weight) -> bytes of the weights alone."""
    hint = "each parameter takes bits_per_weight / 8 bytes: n_params * bits_per_weight / 8"
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)

    def verify(_):
        for n, bits in [(7_241_732_096, 16), (7_241_732_096, 4.85), (1000, 32)]:
            got = _call(fn, n, bits)
            if got is None:
                return "your function returned None (still the stub?)"
            if not isinstance(got, (int, float)):
                return f"return a number of bytes, got {type(got).__name__}"
            expected = n * bits / 8
            if math.isclose(got, expected, rel_tol=1e-9):
                continue
            if math.isclose(got, n * bits, rel_tol=1e-9):
                return "that is bits: divide by 8 for bytes"
            if math.isclose(got, expected / 2**30, rel_tol=1e-9):
                return "that is GiB: return bytes (the caller converts)"
            return f"for {n:,} parameters at {bits} bits: got {got:,}, expected {expected:,.0f}"
        return None
    return check(fn, verify, hint, "bf16 7B = 14.48 GB, as the files say")


# ----------------------------------------------------------------------------- sampling (06)

def _top_p(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs          # mass of the strictly better tokens
    sorted_probs = torch.where(before < p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum()


def check_top_p(fn) -> bool:
    """fn(probs, p) -> probs with only the nucleus kept, renormalised to sum to 1."""
    hint = ("sort descending; keep a token while the mass of the tokens BEFORE it is < p (so the one "
            "that crosses p is kept); zero the rest, put them back in vocabulary order, divide by the sum")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    probs = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])

    def verify(_):
        for p in (0.5, 0.8, 1.0):
            got = _call(fn, probs.clone(), p)
            if got is None:
                return "your function returned None (still the stub?)"

            def cut_inclusive():
                s, o = probs.sort(descending=True)
                s = torch.where(s.cumsum(-1) <= p, s, torch.zeros_like(s))
                kept = torch.zeros_like(probs).scatter(-1, o, s)
                return kept / kept.sum() if kept.sum() > 0 else kept

            def not_renormalised():
                kept = _top_p(probs, p)
                return kept * (probs * (kept > 0)).sum()

            problem = _diagnose(got, _top_p(probs, p), {
                "you dropped the token that crosses p: keep tokens while the mass BEFORE them is < p":
                    cut_inclusive,
                "the kept probabilities do not sum to 1: divide by their sum": not_renormalised,
                "the tokens are out of place: scatter the kept probabilities back to their vocabulary ids":
                    lambda: _top_p(probs, p).sort(descending=True).values,
            })
            if problem:
                return f"top_p={p}: {problem}"
        return None
    return check(fn, verify, hint, "this is the nucleus generate() samples from")


def check_rolling_slot(fn) -> bool:
    """fn(position, window) -> the rolling-buffer slot that position is written to."""
    hint = "the buffer has `window` slots and position p overwrites the oldest one: p % window"
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)

    def verify(_):
        for pos, window in [(0, 4), (3, 4), (4, 4), (9, 4), (5000, 4096), (4095, 4096)]:
            got = _call(fn, pos, window)
            if got is None:
                return "your function returned None (still the stub?)"
            if got != pos % window:
                return f"position {pos}, window {window}: got {got}, expected {pos % window}"
        return None
    return check(fn, verify, hint, "positions wrap around the window")


# ----------------------------------------------------------------------------- attention patterns (08)

def _random_pattern(seed: int, batch=2, heads=3, seq=7) -> torch.Tensor:
    scores = torch.randn(batch, heads, seq, seq, generator=_gen(seed))
    mask = torch.ones(seq, seq, dtype=torch.bool).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)    # (batch, heads, q, k)


def check_previous_token_scores(fn) -> bool:
    """fn(pattern (batch, heads, q, k)) -> (heads,) mean attention on the key just before each query."""
    hint = ("the entries pattern[b, h, i, i-1] for i = 1..seq-1 form the diagonal below the main one: "
            "pattern.diagonal(offset=-1, dim1=-2, dim2=-1), then average over batch and positions")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    pattern = _random_pattern(4)

    def verify(_):
        got = _call(fn, pattern.clone())
        if got is None:
            return "your function returned None (still the stub?)"
        return _diagnose(got, previous_token_score(pattern), {
            "that is the main diagonal (attention to the token itself): use offset=-1":
                lambda: pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1)),
            "that is a sum: average over the positions (and batch), so scores are in [0, 1]":
                lambda: pattern.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0),
            "you included query 0, whose 'previous token' wraps around to the last key":
                lambda: pattern[..., torch.arange(7), torch.arange(7) - 1].mean(dim=(0, -1)),
        })
    return check(fn, verify, hint, "previous-token scores per head")


def check_head_entropy(fn) -> bool:
    """fn(pattern) -> (heads,) mean over batch and queries of -sum_k p log p (natural log)."""
    hint = ("entropy of one row is -sum(p * log p) over the keys, with 0 * log 0 = 0 (masked keys have "
            "p = 0: use torch.where(p > 0, p * p.log(), 0)); average over batch and queries")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    pattern = _random_pattern(5)

    def verify(_):
        got = _call(fn, pattern.clone())
        if got is None:
            return "your function returned None (still the stub?)"
        ref = head_entropy(pattern)
        if isinstance(got, torch.Tensor) and got.shape == ref.shape and torch.isnan(got).any():
            return "you got NaN: masked keys have p = 0 and 0 * log(0) is NaN in floats; treat it as 0"
        return _diagnose(got, ref, {
            "the sign is flipped: entropy is MINUS sum p log p (it is never negative)": lambda: -ref,
            "you used log2 (bits); use the natural log (nats) here": lambda: ref / math.log(2),
        })
    return check(fn, verify, hint, "0 for a head that looks at one token, log(k) for a uniform one")


# ----------------------------------------------------------------------------- induction heads (09, 10)

def repeated_tokens(vocab_size: int, period: int = 20, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """BOS, then `period` random tokens, then the same tokens again: (batch, 1 + 2 * period).

    On the second copy an induction head at position i attends to the token right after the earlier
    copy of token i, which sits period - 1 positions back.
    """
    low = min(1000, vocab_size // 2)   # avoid BOS/EOS, bytes and the rarest-trained ids
    half = torch.randint(low, vocab_size, (batch, period), generator=_gen(seed))
    bos = torch.ones(batch, 1, dtype=torch.long)
    return torch.cat([bos, half, half], dim=1)                 # (batch, 1 + 2 * period)


def check_induction_scores(fn) -> bool:
    """fn(pattern, period) -> (heads,) induction scores on a repeated_tokens() sequence."""
    hint = ("for each query i in the second copy (i = period+1 .. 2*period) take pattern[..., i, i - period + 1]: "
            "the token AFTER the earlier copy of token i (that one predicts what comes next); average "
            "over batch and those queries")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    period = 5
    pattern = _random_pattern(6, seq=2 * period + 1)
    q = torch.arange(period + 1, 2 * period + 1)

    def verify(_):
        got = _call(fn, pattern.clone(), period)
        if got is None:
            return "your function returned None (still the stub?)"
        return _diagnose(got, induction_score(pattern, period), {
            "that is the earlier copy of the SAME token (i - period, a duplicate-token head); an induction "
            "head looks one further, at i - period + 1": lambda: pattern[..., q, q - period].mean(dim=(0, -1)),
            "that is the previous token (i - 1): a previous-token head, not an induction head":
                lambda: pattern[..., q, q - 1].mean(dim=(0, -1)),
            "you averaged over every query, including the first copy where nothing can be predicted":
                lambda: pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1).mean(dim=(0, -1)),
        })
    return check(fn, verify, hint, "induction scores per head")


def model_induction_scores(model, period: int = 20, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """(n_layers, n_heads) induction scores of a model on repeated_tokens()."""
    return induction_scores(model, repeated_tokens(model.cfg.vocab_size, period, batch, seed).to(model.device), period)


def check_induction_head(answer, model, period: int = 20, batch: int = 4, seed: int = 0) -> bool:
    """answer = (layer, head): the head with the highest induction score on repeated_tokens(...)."""
    hint = ("run model.run_with_cache on repeated_tokens(vocab, period, batch, seed), score every "
            "layer's pattern with induction_scores, and take the (layer, head) of the largest score "
            "(divmod(int(scores.argmax()), n_heads))")

    def verify(a):
        if not (isinstance(a, tuple) and len(a) == 2 and all(isinstance(i, int) for i in a)):
            return f"answer with a (layer, head) tuple of ints, got {a!r}"
        scores = model_induction_scores(model, period, batch, seed)
        layer, head = a
        if not (0 <= layer < scores.shape[0] and 0 <= head < scores.shape[1]):
            return f"({layer}, {head}) is not a head of this model ({scores.shape[0]} layers x {scores.shape[1]} heads)"
        best = float(scores.max())
        if float(scores[layer, head]) >= best - 1e-6:
            return None
        return (f"head ({layer}, {head}) scores {float(scores[layer, head]):.3f}, but the best scores {best:.3f}"
                " - did you take the argmax of the flattened (layer, head) grid and unflatten it?")
    return check(answer, verify, hint, "that is the model's strongest induction head")


# ----------------------------------------------------------------------------- activation patching (09, 10)

def _checker_model() -> Transformer:
    """A small deterministic model so the patching check costs the same on any machine."""
    cfg = ModelConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2, vocab_size=50)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Transformer(cfg)
    return model.eval().requires_grad_(False)


def patch_resid_pre(model, clean_tokens, corrupted_tokens, layer: int, position: int,
                    hook: str = "hook_resid_pre", positions=None) -> torch.Tensor:
    """Logits of the corrupted run with one residual-stream vector taken from the clean run."""
    name = f"layers.{layer}.{hook}"
    _, clean = model.run_with_cache(clean_tokens, names=[name])
    where = [position] if positions is None else positions

    def patch(x, _hook):
        x = x.clone()
        x[:, where] = clean[name][:, where]
        return x

    with model.hooks([(name, patch)]):
        return model(corrupted_tokens)


def check_patching(fn) -> bool:
    """fn(model, clean_tokens, corrupted_tokens, layer, position) -> logits of the patched corrupted run.

    The patch replaces layers.{layer}.hook_resid_pre at one position by its value in the clean run.
    """
    hint = ("1) _, clean = model.run_with_cache(clean_tokens, names=[name]) with "
            "name = f'layers.{layer}.hook_resid_pre'; 2) a hook that clones x and sets "
            "x[:, position] = clean[name][:, position]; 3) with model.hooks([(name, hook)]): return model(corrupted_tokens)")
    if fn is None or not callable(fn):
        return check(None if fn is None else fn, lambda a: "expected a function", hint)
    model = _checker_model()
    clean = torch.tensor([[1, 7, 12, 30, 4, 9]])
    corrupted = torch.tensor([[1, 7, 25, 30, 4, 9]])

    def verify(_):
        for layer, position in [(1, 2), (0, 4)]:
            got = _call(fn, model, clean.clone(), corrupted.clone(), layer, position)
            if got is None:
                return "your function returned None (still the stub?)"
            problem = _diagnose(got, patch_resid_pre(model, clean, corrupted, layer, position), {
                "these are the corrupted logits unchanged: did the hook return the patched tensor?":
                    lambda: model(corrupted),
                "these are the clean logits: either you ran the clean tokens, or you patched every "
                "position; run the CORRUPTED tokens with only `position` taken from the clean run":
                    lambda: model(clean),
                "you patched hook_resid_post (the block's output), not hook_resid_pre (its input)":
                    lambda: patch_resid_pre(model, clean, corrupted, layer, position, hook="hook_resid_post"),
            }, atol=1e-4)
            if problem:
                return f"layer {layer}, position {position}: {problem}"
        return None
    return check(fn, verify, hint, "patched logits match")
