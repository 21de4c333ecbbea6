"""Every checker names the specific mistake of at least five conceptual wrong answers, and accepts
other right answers than the revealed solution, in the natural forms (tensor, numpy, list; Python,
numpy and 0-d torch numbers)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu import exercises as ex
from mistral_edu.exercises.patching import _checker_model, patch_resid_pre
from mistral_edu.exercises.rope import rotate_half_rope
from mistral_edu.generation import top_p_filter
from mistral_edu.memory import parameter_count
from mistral_edu.model import rms_norm

REAL = me.ModelConfig.mistral_7b_instruct_v02()


def accepts(capsys, checker, answer, *args):
    ok = checker(answer, *args)
    out = capsys.readouterr().out
    assert ok and out.startswith("correct"), out


def rejects(capsys, checker, answer, words, *args):
    ok = checker(answer, *args)
    out = capsys.readouterr().out
    assert not ok and out.startswith("not solved yet"), out
    assert words in out, out
    assert "checker itself failed" not in out, out


def as_numpy(fn):
    return lambda *a: np.asarray(fn(*a))


def as_list(fn):
    return lambda *a: fn(*a).tolist()


def accepts_every_form(capsys, checker, fn, *args):
    """A right tensor answer passes as a tensor, a numpy array and a nested list."""
    for form in (fn, as_numpy(fn), as_list(fn)):
        accepts(capsys, checker, form, *args)


@pytest.fixture(scope="module")
def tok():
    return me.load_tokenizer()


# ------------------------------------------------------------------ tokenizer (01)

def test_chat_ids(capsys, tok):
    def by_hand(messages, bos_each=False, eos=True, system_turn=False, last=False, joiner="\n\n"):
        system = messages[0]["content"] if messages[0]["role"] == "system" and not system_turn else None
        turns = messages[1:] if system else messages
        users = [i for i, m in enumerate(turns) if m["role"] in ("user", "system")]
        target = users[-1] if last else 0
        ids = [tok.bos_id]
        for i, m in enumerate(turns):
            if m["role"] in ("user", "system"):
                content = f"{system}{joiner}{m['content']}" if i == target and system else m["content"]
                ids += tok.encode(f"[INST] {content} [/INST]", bos=bos_each)
            else:
                ids += tok.encode(m["content"], bos=bos_each) + ([tok.eos_id] if eos else [])
        return ids

    accepts(capsys, ex.check_chat_ids, by_hand, tok)
    accepts(capsys, ex.check_chat_ids, lambda m: torch.tensor(by_hand(m)), tok)
    accepts(capsys, ex.check_chat_ids, lambda m: np.array(by_hand(m)), tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m, last=True), "LAST user message", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m, joiner="\n"), "blank line", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: " ".join(map(str, by_hand(m))), "list of ints", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m)[1:], "BOS = 1", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m, bos_each=True), "BOS comes once", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m, eos=False), "end with EOS", tok)
    rejects(capsys, ex.check_chat_ids, lambda m: by_hand(m, system_turn=True), "not a turn of its own", tok)
    one_string = lambda m: tok.encode("".join(f"[INST] {x['content']} [/INST]" for x in m if x["role"] == "user"))
    rejects(capsys, ex.check_chat_ids, one_string, "first difference", tok)


def test_bytes_to_text(capsys):
    accepts(capsys, ex.check_bytes_to_text, lambda p: bytes(int(x[3:5], 16) for x in p).decode("utf-8"))
    rejects(capsys, ex.check_bytes_to_text, lambda p: "".join(chr(int(x[3:5], 16)) for x in p), "(chr)")
    rejects(capsys, ex.check_bytes_to_text, lambda p: "".join(p), "names of bytes")
    rejects(capsys, ex.check_bytes_to_text,
            lambda p: "".join(bytes([int(x[3:5], 16)]).decode("utf-8", "replace") for x in p), "one at a time")
    rejects(capsys, ex.check_bytes_to_text,
            lambda p: "".join(bytes([int(x[3:5], 16)]).decode("utf-8", "ignore") for x in p), "dropped the errors")
    rejects(capsys, ex.check_bytes_to_text, lambda p: "".join(x[3:5] for x in p), "hexadecimal")
    rejects(capsys, ex.check_bytes_to_text, lambda p: [int(x[3:5], 16) for x in p], "as a str")


# ------------------------------------------------------------------ memory (00, 04, 05, 07)

def test_weight_gib(capsys):
    n = parameter_count(REAL)
    accepts(capsys, ex.check_weight_gib, n / 2**30)
    accepts(capsys, ex.check_weight_gib, np.float64(n / 2**30))
    accepts(capsys, ex.check_weight_gib, torch.tensor(n / 2**30))
    rejects(capsys, ex.check_weight_gib, n / 1e9, "GB")
    rejects(capsys, ex.check_weight_gib, n * 2 / 2**30, "bfloat16")
    rejects(capsys, ex.check_weight_gib, n * 4 / 2**30, "float32")
    rejects(capsys, ex.check_weight_gib, n / 2 / 2**30, "4-bit")
    rejects(capsys, ex.check_weight_gib, n, "that is bytes")
    rejects(capsys, ex.check_weight_gib, n / 2**20, "MiB")
    rejects(capsys, ex.check_weight_gib, "6.74", "a Python, numpy or 0-d torch number")


def test_tokens_that_fit(capsys):
    free = 24 * 2**30 - parameter_count(REAL) * 2
    accepts(capsys, ex.check_tokens_that_fit, free // (2 * 32 * 8 * 128 * 2))
    rejects(capsys, ex.check_tokens_that_fit, free // (32 * 8 * 128 * 2), "counts only K")
    rejects(capsys, ex.check_tokens_that_fit, free // (2 * 32 * 32 * 128 * 2), "8 key/value heads")
    rejects(capsys, ex.check_tokens_that_fit, free // (2 * 8 * 128 * 2), "32 layers")
    rejects(capsys, ex.check_tokens_that_fit, 24 * 2**30 // (2 * 32 * 8 * 128 * 2), "subtract them")
    rejects(capsys, ex.check_tokens_that_fit, math.ceil(free / (2 * 32 * 8 * 128 * 2)), "rounded up")
    rejects(capsys, ex.check_tokens_that_fit, free / (2 * 32 * 8 * 128 * 2), "exact quotient")
    accepts(capsys, ex.check_tokens_that_fit, np.int64(free // (2 * 32 * 8 * 128 * 2)))
    accepts(capsys, ex.check_tokens_that_fit, torch.tensor(free // (2 * 32 * 8 * 128 * 2)))


def test_kv_bytes_per_token(capsys):
    right = lambda c, b: 2 * c.n_layers * c.n_kv_heads * c.head_dim * b
    accepts(capsys, ex.check_kv_bytes_per_token, right)
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, b) // 2, "K-and-V factor of 2")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, 2), "hard-coded 2 bytes")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, 1), "forgot bytes_per_value")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, b) * c.n_heads // c.n_kv_heads, "n_kv_heads")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, b) // c.n_layers, "one layer")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, b) * 8, "bits")
    rejects(capsys, ex.check_kv_bytes_per_token, lambda c, b: right(c, b) + 1, "expected")
    accepts(capsys, ex.check_kv_bytes_per_token, lambda c, b: np.prod([2, c.n_layers, c.n_kv_heads, c.head_dim, b]))
    accepts(capsys, ex.check_kv_bytes_per_token, lambda c, b: torch.tensor(right(c, b)))


def test_kv_cache_bytes(capsys):
    kept = lambda c, ctx: min(ctx, c.sliding_window) if c.sliding_window else ctx
    right = lambda c, ctx, b, nb: 2 * c.n_layers * c.n_kv_heads * c.head_dim * kept(c, ctx) * b * nb
    accepts(capsys, ex.check_kv_cache_bytes, right)
    accepts(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: me.memory.kv_cache_bytes(
        c, ctx, b, {1: "fp8", 2: "bf16", 4: "fp32"}[nb]))
    accepts(capsys, ex.check_kv_cache_bytes,
            lambda c, ctx, b, nb: np.prod([2, c.n_layers, c.n_kv_heads, c.head_dim, kept(c, ctx), b, nb]))
    no_window = lambda c, ctx, b, nb: 2 * c.n_layers * c.n_kv_heads * c.head_dim * ctx * b * nb
    rejects(capsys, ex.check_kv_cache_bytes, no_window, "ignored the sliding window")
    rejects(capsys, ex.check_kv_cache_bytes,
            lambda c, ctx, b, nb: 2 * c.n_layers * c.n_kv_heads * c.head_dim * (c.sliding_window or ctx) * b * nb,
            "shorter than the window")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, 1, nb), "forgot the batch")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) // 2, "K-and-V factor of 2")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, 2), "hard-coded 2 bytes")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, 1), "forgot bytes_per_value")
    rejects(capsys, ex.check_kv_cache_bytes,
            lambda c, ctx, b, nb: 2 * c.n_layers * c.n_heads * c.head_dim * kept(c, ctx) * b * nb, "n_kv_heads")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) * 8, "bits")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) // c.n_layers, "one layer")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: right(c, ctx, b, nb) + 1, "expected")
    rejects(capsys, ex.check_kv_cache_bytes, lambda c, ctx, b, nb: str(right(c, ctx, b, nb)), "a number")


def test_weight_bytes(capsys):
    accepts(capsys, ex.check_weight_bytes, lambda n, bits: n * bits / 8)
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * bits, "that is bits")
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * bits / 8 / 2**30, "GiB")
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * bits / 8 / 1e9, "GB")
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * 2, "always 2 bytes")
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * math.ceil(bits / 8), "whole bytes")
    rejects(capsys, ex.check_weight_bytes, lambda n, bits: n * bits / 8 + 1, "expected")
    accepts(capsys, ex.check_weight_bytes, lambda n, bits: np.float32(n) * np.float64(bits) / 8)


def test_block_parameters(capsys):
    right = lambda c: c.dim * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads) + 3 * c.dim * c.hidden_dim + 2 * c.dim
    accepts(capsys, ex.check_block_parameters, right)
    assert right(REAL) * REAL.n_layers + 2 * REAL.vocab_size * REAL.dim + REAL.dim == parameter_count(REAL)
    rejects(capsys, ex.check_block_parameters, lambda c: right(c) - 2 * c.dim, "RMSNorm gains")
    rejects(capsys, ex.check_block_parameters,
            lambda c: 4 * c.dim * c.n_heads * c.head_dim + 3 * c.dim * c.hidden_dim + 2 * c.dim, "n_kv_heads")
    rejects(capsys, ex.check_block_parameters, lambda c: right(c) - c.dim * c.hidden_dim, "three")
    rejects(capsys, ex.check_block_parameters, lambda c: right(c) - 3 * c.dim * c.hidden_dim + 12 * c.dim * c.dim,
            "not 4 x dim")
    rejects(capsys, ex.check_block_parameters,
            lambda c: 2 * c.dim * c.dim + 2 * c.dim * c.n_kv_heads * c.head_dim + 3 * c.dim * c.hidden_dim + 2 * c.dim,
            "need not be dim x dim")
    rejects(capsys, ex.check_block_parameters, lambda c: right(c) + c.vocab_size * c.dim, "embedding table")
    rejects(capsys, ex.check_block_parameters, lambda c: right(c) - c.dim, "one RMSNorm gain")
    accepts(capsys, ex.check_block_parameters, lambda c: np.int64(right(c)))


# ------------------------------------------------------------------ the block (05)

def block(h, layer, rotations, span, norm1="attention_norm", norm2="ffn_norm", first=True, second=True,
          second_from_input=False):
    """One block from its pieces, with the residuals and the norms a learner might wire differently."""
    attn_out = layer.attention(getattr(layer, norm1)(h), rotations, span)
    mid = h + attn_out if first else attn_out
    mlp_out = layer.feed_forward(getattr(layer, norm2)(mid))
    return (h if second_from_input else mid) + mlp_out if second else mlp_out


def block_by_hand(h, layer, rotations, span):
    """The block with notebook 02's rms_norm and section 1's SwiGLU written out: another natural correct form."""
    def norm(x, module):
        return rms_norm(x, module.weight, module.eps)
    ff = layer.feed_forward
    h = h + layer.attention(norm(h, layer.attention_norm), rotations, span)
    x = norm(h, layer.ffn_norm)
    return h + (F.silu(x @ ff.w1.weight.T) * (x @ ff.w3.weight.T)) @ ff.w2.weight.T


def in_place(h, layer, rotations, span):
    h += layer.attention(layer.attention_norm(h), rotations, span)
    h += layer.feed_forward(layer.ffn_norm(h))
    return h


def float32_stream(h, layer, rotations, span):
    """The stream kept in float32 and cast back at the end, each piece fed h's dtype: more exact, still right."""
    x = h.float()
    x = x + layer.attention(layer.attention_norm(x.type_as(h)), rotations, span).float()
    x = x + layer.feed_forward(layer.ffn_norm(x.type_as(h))).float()
    return x.type_as(h)


