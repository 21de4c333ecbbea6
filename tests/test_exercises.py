"""The workshop checkers (notebooks 06-10) reject the common wrong answers, each with its own hint.

The solutions notebook proves that they accept right answers; here one right answer per checker
guards against a checker that rejects everything, and each wrong answer must be rejected with the
message that names its mistake.
"""
import math

import pytest
import torch

import mistral_edu as me
from mistral_edu.exercises import workshop as ws


def verdict(capsys, checker, answer, *args):
    ok = checker(answer, *args)
    return ok, capsys.readouterr().out


def rejects(capsys, checker, answer, words, *args):
    ok, out = verdict(capsys, checker, answer, *args)
    assert not ok, out
    assert out.startswith("not solved yet"), out
    assert words in out, out


def accepts(capsys, checker, answer, *args):
    ok, out = verdict(capsys, checker, answer, *args)
    assert ok, out
    assert out.startswith("correct"), out


# ----------------------------------------------------------------------------- stubs never raise

@pytest.mark.parametrize("checker", [
    ws.check_rmsnorm, ws.check_rope, ws.check_repeat_kv, ws.check_decode_step, ws.check_kv_cache_bytes,
    ws.check_weight_bytes, ws.check_top_p, ws.check_rolling_slot, ws.check_previous_token_scores,
    ws.check_head_entropy, ws.check_induction_scores, ws.check_patching])
def test_stub_and_crash_are_reported_not_raised(capsys, checker):
    rejects(capsys, checker, lambda *a: None, "hint")
    rejects(capsys, checker, None, "hint")

    def crashes(*args):
        raise RuntimeError("boom")
    rejects(capsys, checker, crashes, "boom")


# ----------------------------------------------------------------------------- RMSNorm

def test_rmsnorm(capsys):
    accepts(capsys, ws.check_rmsnorm, lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w)
    rejects(capsys, ws.check_rmsnorm, lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w,
            "ignores eps")
    rejects(capsys, ws.check_rmsnorm, lambda x, w, eps: x * torch.rsqrt(x.mean(-1, keepdim=True) + eps) * w,
            "mean of the SQUARES")
    rejects(capsys, ws.check_rmsnorm,
            lambda x, w, eps: torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps) * w, "LayerNorm")
    rejects(capsys, ws.check_rmsnorm, lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),
            "weight (gain) is missing")
    rejects(capsys, ws.check_rmsnorm, lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w,
            "eps is outside the root")
    rejects(capsys, ws.check_rmsnorm, lambda x, w, eps: x.abs(), "differ")


# ----------------------------------------------------------------------------- RoPE

def rope_neighbours(x, positions, theta, sign=1.0, start=None):
    hd = x.shape[-1]
    inv = theta ** (-torch.arange(0, hd, 2).double() / hd)
    pos = positions.double() if start is None else torch.arange(start, start + x.shape[1]).double()
    ang = sign * pos[:, None] * inv                          # (seq, hd/2)
    cos, sin = ang.cos()[None, :, None].float(), ang.sin()[None, :, None].float()
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)


def test_rope(capsys):
    accepts(capsys, ws.check_rope, rope_neighbours)
    rejects(capsys, ws.check_rope, ws._rope_rotate_half, "rotate-half")
    rejects(capsys, ws.check_rope, lambda x, p, t: rope_neighbours(x, p, t, sign=-1.0), "wrong way")
    rejects(capsys, ws.check_rope, lambda x, p, t: rope_neighbours(x, p, t, start=0), "ignores the positions")
    rejects(capsys, ws.check_rope, lambda x, p, t: rope_neighbours(x, p, 1e4), "theta is 1e4")
    rejects(capsys, ws.check_rope, lambda x, p, t: x, "differ")


# ----------------------------------------------------------------------------- repeat_kv

def test_repeat_kv(capsys):
    accepts(capsys, ws.check_repeat_kv, lambda x, n: x.repeat_interleave(n, dim=2))
    accepts(capsys, ws.check_repeat_kv,
            lambda x, n: x[:, :, :, None].expand(*x.shape[:3], n, x.shape[-1]).reshape(*x.shape[:2], -1, x.shape[-1]))
    rejects(capsys, ws.check_repeat_kv, lambda x, n: x.repeat(1, 1, n, 1), ".repeat")
    rejects(capsys, ws.check_repeat_kv, lambda x, n: x.repeat_interleave(n, dim=1), "shape")


# ----------------------------------------------------------------------------- one cached decoding step