def test_transformer_block(capsys):
    accepts(capsys, ex.check_transformer_block, block)
    accepts(capsys, ex.check_transformer_block, block_by_hand)
    accepts(capsys, ex.check_transformer_block, in_place)
    accepts(capsys, ex.check_transformer_block, lambda *a: block(*a).float().numpy())
    accepts(capsys, ex.check_transformer_block, lambda *a: block(*a).tolist())
    accepts(capsys, ex.check_transformer_block, float32_stream)

    def post_norm(h, layer, rotations, span):
        h = layer.attention_norm(h + layer.attention(h, rotations, span))
        return layer.ffn_norm(h + layer.feed_forward(h))
    rejects(capsys, ex.check_transformer_block, post_norm, "post-norm")

    def norms_on_outputs(h, layer, rotations, span):
        h = h + layer.attention_norm(layer.attention(h, rotations, span))
        return h + layer.ffn_norm(layer.feed_forward(h))
    rejects(capsys, ex.check_transformer_block, norms_on_outputs, "normalised its sub-layer's output")

    def attention_reads_raw(h, layer, rotations, span):
        h = h + layer.attention(h, rotations, span)
        return h + layer.feed_forward(layer.ffn_norm(h))
    rejects(capsys, ex.check_transformer_block, attention_reads_raw, "attention read the raw stream")

    def ffn_reads_raw(h, layer, rotations, span):
        h = h + layer.attention(layer.attention_norm(h), rotations, span)
        return h + layer.feed_forward(h)
    rejects(capsys, ex.check_transformer_block, ffn_reads_raw, "feed-forward read the raw stream")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, first=False), "first residual is missing")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, second=False), "second residual is missing")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, first=False, second=False),
            "both residuals are missing")

    def normalised_in_place(h, layer, rotations, span):
        h = layer.attention_norm(h)
        h = h + layer.attention(h, rotations, span)
        h = layer.ffn_norm(h)
        return h + layer.feed_forward(h)
    rejects(capsys, ex.check_transformer_block, normalised_in_place, "normalised in place, before both")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, norm2="attention_norm"),
            "wrong norm before the feed-forward")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, norm1="ffn_norm", norm2="attention_norm"),
            "norms are swapped")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a, second_from_input=True),
            "adds the feed-forward's output to the block's input")

    def parallel(h, layer, rotations, span):
        return (h + layer.attention(layer.attention_norm(h), rotations, span)
                + layer.feed_forward(layer.ffn_norm(h)))
    rejects(capsys, ex.check_transformer_block, parallel, "parallel block")

    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a).float(), "came back as torch.float32")
    rejects(capsys, ex.check_transformer_block, lambda *a: block(*a).half(), "came back as torch.float16")
    rejects(capsys, ex.check_transformer_block, lambda h, *a: block(h.float(), *a),
            "the layer's weights are bfloat16")
    rejects(capsys, ex.check_transformer_block, lambda h, l, r, s: l(h, r, s), "from its pieces")
    rejects(capsys, ex.check_transformer_block, lambda *a: 2 * block(*a), "elements differ")


# ------------------------------------------------------------------ RMSNorm (02, 10)

def test_rms_norm(capsys):
    accepts(capsys, ex.check_rms_norm, rms_norm)
    accepts(capsys, ex.check_rms_norm, as_numpy(rms_norm))
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: x / (x.pow(2).mean(-1, keepdim=True) + e) * w,
            "without its square root")
    accepts(capsys, ex.check_rms_norm, lambda x, w, e: F.rms_norm(x.float(), (x.shape[-1],), eps=e).type_as(x) * w)
    no_float32 = lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e) * w
    rejects(capsys, ex.check_rms_norm, no_float32, "overflows float16")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: rms_norm(x.float(), w.float(), e), "cast the float32 result")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: rms_norm(x, w, 0.0), "ignores eps")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: x * torch.rsqrt(x.mean(-1, keepdim=True) + e) * w,
            "mean of the SQUARES")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: F.layer_norm(x, x.shape[-1:], eps=e) * w, "LayerNorm")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: rms_norm(x, torch.ones_like(w), e), "gain")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + e) * w,
            "eps is outside the root")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + e) * w,
            "wrong dimension")
    rejects(capsys, ex.check_rms_norm, lambda x, w, e: x.abs(), "elements differ; the worst is element")


def test_normalized_length(capsys):
    accepts(capsys, ex.check_normalized_length, math.sqrt(REAL.dim))
    rejects(capsys, ex.check_normalized_length, 1.0, "root-mean-square")
    rejects(capsys, ex.check_normalized_length, 4096, "squared length")
    rejects(capsys, ex.check_normalized_length, 1 / 64, "does not shrink")
    rejects(capsys, ex.check_normalized_length, 63.992, "not it")
    rejects(capsys, ex.check_normalized_length, math.sqrt(128), "embedded default's dim")
    rejects(capsys, ex.check_normalized_length, math.sqrt(2048), "halves the squared length")
    accepts(capsys, ex.check_normalized_length, np.sqrt(np.float32(REAL.dim)))
    accepts(capsys, ex.check_normalized_length, 64 / math.sqrt(1 + 1e-5))


# ------------------------------------------------------------------ RoPE (03, 10)

def rope_neighbours(x, positions, theta, sign=1.0, start=None, interleave=True, angle_dtype=torch.float64):
    hd = x.shape[-1]
    inv = theta ** (-torch.arange(0, hd, 2).to(angle_dtype) / hd)
    pos = positions.to(angle_dtype) if start is None else torch.arange(start, start + x.shape[1]).to(angle_dtype)
    ang = sign * pos[:, None] * inv                          # (seq, hd/2)
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    a, b = x[..., 0::2].to(cos.dtype), x[..., 1::2].to(cos.dtype)
    a2, b2 = a * cos - b * sin, a * sin + b * cos
    out = torch.stack([a2, b2], -1).flatten(-2) if interleave else torch.cat([a2, b2], -1)
    return out.to(x.dtype)


def test_rope(capsys):
    accepts(capsys, ex.check_rope, rope_neighbours)
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, t, interleave=False), "re-interleave")
    rejects(capsys, ex.check_rope, rotate_half_rope, "rotate-half")
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, t, sign=-1.0), "wrong way")
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, t, start=0), "ignores the positions")
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, 1e4), "hard-coded to 1e4")
    rejects(capsys, ex.check_rope, lambda x, p, t: x, "elements differ")
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, 1e6), "hard-coded to 1e6")
    in_x_dtype = lambda x, p, t: rope_neighbours(x, p, t, angle_dtype=x.dtype)
    rejects(capsys, ex.check_rope, in_x_dtype, "bfloat16 keeps 8 bits")
    rejects(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x.float(), p, t), "bfloat16 out")
    accepts(capsys, ex.check_rope, lambda x, p, t: rope_neighbours(x, p, t, angle_dtype=torch.float32))