def decode_step(q, k_new, v_new, k_cache, v_cache, append=True, scale=True, interleave=True):
    k = torch.cat([k_cache, k_new[None]]) if append else k_cache
    v = torch.cat([v_cache, v_new[None]]) if append else v_cache
    n_rep = q.shape[0] // k.shape[1]
    kr = k.repeat_interleave(n_rep, 1) if interleave else k.repeat(1, n_rep, 1)
    vr = v.repeat_interleave(n_rep, 1) if interleave else v.repeat(1, n_rep, 1)
    scores = torch.einsum("hd,khd->hk", q, kr) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    z = torch.einsum("hk,khd->hd", scores.softmax(-1), vr)
    return z, torch.cat([k_cache, k_new[None]]), torch.cat([v_cache, v_new[None]])


def test_decode_step(capsys):
    accepts(capsys, ws.check_decode_step, decode_step)
    rejects(capsys, ws.check_decode_step, lambda *a: decode_step(*a, append=False), "attend to itself")
    rejects(capsys, ws.check_decode_step, lambda *a: decode_step(*a, scale=False), "sqrt(head_dim)")
    rejects(capsys, ws.check_decode_step, lambda *a: decode_step(*a, interleave=False), "repeat_interleave")
    rejects(capsys, ws.check_decode_step, lambda q, kn, vn, kc, vc: (decode_step(q, kn, vn, kc, vc)[0], kc, vc),
            "returned cache is wrong")
    rejects(capsys, ws.check_decode_step, lambda *a: decode_step(*a)[0], "three things")


# ----------------------------------------------------------------------------- memory arithmetic

def test_kv_cache_bytes(capsys):
    right = lambda c, ctx, b, nb: 2 * c.n_layers * c.n_kv_heads * c.head_dim * ctx * b * nb
    accepts(capsys, ws.check_kv_cache_bytes, right)
    rejects(capsys, ws.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) // 2, "factor 2")
    rejects(capsys, ws.check_kv_cache_bytes,
            lambda c, ctx, b, nb: 2 * c.n_layers * c.n_heads * c.head_dim * ctx * b * nb, "8 KV heads")
    rejects(capsys, ws.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) * 8, "bits")
    rejects(capsys, ws.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) // c.n_layers, "layers")
    rejects(capsys, ws.check_kv_cache_bytes, lambda c, ctx, b, nb: 2 * c.n_layers * c.n_kv_heads * ctx * b * nb, "got")
    rejects(capsys, ws.check_kv_cache_bytes, lambda c, ctx, b, nb: str(right(c, ctx, b, nb)), "a number")


def test_weight_bytes(capsys):
    accepts(capsys, ws.check_weight_bytes, lambda n, bits: n * bits / 8)
    rejects(capsys, ws.check_weight_bytes, lambda n, bits: n * bits, "bits")
    rejects(capsys, ws.check_weight_bytes, lambda n, bits: n * bits / 8 / 2**30, "GiB")
    rejects(capsys, ws.check_weight_bytes, lambda n, bits: n * 2, "expected")


# ----------------------------------------------------------------------------- sampling

def test_top_p(capsys):
    accepts(capsys, ws.check_top_p, ws._top_p)

    def sampler_frequencies(probs, p):
        # what the package's own sampler draws, counted: it must agree with the checker's nucleus
        from mistral_edu.generation import sample_next
        g = torch.Generator().manual_seed(0)
        draws = sample_next(probs.log()[None].expand(20000, -1), 1.0, p, g)
        freq = torch.bincount(draws, minlength=probs.numel()).float() / 20000
        return torch.where(freq > 0, ws._top_p(probs, p), 0.0) if (freq > 0).eq(ws._top_p(probs, p) > 0).all() else freq
    accepts(capsys, ws.check_top_p, sampler_frequencies)

    def inclusive(probs, p):
        s, o = probs.sort(descending=True)
        s = torch.where(s.cumsum(-1) <= p, s, torch.zeros_like(s))
        kept = torch.zeros_like(probs).scatter(-1, o, s)
        return kept / kept.sum()
    rejects(capsys, ws.check_top_p, inclusive, "crosses p")
    rejects(capsys, ws.check_top_p, lambda probs, p: ws._top_p(probs, p) * (probs * (ws._top_p(probs, p) > 0)).sum(),
            "sum to 1")
    rejects(capsys, ws.check_top_p, lambda probs, p: ws._top_p(probs, p).sort(descending=True).values, "out of place")
    rejects(capsys, ws.check_top_p, lambda probs, p: probs, "top_p=0.5")


def test_rolling_slot(capsys):
    accepts(capsys, ws.check_rolling_slot, lambda pos, w: pos % w)
    rejects(capsys, ws.check_rolling_slot, lambda pos, w: min(pos, w - 1), "expected")
    rejects(capsys, ws.check_rolling_slot, lambda pos, w: (pos + 1) % w, "expected")


# ----------------------------------------------------------------------------- attention patterns