def test_wavelength(capsys):
    accepts(capsys, ex.check_wavelength, lambda i, d, t: 2 * math.pi * t ** (2 * i / d))
    rejects(capsys, ex.check_wavelength, lambda i, d, t: t ** (2 * i / d), "2 * pi")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: t ** (-2 * i / d), "frequency")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: 2 * math.pi * t ** (i / d), "exponent")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: math.pi * t ** (2 * i / d), "half a turn")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: 360 * t ** (2 * i / d), "degrees")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: 2 * math.pi * t ** (-2 * i / d), "DIVIDED")
    rejects(capsys, ex.check_wavelength, lambda i, d, t: "long", "a Python, numpy or 0-d torch number")
    accepts(capsys, ex.check_wavelength, lambda i, d, t: np.float64(2 * np.pi * t ** (2 * i / d)))
    accepts(capsys, ex.check_wavelength, lambda i, d, t: torch.tensor(2 * math.pi * t ** (2 * i / d), dtype=torch.float64))


# ------------------------------------------------------------------ attention (04, 06, 10)

def grouped(q, k, v, scale=True, diagonal=1, dim=-1, fill=-math.inf, divisor=None, tiled=False, past=False):
    seq, n_heads, d = q.shape
    n_rep = n_heads // k.shape[1]
    k, v = (t.repeat(1, n_rep, 1) if tiled else t.repeat_interleave(n_rep, 1) for t in (k, v))   # (seq, n_heads, d)
    scores = torch.einsum("qhd,khd->hqk", q, k) / (divisor(d) if divisor else math.sqrt(d) if scale else 1.0)
    ones = torch.ones(seq, seq, dtype=torch.bool)
    hidden = ones.tril(-1) if past else ones.triu(diagonal)
    return torch.einsum("hqk,khd->qhd", scores.masked_fill(hidden, fill).softmax(dim), v)


def test_grouped_attention(capsys):
    accepts_every_form(capsys, ex.check_grouped_attention, grouped)
    accepts(capsys, ex.check_grouped_attention, lambda q, k, v: F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True, enable_gqa=True).transpose(0, 1))
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, tiled=True), "tiled")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, diagonal=q.shape[0]), "no causal mask")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, scale=False), "sqrt")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, divisor=lambda d: d), "1/head_dim")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, diagonal=0), "gives NaN")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, diagonal=0, fill=-1e9),
            "hides the diagonal as well")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: torch.nan_to_num(grouped(q, k, v, dim=-2)), "queries")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, diagonal=2), "one diagonal too far")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: grouped(q, k, v, past=True), "hid the past")
    rejects(capsys, ex.check_grouped_attention, lambda q, k, v: q * 0, "elements differ")


def test_repeat_kv(capsys):
    accepts(capsys, ex.check_repeat_kv,
            lambda x, n: x[:, :, :, None].expand(*x.shape[:3], n, x.shape[-1]).reshape(*x.shape[:2], -1, x.shape[-1]))
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x.repeat(1, 1, n, 1), "tiled")
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x.repeat_interleave(n, dim=1), "along the sequence")
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x, "unrepeated")
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x.repeat_interleave(x.shape[2], dim=2), "n_kv_heads times")
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x.repeat_interleave(n, dim=-1), "along head_dim")
    rejects(capsys, ex.check_repeat_kv, lambda x, n: x[:, :, :, None].expand(*x.shape[:3], n, x.shape[-1]),
            "new dimension")
    accepts_every_form(capsys, ex.check_repeat_kv, lambda x, n: x.repeat_interleave(n, dim=2))


def decode_step(q, k_new, v_new, k_cache, v_cache, append=True, scale=True, interleave=True, softmax_dim=-1,
                divisor=None):
    k = torch.cat([k_cache, k_new[None]]) if append else k_cache
    v = torch.cat([v_cache, v_new[None]]) if append else v_cache
    n_rep = q.shape[0] // k.shape[1]
    kr = k.repeat_interleave(n_rep, 1) if interleave else k.repeat(1, n_rep, 1)
    vr = v.repeat_interleave(n_rep, 1) if interleave else v.repeat(1, n_rep, 1)
    scores = torch.einsum("hd,khd->hk", q, kr) / (divisor or (math.sqrt(q.shape[-1]) if scale else 1.0))
    z = torch.einsum("hk,khd->hd", scores.softmax(softmax_dim), vr)
    return z, torch.cat([k_cache, k_new[None]]), torch.cat([v_cache, v_new[None]])


def test_decode_step(capsys):
    accepts(capsys, ex.check_decode_step, decode_step)
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a, append=False), "attend to itself")
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a, scale=False), "sqrt(head_dim)")
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a, interleave=False), "tiled")
    rejects(capsys, ex.check_decode_step, lambda q, kn, vn, kc, vc: (decode_step(q, kn, vn, kc, vc)[0], kc, vc),
            "returned cache is wrong")
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a)[0], "three things")
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a, softmax_dim=0), "over the heads")
    rejects(capsys, ex.check_decode_step, lambda *a: decode_step(*a, divisor=a[0].shape[-1]), "divided by head_dim")
    accepts(capsys, ex.check_decode_step, lambda *a: tuple(t.numpy() for t in decode_step(*a)))
    accepts(capsys, ex.check_decode_step, lambda *a: list(decode_step(*a)))


# ------------------------------------------------------------------ generation (06)

def test_rolling_slot(capsys):
    accepts(capsys, ex.check_rolling_slot, lambda pos, w: pos % w)
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: min(pos, w - 1), "wraps round")
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: (pos + 1) % w, "off by one")
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: pos // w, "left over")
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: pos, "no slot `window`")
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: pos % w + 1, "count from 0")
    rejects(capsys, ex.check_rolling_slot, lambda pos, w: pos % (w - 1), "not `window - 1`")
    accepts(capsys, ex.check_rolling_slot, lambda pos, w: np.int64(pos) % w)
    accepts(capsys, ex.check_rolling_slot, lambda pos, w: torch.tensor(pos) % w)


def test_top_p(capsys):
    accepts(capsys, ex.check_top_p, top_p_filter)

    def sampler_frequencies(probs, p):
        # what the package's own sampler draws, counted: it must agree with the checker's nucleus
        from mistral_edu.generation import sample_next
        g = torch.Generator().manual_seed(0)
        draws = sample_next(probs.log()[None].expand(20000, -1), 1.0, p, g)
        freq = torch.bincount(draws, minlength=probs.numel()).float() / 20000
        nucleus = top_p_filter(probs, p)
        return torch.where(freq > 0, nucleus, 0.0) if (freq > 0).eq(nucleus > 0).all() else freq
    accepts(capsys, ex.check_top_p, sampler_frequencies)

    def inclusive(probs, p):
        s, o = probs.sort(descending=True)
        s = torch.where(s.cumsum(-1) <= p, s, torch.zeros_like(s))
        kept = torch.zeros_like(probs).scatter(-1, o, s)
        return kept / kept.sum()
    rejects(capsys, ex.check_top_p, inclusive, "crosses p")
    rejects(capsys, ex.check_top_p, lambda probs, p: probs * (top_p_filter(probs, p) > 0), "sum to 1")
    rejects(capsys, ex.check_top_p, lambda probs, p: top_p_filter(probs, p).sort(descending=True).values, "out of place")
    rejects(capsys, ex.check_top_p, lambda probs, p: probs, "with p=0.5")

    def before_le(probs, p):
        s, o = probs.sort(descending=True)
        s = torch.where(s.cumsum(-1) - s <= p, s, torch.zeros_like(s))
        kept = torch.zeros_like(probs).scatter(-1, o, s)
        return kept / kept.sum()
    rejects(capsys, ex.check_top_p, before_le, "strictly below p")

    def ascending(probs, p):
        s, o = probs.sort()
        s = torch.where(s.cumsum(-1) - s < p, s, torch.zeros_like(s))
        kept = torch.zeros_like(probs).scatter(-1, o, s)
        return kept / kept.sum()
    rejects(capsys, ex.check_top_p, ascending, "MOST likely")
    accepts_every_form(capsys, ex.check_top_p, top_p_filter)


# ------------------------------------------------------------------ head scores (08, 09, 10)

def test_previous_token_scores(capsys):
    accepts(capsys, ex.check_previous_token_scores,
            lambda p: torch.stack([p[:, :, i, i - 1] for i in range(1, p.shape[-1])], -1).mean(dim=(0, -1)))
    rejects(capsys, ex.check_previous_token_scores, lambda p: p.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1)),
            "main diagonal")
    rejects(capsys, ex.check_previous_token_scores,
            lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0), "sum")
    rejects(capsys, ex.check_previous_token_scores,
            lambda p: p[..., torch.arange(p.shape[-1]), torch.arange(p.shape[-1]) - 1].mean(dim=(0, -1)), "query 0")
    rejects(capsys, ex.check_previous_token_scores,
            lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0) / p.shape[-1], "included query 0")
    rejects(capsys, ex.check_previous_token_scores, lambda p: p[..., 1:, 0].mean(dim=(0, -1)), "first token")
    rejects(capsys, ex.check_previous_token_scores, lambda p: p.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=(0, -1)),
            "AFTER")
    rejects(capsys, ex.check_previous_token_scores, lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, -1)),
            "averaged over the heads")
    accepts_every_form(capsys, ex.check_previous_token_scores,
                       lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1)))


def test_head_entropy(capsys):
    accepts(capsys, ex.check_head_entropy, lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1).mean(dim=(0, -1)))
    rejects(capsys, ex.check_head_entropy, lambda p: -(p * p.log()).sum(-1).mean(dim=(0, -1)), "NaN")
    rejects(capsys, ex.check_head_entropy, lambda p: (p * p.clamp_min(1e-30).log()).sum(-1).mean(dim=(0, -1)), "sign")
    rejects(capsys, ex.check_head_entropy, lambda p: -(p * p.clamp_min(1e-30).log2()).sum(-1).mean(dim=(0, -1)),
            "log2")
    rejects(capsys, ex.check_head_entropy, lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1).sum(-1).mean(0),
            "instead of averaging")
    rejects(capsys, ex.check_head_entropy,
            lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1).sum(-1).mean(0) / p.shape[-1], "number of KEYS")
    rejects(capsys, ex.check_head_entropy, lambda p: -(p * p.clamp_min(1e-30).log()).mean(-1).mean(dim=(0, -1)),
            "averaged p log p over the keys")
    accepts_every_form(capsys, ex.check_head_entropy,
                       lambda p: torch.special.entr(p).sum(-1).mean(dim=(0, -1)))


def test_induction_scores(capsys):
    def right(p, period):
        q = torch.arange(period + 1, 2 * period + 1)
        return p[..., q, q - period + 1].mean(dim=(0, -1))
    accepts(capsys, ex.check_induction_scores, right)
    q_dup = lambda p, t: p[..., torch.arange(t + 1, 2 * t + 1), torch.arange(1, t + 1)].mean(dim=(0, -1))
    rejects(capsys, ex.check_induction_scores, q_dup, "duplicate-token")
    q_prev = lambda p, t: p[..., torch.arange(t + 1, 2 * t + 1), torch.arange(t, 2 * t)].mean(dim=(0, -1))
    rejects(capsys, ex.check_induction_scores, q_prev, "previous-token")
    rejects(capsys, ex.check_induction_scores,
            lambda p, t: p.diagonal(offset=-(t - 1), dim1=-2, dim2=-1).mean(dim=(0, -1)), "every query")
    q_early = lambda p, t: p[..., torch.arange(t, 2 * t + 1), torch.arange(1, t + 2)].mean(dim=(0, -1))
    rejects(capsys, ex.check_induction_scores, q_early, "start one too early")
    q_two = lambda p, t: p[..., torch.arange(t + 1, 2 * t + 1), torch.arange(3, t + 3)].mean(dim=(0, -1))
    rejects(capsys, ex.check_induction_scores, q_two, "two tokens after")
    rejects(capsys, ex.check_induction_scores, lambda p, t: right(p, t) * t, "sum over the queries")
    accepts_every_form(capsys, ex.check_induction_scores, right)


def test_repeated_tokens_shape_and_repeat():
    tokens = ex.repeated_tokens(32000, period=7, batch=3, seed=1)
    assert tokens.shape == (3, 15)
    assert (tokens[:, 0] == 1).all() and (tokens[:, 1:] >= 1000).all()
    assert torch.equal(tokens[:, 1:8], tokens[:, 8:])


def test_induction_head(capsys):
    model = _checker_model()
    scores = ex.model_induction_scores(model, period=6, batch=2)
    assert scores.shape == (2, 4)
    best = divmod(int(scores.argmax()), 4)
    accepts(capsys, ex.check_induction_head, best, model, 6, 2)
    rejects(capsys, ex.check_induction_head, divmod(int(scores.argmin()), 4), "WEAKEST", model, 6, 2)
    rejects(capsys, ex.check_induction_head, (5, 0), "not a head", model, 6, 2)
    rejects(capsys, ex.check_induction_head, "3.2", "(layer, head) pair", model, 6, 2)
    rejects(capsys, ex.check_induction_head, (0.5, 1), "whole numbers", model, 6, 2)
    accepts(capsys, ex.check_induction_head, list(best), model, 6, 2)
    accepts(capsys, ex.check_induction_head, torch.unravel_index(scores.argmax(), scores.shape), model, 6, 2)
    accepts(capsys, ex.check_induction_head, tuple(np.int64(i) for i in best), model, 6, 2)
    accepts(capsys, ex.check_induction_head, np.array(best), model, 6, 2)