def test_previous_token_scores(capsys):
    accepts(capsys, ws.check_previous_token_scores,
            lambda p: torch.stack([p[:, :, i, i - 1] for i in range(1, p.shape[-1])], -1).mean(dim=(0, -1)))
    rejects(capsys, ws.check_previous_token_scores, lambda p: p.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1)),
            "main diagonal")
    rejects(capsys, ws.check_previous_token_scores,
            lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0), "sum")
    rejects(capsys, ws.check_previous_token_scores,
            lambda p: p[..., torch.arange(p.shape[-1]), torch.arange(p.shape[-1]) - 1].mean(dim=(0, -1)), "query 0")


def test_head_entropy(capsys):
    accepts(capsys, ws.check_head_entropy,
            lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1).mean(dim=(0, -1)))
    rejects(capsys, ws.check_head_entropy, lambda p: -(p * p.log()).sum(-1).mean(dim=(0, -1)), "NaN")
    rejects(capsys, ws.check_head_entropy, lambda p: (p * p.clamp_min(1e-30).log()).sum(-1).mean(dim=(0, -1)),
            "sign")
    rejects(capsys, ws.check_head_entropy, lambda p: -(p * p.clamp_min(1e-30).log2()).sum(-1).mean(dim=(0, -1)),
            "log2")


# ----------------------------------------------------------------------------- induction heads

def test_induction_scores(capsys):
    def right(p, period):
        q = torch.arange(period + 1, 2 * period + 1)
        return p[..., q, q - period + 1].mean(dim=(0, -1))
    accepts(capsys, ws.check_induction_scores, right)
    q_dup = lambda p, t: p[..., torch.arange(t + 1, 2 * t + 1), torch.arange(1, t + 1)].mean(dim=(0, -1))
    rejects(capsys, ws.check_induction_scores, q_dup, "duplicate-token")
    q_prev = lambda p, t: p[..., torch.arange(t + 1, 2 * t + 1), torch.arange(t, 2 * t)].mean(dim=(0, -1))
    rejects(capsys, ws.check_induction_scores, q_prev, "previous-token")
    rejects(capsys, ws.check_induction_scores,
            lambda p, t: p.diagonal(offset=-(t - 1), dim1=-2, dim2=-1).mean(dim=(0, -1)), "every query")


def test_repeated_tokens_shape_and_repeat():
    tokens = ws.repeated_tokens(32000, period=7, batch=3, seed=1)
    assert tokens.shape == (3, 15)
    assert (tokens[:, 0] == 1).all()
    assert torch.equal(tokens[:, 1:8], tokens[:, 8:])


def test_induction_head_checker_on_a_model(capsys):
    model = ws._checker_model()
    scores = ws.model_induction_scores(model, period=6, batch=2)
    assert scores.shape == (2, 4)
    best = divmod(int(scores.argmax()), 4)
    worst = divmod(int(scores.argmin()), 4)
    accepts(capsys, ws.check_induction_head, best, model, 6, 2)
    ok, out = verdict(capsys, ws.check_induction_head, worst, model, 6, 2)
    assert not ok and "the best scores" in out
    ok, out = verdict(capsys, ws.check_induction_head, (5, 0), model, 6, 2)
    assert not ok and "not a head" in out
    ok, out = verdict(capsys, ws.check_induction_head, [0, 1], model, 6, 2)
    assert not ok and "tuple" in out


# ----------------------------------------------------------------------------- activation patching

def patch(model, clean, corrupted, layer, position, hook="hook_resid_pre", everywhere=False, returns=True):
    name = f"layers.{layer}.{hook}"
    _, cache = model.run_with_cache(clean, names=[name])

    def fn(x, _):
        x = x.clone()
        if everywhere:
            x[:] = cache[name]
        else:
            x[:, position] = cache[name][:, position]
        return x if returns else None

    with model.hooks([(name, fn)]):
        return model(corrupted)


def test_patching(capsys):
    accepts(capsys, ws.check_patching, patch)
    rejects(capsys, ws.check_patching, lambda *a: patch(*a, returns=False), "unchanged")
    rejects(capsys, ws.check_patching, lambda m, c, k, l, p: m(c), "clean logits")
    rejects(capsys, ws.check_patching, lambda *a: patch(*a, everywhere=True), "patched every")
    rejects(capsys, ws.check_patching, lambda *a: patch(*a, hook="hook_resid_post"), "hook_resid_post")


def test_reference_patch_changes_the_run():
    model = ws._checker_model()
    clean, corrupted = torch.tensor([[1, 7, 12, 30]]), torch.tensor([[1, 7, 25, 30]])
    patched = ws.patch_resid_pre(model, clean, corrupted, 0, 2)
    assert not torch.allclose(patched, model(corrupted))
    # patching every position at layer 0 recovers the clean run exactly
    full = ws.patch_resid_pre(model, clean, corrupted, 0, 2, positions=slice(None))
    assert torch.allclose(full, model(clean), atol=1e-5)