def test_induction_head_accepts_a_tie_and_rejects_a_runner_up(capsys, monkeypatch):
    from mistral_edu.exercises import heads
    scores = torch.zeros(2, 4)
    scores[1, 2], scores[1, 3], scores[0, 1] = 0.9, 0.9 - heads.TIED / 2, 0.9 - 3 * heads.TIED
    monkeypatch.setattr(heads, "model_induction_scores", lambda *a: scores)
    accepts(capsys, ex.check_induction_head, (1, 2), None)
    accepts(capsys, ex.check_induction_head, (1, 3), None)          # tied within noise: also right
    rejects(capsys, ex.check_induction_head, (0, 1), "best of layer 0 only; the best scores 0.900", None)
    rejects(capsys, ex.check_induction_head, (2, 3), "counted from 1", None)
    rejects(capsys, ex.check_induction_head, divmod(1 * 4 + 2, 2), "unflattened the argmax with n_layers", None)
    scores[0, 3] = 0.5
    rejects(capsys, ex.check_induction_head, (0, 3), "head (0, 3) scores 0.500 on these tokens, and the strongest", None)


def test_induction_head_swapped(capsys, monkeypatch):
    from mistral_edu.exercises import heads
    scores = torch.zeros(3, 4)
    scores[1, 2] = 0.9                                      # (layer 1, head 2) is best; (2, 1) is also a head
    monkeypatch.setattr(heads, "model_induction_scores", lambda *a: scores)
    accepts(capsys, ex.check_induction_head, (1, 2), None)
    rejects(capsys, ex.check_induction_head, (2, 1), "swapped", None)


# ------------------------------------------------------------------ patching (09, 10)

def patch(model, clean, corrupted, layer, position, hook="hook_resid_pre", everywhere=False, returns=True, shift=0,
          rows=slice(None)):
    name = f"layers.{layer}.{hook}"
    _, cache = model.run_with_cache(clean, names=[name])

    def fn(x, _):
        x = x.clone()
        if everywhere:
            x[:] = cache[name]
        else:
            x[rows, position + shift] = cache[name][rows, position + shift]
        return x if returns else None

    with model.hooks([(name, fn)]):
        return model(corrupted)


def test_patching(capsys):
    accepts(capsys, ex.check_patching, patch)
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, returns=False), "unchanged")
    rejects(capsys, ex.check_patching, lambda m, c, k, l, p: m(c), "clean logits")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, everywhere=True), "patched every")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, hook="hook_resid_post"), "hook_resid_post")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, hook="hook_resid_mid"), "hook_resid_mid")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, shift=-1), "position - 1")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, shift=1), "position + 1")
    rejects(capsys, ex.check_patching, lambda m, c, k, l, p: patch(m, k, c, l, p), "direction is reversed")
    rejects(capsys, ex.check_patching, lambda *a: patch(*a, rows=0), "elements differ")
    accepts(capsys, ex.check_patching, lambda *a: patch(*a).numpy())


def test_reference_patch_changes_the_run():
    model = _checker_model()
    clean, corrupted = torch.tensor([[1, 7, 12, 30]]), torch.tensor([[1, 7, 25, 30]])
    patched = patch_resid_pre(model, clean, corrupted, 0, 2)
    assert not torch.allclose(patched, model(corrupted))
    # patching every position at layer 0 recovers the clean run exactly
    full = patch_resid_pre(model, clean, corrupted, 0, 2, positions=slice(None))
    assert torch.allclose(full, model(clean), atol=1e-5)


# ------------------------------------------------------------------ decoding speed (13)

def tokens_per_second(cfg, bandwidth, context, embedding_rows=1, kv_heads=None, kv_factor=2, inverse=False):
    weights = 2 * (parameter_count(cfg) - cfg.vocab_size * cfg.dim + embedding_rows * cfg.dim)
    kv = context * kv_factor * cfg.n_layers * (kv_heads or cfg.n_kv_heads) * cfg.head_dim * 2
    return (weights + kv) / bandwidth if inverse else bandwidth / (weights + kv)


def test_decode_tokens_per_second(capsys):
    accepts(capsys, ex.check_decode_tokens_per_second, tokens_per_second)
    rejects(capsys, ex.check_decode_tokens_per_second, lambda c, b, n: tokens_per_second(c, b, n, inverse=True),
            "seconds per token")
    rejects(capsys, ex.check_decode_tokens_per_second,
            lambda c, b, n: tokens_per_second(c, b, n, embedding_rows=c.vocab_size), "whole embedding table")
    rejects(capsys, ex.check_decode_tokens_per_second, lambda c, b, n: tokens_per_second(c, b, 0), "left out the KV cache")
    rejects(capsys, ex.check_decode_tokens_per_second, lambda c, b, n: tokens_per_second(c, b, n, kv_heads=c.n_heads),
            "n_kv_heads")
    rejects(capsys, ex.check_decode_tokens_per_second, lambda c, b, n: tokens_per_second(c, b, n, kv_factor=1),
            "a key AND a value")


def intensity(batch, rows, cols, bytes_per_value, flops_per_weight=2, weights_per_row=False, activations=True):
    flops = flops_per_weight * batch * rows * cols
    weights = rows * cols * (batch if weights_per_row else 1)
    return flops / (bytes_per_value * (weights + (batch * (rows + cols) if activations else 0)))


def test_matmul_intensity(capsys):
    accepts(capsys, ex.check_matmul_intensity, intensity)
    rejects(capsys, ex.check_matmul_intensity, lambda *a: intensity(*a, flops_per_weight=1), "multiply-add is 2 FLOPs")
    rejects(capsys, ex.check_matmul_intensity, lambda *a: intensity(*a, weights_per_row=True), "read once for the whole batch")
    rejects(capsys, ex.check_matmul_intensity, lambda *a: intensity(*a, activations=False), "only the matrix's bytes")
    rejects(capsys, ex.check_matmul_intensity, lambda b, r, c, v: intensity(b, r, c, 1), "counts values, not bytes")
    rejects(capsys, ex.check_matmul_intensity, lambda b, r, c, v: intensity(b, r, c, v) / b, "grow with the batch")


def test_crossover_context(capsys):
    weights = 2 * (parameter_count(REAL) - REAL.vocab_size * REAL.dim + 16 * REAL.dim)
    per_token = 2 * REAL.n_layers * REAL.n_kv_heads * REAL.head_dim * 2
    accepts(capsys, ex.check_crossover_context, weights / (16 * per_token))
    rejects(capsys, ex.check_crossover_context, weights / per_token, "that is batch 1")
    rejects(capsys, ex.check_crossover_context, weights / (16 * per_token / 2), "a key AND a value")
    rejects(capsys, ex.check_crossover_context, weights / (16 * per_token * 4), "8 key/value heads")
    rejects(capsys, ex.check_crossover_context, parameter_count(REAL) * 2 / (16 * per_token), "whole embedding table")
    batch8 = 2 * (parameter_count(REAL) - REAL.vocab_size * REAL.dim + 8 * REAL.dim) / (8 * per_token)
    rejects(capsys, ex.check_crossover_context, batch8, "16 sequences")
# ------------------------------------------------------------------ probing and steering (12)

def test_balanced_accuracy(capsys):
    def right(logits, labels):
        predicted = logits > 0
        return float(((predicted[labels == 1]).float().mean() + (~predicted[labels == 0]).float().mean()) / 2)
    accepts(capsys, ex.check_balanced_accuracy, right)
    rejects(capsys, ex.check_balanced_accuracy, lambda g, y: float(((g > 0).long() == y).float().mean()),
            "plain accuracy")
    rejects(capsys, ex.check_balanced_accuracy, lambda g, y: right(g - 0.5, y), "not probabilities")
    rejects(capsys, ex.check_balanced_accuracy, lambda g, y: right(-g, y), "flipped")
    rejects(capsys, ex.check_balanced_accuracy, lambda g, y: float((g[y == 1] > 0).float().mean()), "recall")
    rejects(capsys, ex.check_balanced_accuracy,
            lambda g, y: float(((g[y == 1] >= 0).float().mean() + (g[y == 0] < 0).float().mean()) / 2), "exactly 0")
    rejects(capsys, ex.check_balanced_accuracy, lambda g, y: float((g[y == 0] <= 0).float().mean()), "label 0 alone")
    accepts(capsys, ex.check_balanced_accuracy, lambda g, y: torch.tensor(right(g, y)))
    accepts(capsys, ex.check_balanced_accuracy, lambda g, y: np.float32(right(g, y)))


def test_mean_difference(capsys):
    accepts(capsys, ex.check_mean_difference,
            lambda x, y: x[y.bool()].sum(0) / y.sum() - x[~y.bool()].sum(0) / (1 - y).sum())
    rejects(capsys, ex.check_mean_difference, lambda x, y: x[y == 0].mean(0) - x[y == 1].mean(0), "sign")
    rejects(capsys, ex.check_mean_difference, lambda x, y: x[y == 1].sum(0) - x[y == 0].sum(0), "sums")
    rejects(capsys, ex.check_mean_difference, lambda x, y: x[y == 1].mean(0) - x.mean(0), "ALL rows")
    rejects(capsys, ex.check_mean_difference, lambda x, y: x[y == 1].mean(-1).mean() - x[y == 0].mean(-1).mean(),
            "features")
    rejects(capsys, ex.check_mean_difference,
            lambda x, y: torch.nn.functional.normalize(x[y == 1].mean(0) - x[y == 0].mean(0), dim=0), "length 1")
    accepts_every_form(capsys, ex.check_mean_difference, lambda x, y: x[y == 1].mean(0) - x[y == 0].mean(0))


# ------------------------------------------------------------------ building exercises (01, 06, 09, 11, 12)

def bpe(text, vocab, scores, prefix=True, spaces=True, choose="best"):
    symbols = list(("▁" if prefix else "") + (text.replace(" ", "▁") if spaces else text))
    while True:
        pairs = [(scores[vocab[a + b]], i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in vocab]
        if not pairs:
            return [vocab.get(s, 0) for s in symbols]
        i = {"best": lambda: max(pairs, key=lambda p: (p[0], -p[1]))[1], "worst": lambda: min(pairs)[1],
             "leftmost": lambda: pairs[0][1]}[choose]()
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def test_bpe_encode(capsys, tok):
    accepts(capsys, ex.check_bpe_encode, bpe, tok)
    accepts(capsys, ex.check_bpe_encode, lambda *a: torch.tensor(bpe(*a)), tok)
    rejects(capsys, ex.check_bpe_encode, lambda *a: bpe(*a, prefix=False), "lacks its '▁'", tok)
    rejects(capsys, ex.check_bpe_encode, lambda *a: bpe(*a, spaces=False), "spaces stay spaces", tok)
    rejects(capsys, ex.check_bpe_encode, lambda *a: bpe(*a, choose="worst"), "LOWEST", tok)
    rejects(capsys, ex.check_bpe_encode, lambda *a: bpe(*a, choose="leftmost"), "first pair that is a piece", tok)

    def longest(text, vocab, scores):
        text, ids = "▁" + text.replace(" ", "▁"), []
        while text:
            end = max(e for e in range(1, len(text) + 1) if text[:e] in vocab or e == 1)
            ids.append(vocab[text[:end]])
            text = text[end:]
        return ids
    rejects(capsys, ex.check_bpe_encode, longest, "greedy longest match", tok)
    rejects(capsys, ex.check_bpe_encode, lambda t, v, s: tok.encode(t), "first difference", tok)
    out_of_order = lambda t, v, s: bpe(t, v, s)[::-1]
    rejects(capsys, ex.check_bpe_encode, out_of_order, "first difference at position 0", tok)


def sampler(logits, t, k, p, multiply=False, p_first=False, rescale_k=True):
    if t == 0:
        return F.one_hot(logits.argmax(), logits.numel()).float()
    probs = (logits * t if multiply else logits / t).softmax(-1)

    def top_k(x):
        if not k:
            return x
        x = torch.where(x >= x.topk(k).values[-1], x, torch.zeros_like(x))
        return x / x.sum() if rescale_k else x

    def nucleus(x):
        s, o = x.sort(descending=True)
        s = torch.where(s.cumsum(-1) - s < p, s, torch.zeros_like(s))
        out = torch.zeros_like(x).scatter(-1, o, s)
        return out / out.sum()
    if p_first:
        out = top_k(nucleus(probs))
        return out / out.sum()
    return nucleus(top_k(probs))


def test_sampler(capsys):
    accepts_every_form(capsys, ex.check_sampler, sampler)
    rejects(capsys, ex.check_sampler, lambda *a: sampler(*a, multiply=True), "multiplied by the temperature")
    rejects(capsys, ex.check_sampler, lambda *a: sampler(*a, p_first=True), "top-p before top-k")
    rejects(capsys, ex.check_sampler, lambda *a: sampler(*a, rescale_k=False), "not rescaled")
    rejects(capsys, ex.check_sampler, lambda l, t, k, p: sampler(l, t, k + 1, p), "elements differ")
    rejects(capsys, ex.check_sampler, lambda l, t, k, p: sampler(l, 1.0 if t else 0, k, p), "temperature is ignored")
    rejects(capsys, ex.check_sampler, lambda l, t, k, p: sampler(l, t, 0, p), "top-k is ignored")
    rejects(capsys, ex.check_sampler, lambda l, t, k, p: sampler(l, t, k, 1.0), "top-p is ignored")
    rejects(capsys, ex.check_sampler, lambda l, t, k, p: (l / t).softmax(-1), "temperature 0 gave inf or NaN")


def ablate(model, tokens, layer, head, how, where="head", mean_dims=(0, 1), zero_for_mean=False, returns=True):
    name = f"layers.{layer}.attention.hook_z"
    _, cache = model.run_with_cache(tokens, names=[name])
    z = cache[name]
    index = {"head": (slice(None), slice(None), head), "position": (slice(None), head), "layer": (Ellipsis,)}[where]
    value = 0.0 if how == "zero" or zero_for_mean else (z if mean_dims == "all heads" else z[index]).mean(
        dim=(0, 1, 2) if mean_dims == "all heads" else mean_dims, keepdim=mean_dims == 1)

    def hook(x, _):
        x = x.clone()
        x[index] = value
        return x if returns else None
    with model.hooks([(name, hook)]):
        return model(tokens)


def test_ablate_head(capsys):
    accepts(capsys, ex.check_ablate_head, ablate)
    accepts(capsys, ex.check_ablate_head, lambda *a: ablate(*a).numpy())
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, returns=False), "unablated")
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, where="position"), "position `head`")
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, zero_for_mean=True), "used zeros")
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, mean_dims="all heads"), "over the heads")
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, mean_dims=0), "over the batch only")
    rejects(capsys, ex.check_ablate_head, lambda *a: ablate(*a, mean_dims=1), "one per sequence")
    rejects(capsys, ex.check_ablate_head, lambda m, t, l, h, how: m(t) * 0, "elements differ")


def sweep(model, clean, corrupted, layer, metric, whole_head=False, whole_position=False, reverse=False, returns=True,
          rows=slice(None)):
    if reverse:
        clean, corrupted = corrupted, clean
    name = f"layers.{layer}.attention.hook_z"
    _, cache = model.run_with_cache(clean, names=[name])
    seq, n_heads = corrupted.shape[1], model.cfg.n_heads
    out = torch.zeros(n_heads, seq)
    for h in range(n_heads):
        for p in range(seq):
            def hook(z, _):
                z = z.clone()
                pos = slice(None) if whole_head else p
                heads = slice(None) if whole_position else h
                z[rows, pos, heads] = cache[name][rows, pos, heads]
                return z if returns else None
            with model.hooks([(name, hook)]):
                out[h, p] = metric(model(corrupted))
    return out


def test_head_position_patching(capsys):
    accepts_every_form(capsys, ex.check_head_position_patching, sweep)
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a).T, "rows are positions")
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a, whole_head=True), "each row is constant")
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a, whole_position=True), "each column is constant")
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a, reverse=True), "direction is reversed")
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a, returns=False), "never reached the model")
    rejects(capsys, ex.check_head_position_patching, lambda *a: sweep(*a, rows=0), "elements differ")


def ov(W_E, W_V, W_O, W_U, dim=0, pick=torch.argmax, count=False):
    circuit = W_U @ W_O @ W_V @ W_E.T
    hits = (pick(circuit, dim=dim) == torch.arange(circuit.shape[0])).double()
    return hits.sum() if count else hits.mean()


def test_ov_copying(capsys):
    accepts(capsys, ex.check_ov_copying, ov)
    accepts(capsys, ex.check_ov_copying, lambda *a: float(ov(*a)))
    accepts(capsys, ex.check_ov_copying, lambda *a: np.float64(ov(*a)))
    rejects(capsys, ex.check_ov_copying, lambda *a: ov(*a, dim=1), "along the rows")
    rejects(capsys, ex.check_ov_copying, lambda *a: ov(*a, count=True), "a count")
    rejects(capsys, ex.check_ov_copying, lambda E, V, O, U: analysis_copying_score(U @ O, V @ E.T), "eigenvalue")
    rejects(capsys, ex.check_ov_copying, lambda *a: ov(*a, pick=torch.argmin), "SMALLEST")
    rejects(capsys, ex.check_ov_copying, lambda E, V, O, U: ov(E, V, O, E), "unembedded with W_E")
    rejects(capsys, ex.check_ov_copying, lambda *a: ov(*a) + 0.5, "expected")


def analysis_copying_score(left, right):
    from mistral_edu.analysis import copying_score
    return copying_score(left, right)


def probe(tx, ty, vx, vy, cty, cvy, cut="classes", on_train=False, plain=False, control_on_real=False, sign=1.0):
    from mistral_edu.analysis import balanced_accuracy
    score = (lambda g, y: float(((g > 0).long() == y).float().mean())) if plain else balanced_accuracy
    ex_, real_y, ctrl_y = (tx, ty, cty) if on_train else (vx, vy, cvy)

    def acc(fit_y, eval_y):
        ones, zeros = tx[fit_y == 1].mean(0), tx[fit_y == 0].mean(0)
        d = sign * (ones - zeros)
        b = {"classes": (ones + zeros) @ d / 2, "rows": tx.mean(0) @ d, "zero": 0.0}[cut]
        return score(ex_ @ d - b, eval_y)
    return acc(ty, real_y), acc(cty, real_y if control_on_real else ctrl_y)


def test_probe_with_control(capsys):
    accepts(capsys, ex.check_probe_with_control, probe)
    accepts(capsys, ex.check_probe_with_control, lambda *a: list(probe(*a)))
    accepts(capsys, ex.check_probe_with_control, lambda *a: tuple(torch.tensor(v) for v in probe(*a)))
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, on_train=True), "training accuracies")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, cut="zero"), "threshold is 0")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, cut="rows"), "mean of ALL training rows")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, plain=True), "plain accuracy")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, control_on_real=True), "real test labels")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a, sign=-1.0), "points from label 1")
    rejects(capsys, ex.check_probe_with_control, lambda *a: probe(*a)[0], "two numbers")


def steer(model, prompt, layer, vector, scale, n, point="hook_resid_post", bos=False, when="always", returns=True):
    def add(x, _):
        many = x.shape[1] > 1
        if (when == "prompt" and not many) or (when == "steps" and many):
            return x
        shifted = x + scale * vector
        if many and not bos:
            shifted[:, 0] = x[:, 0]
        return shifted if returns else None
    with model.hooks([(f"layers.{layer}.{point}", add)]):
        return me.generate(model, prompt, max_new_tokens=n, stop_at_eos=False)


def test_steered_generate(capsys):
    accepts(capsys, ex.check_steered_generate, steer)
    accepts(capsys, ex.check_steered_generate, lambda *a: torch.tensor(steer(*a)))
    rejects(capsys, ex.check_steered_generate, lambda *a: steer(*a, returns=False), "unsteered")
    rejects(capsys, ex.check_steered_generate, lambda m, p, l, v, s, n: steer(m, p, l, v, -s, n), "sign is reversed")
    rejects(capsys, ex.check_steered_generate, lambda m, p, l, v, s, n: steer(m, p, l, v, 1.0, n), "scale is ignored")
    rejects(capsys, ex.check_steered_generate, lambda *a: steer(*a, point="hook_resid_pre"), "hook_resid_pre")
    rejects(capsys, ex.check_steered_generate, lambda *a: steer(*a, bos=True), "shifted BOS")
    rejects(capsys, ex.check_steered_generate, lambda *a: steer(*a, when="prompt"), "only the prompt")
    rejects(capsys, ex.check_steered_generate, lambda *a: steer(*a, when="steps"), "only the decoding steps")
