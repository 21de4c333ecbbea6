"""Checkers for the exercises of notebooks 00-05. Each prints a verdict and a hint; none raises.

The expected answers are computed here from the package (ModelConfig, the tokenizer, the model's
modules), so a checker and the lesson can never disagree about a number.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..memory import parameter_count
from . import Verdict, check, check_function, compare_tensors, report

REAL = ModelConfig.mistral_7b_instruct_v02()


# ----------------------------------------------------------------------------- 00 start here

def check_weight_gib(answer) -> Verdict:
    """Exercise 00.1: the bf16 weights of Mistral-7B-Instruct-v0.2, in GiB."""
    expected = parameter_count(REAL) * 2 / 2**30

    def verify(x):
        x = float(x)
        if math.isclose(x, expected, rel_tol=1e-3):
            return None
        if math.isclose(x, parameter_count(REAL) * 2 / 1e9, rel_tol=1e-3):
            return f"{x:.2f} is in GB (10^9 bytes); a GiB is 2^30 bytes"
        if math.isclose(x, expected * 2, rel_tol=1e-3):
            return f"{x:.2f} GiB is float32 (4 bytes per parameter); bfloat16 takes 2"
        return f"{x:.3g} GiB is not it"

    return check(answer, verify, "parameter_count(cfg) parameters x 2 bytes (bfloat16), divided by 2**30",
                 f"{expected:.2f} GiB of weights before a single token is processed")


def kv_bytes_per_token(cfg: ModelConfig, bytes_per_value: int = 2) -> int:
    """K and V, for every layer and every KV head: 2 x n_layers x n_kv_heads x head_dim x bytes."""
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * bytes_per_value


def check_tokens_that_fit(answer, gpu_gib: float = 24) -> Verdict:
    """Exercise 00.2: how many tokens of bf16 KV cache fit on a 24 GiB GPU beside the bf16 weights."""
    free = gpu_gib * 2**30 - parameter_count(REAL) * 2
    expected = int(free // kv_bytes_per_token(REAL))
    wrong = {
        int(free // (kv_bytes_per_token(REAL) // 2)): "that counts only K (or only V): the cache stores both",
        int(free // (2 * REAL.n_layers * REAL.n_heads * REAL.head_dim * 2)):
            "that uses 32 heads: the cache stores the 8 key/value heads (grouped-query attention)",
        int(free // (kv_bytes_per_token(REAL) // REAL.n_layers)): "every one of the 32 layers keeps its own cache",
    }

    def verify(x):
        x = int(x)
        if abs(x - expected) <= 1:
            return None
        return wrong.get(x, f"{x:,} tokens is not it")

    return check(answer, verify, "(24 GiB - weight bytes) // (2 x n_layers x n_kv_heads x head_dim x 2 bytes)",
                 f"about {expected:,} tokens: {expected / REAL.max_seq_len:.1f} times the 32k context")


# ----------------------------------------------------------------------------- 01 tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is a token?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Good morning"}],
]


def check_chat_ids(fn, tok) -> Verdict:
    """Exercise 01.1: a learner's chat template, fn(messages) -> ids, against tok.encode_chat."""
    cases = [((conv,), tok.encode_chat(conv)) for conv in CONVERSATIONS]
    hint = ("start with [tok.bos_id]; each user turn is tok.encode(f'[INST] {content} [/INST]', bos=False); "
            "each answer is tok.encode(answer, bos=False) + [tok.eos_id]; a system prompt goes in front of "
            "the first user message, followed by a blank line (\\n\\n)")
    for conv, expected in cases:
        try:
            got = fn(conv[0])
        except Exception as err:  # the learner's bug is reported, never raised
            return report(False, f"your function raised {type(err).__name__}: {err}.\n  hint: {hint}")
        if got is None:
            return report(False, f"hint: {hint}")
        got = [int(i) for i in got]
        if got != expected:
            return report(False, _chat_difference(tok, conv[0], got, expected) + f".\n  hint: {hint}")
    return report(True, "your template gives exactly the ids of encode_chat (and of mistral-common v1)")


def _chat_difference(tok, conv, got, expected) -> str:
    first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    roles = "/".join(m["role"] for m in conv)
    where = f"for the conversation {roles}: first difference at position {first}"
    if got and got[0] != tok.bos_id:
        return where + " (the ids must start with BOS = 1)"
    shown_got = [tok.id_to_piece(i) for i in got[first:first + 4]]
    shown_expected = [tok.id_to_piece(i) for i in expected[first:first + 4]]
    return where + f": you have {shown_got}, expected {shown_expected}"


def check_bytes_to_text(fn) -> Verdict:
    """Exercise 01.2: reassemble byte-fallback pieces like '<0xF0>' into the UTF-8 text they spell."""
    cases = [((["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"],), "🦙"),
             ((["<0xE2>", "<0x82>", "<0xAC>"],), "€"),
             ((["<0x41>", "<0x42>"],), "AB")]
    return check_function(fn, cases,
                          "int(piece[3:5], 16) turns '<0xF0>' into the byte 240; collect the bytes in "
                          "bytes([...]) and .decode('utf-8'); a single byte of a multi-byte character "
                          "is not a character on its own",
                          "four pieces, one emoji: bytes are reassembled before they become text")


# ----------------------------------------------------------------------------- 02 embeddings and RMSNorm

def _rms_norm_reference(x, weight, eps):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def check_rms_norm(fn) -> Verdict:
    """Exercise 02.1: rms_norm(x, weight, eps) equal to the package's RMSNorm, float32 inside."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, generator=g) * 3 + 1                  # a mean away from zero tells LayerNorm apart
    weight = torch.rand(16, generator=g) + 0.5
    tiny = torch.full((1, 1, 8), 1e-3)                                # eps matters when the RMS is this small
    cases = [((x, weight, 1e-5), _rms_norm_reference(x, weight, 1e-5)),
             ((tiny, torch.ones(8), 1e-5), _rms_norm_reference(tiny, torch.ones(8), 1e-5))]
    hint = ("x / sqrt(mean(x**2 over the last dim) + eps) * weight: keepdim=True, no mean subtracted, eps inside "
            "the square root; compute in float32 and cast back with .type_as(x) before multiplying by weight")
    mean_removed = x - x.mean(-1, keepdim=True)
    diagnosis = {
        "LayerNorm (it subtracts the mean)":
            (mean_removed * torch.rsqrt(mean_removed.pow(2).mean(-1, keepdim=True) + 1e-5)) * weight,
        "a norm without the gain (weight)": _rms_norm_reference(x, torch.ones(16), 1e-5),
    }
    try:
        got = fn(x, weight, 1e-5)
    except Exception:  # reported by check_function below
        got = None
    for mistake, wrong in diagnosis.items():
        if compare_tensors(got, wrong) is None:
            return report(False, f"this looks like {mistake}.\n  hint: {hint}")
    if not check_function(fn, cases, hint, None, atol=1e-5):
        return Verdict(False)
    xb, wb = x.bfloat16(), weight.bfloat16()
    try:
        got = fn(xb, wb, 1e-5)
    except Exception as err:  # a learner's bug is reported, never raised
        return report(False, f"with bfloat16 input your function raised {type(err).__name__}: {err}.\n  hint: {hint}")
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bfloat16:
        return report(False, f"bfloat16 in should give bfloat16 out, got {getattr(got, 'dtype', type(got))}.\n"
                             f"  hint: cast the normalised float32 result back with .type_as(x)")
    problem = compare_tensors(got, _rms_norm_reference(xb, wb, 1e-5), atol=0.05, rtol=0.02)
    if problem:
        return report(False, f"bfloat16 case: {problem}.\n  hint: {hint}")
    return report(True, "your RMSNorm equals the package's, in float32 and in bfloat16")


def check_normalized_length(answer) -> Verdict:
    """Exercise 02.2: the L2 length of RMSNorm's output (gain 1) for the real model's dim."""
    expected = math.sqrt(REAL.dim)

    def verify(x):
        x = float(x)
        if math.isclose(x, expected, rel_tol=1e-3):
            return None
        if math.isclose(x, 1.0):
            return "1 is the root-mean-square of the output; its length (L2 norm) is larger"
        if math.isclose(x, REAL.dim):
            return "4096 is the squared length"
        return f"{x:.4g} is not it"

    return check(answer, verify, "mean(y**2) = 1, so sum(y**2) = dim; the length is the square root of that sum",
                 f"every normalised vector lies on the sphere of radius sqrt({REAL.dim}) = {expected:.0f}")


# ----------------------------------------------------------------------------- 03 RoPE

def rope_rotate_half_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Hugging Face's RoPE: pairs (i, i + d/2), x cos + rotate_half(x) sin; x is (seq, head_dim)."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)           # (d/2,)
    angles = torch.outer(positions.float(), inv_freq)                       # (seq, d/2)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()  # (seq, d)
    rotated_half = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)        # (seq, d)
    return x * cos + rotated_half * sin


def check_rope_rotate_half(fn) -> Verdict:
    """Exercise 03.1: the rotate-half form of RoPE, fn(x, positions, theta) with x (seq, head_dim)."""
    from ..model.rope import apply_rope, rope_rotations
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 16, generator=g)
    positions = torch.tensor([0, 1, 2, 7, 100, 5000])
    hint = ("pair channel i with channel i + d/2: angles = positions[:, None] * theta ** (-arange(0, d, 2) / d), "
            "repeated twice along the last dim; return x * cos + rotate_half(x) * sin with "
            "rotate_half(x) = cat([-x[..., d/2:], x[..., :d/2]])")
    try:
        got = fn(x, positions, 1e6)
    except Exception:  # check_function below reports it
        got = None
    interleaved = apply_rope(x[None, :, None, :], rope_rotations(positions, 16, 1e6))[0, :, 0]
    unsigned = _rope_no_minus(x, positions, 1e6)
    if isinstance(got, torch.Tensor) and compare_tensors(got, interleaved) is None:
        return report(False, "that is Mistral's interleaved pairing (2i, 2i+1), the complex form; the rotate-half "
                             f"form pairs i with i + d/2.\n  hint: {hint}")
    if isinstance(got, torch.Tensor) and compare_tensors(got, unsigned) is None:
        return report(False, f"rotate_half needs a minus sign on the second half before swapping.\n  hint: {hint}")
    cases = [((x, positions, 1e6), rope_rotate_half_reference(x, positions, 1e6)),
             ((x, positions, 1e4), rope_rotate_half_reference(x, positions, 1e4))]
    return check_function(fn, cases, hint, "rotate-half RoPE, as Hugging Face's modeling_mistral computes it",
                          atol=1e-4)


def _rope_no_minus(x, positions, theta):
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    angles = torch.outer(positions.float(), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    return x * cos + torch.cat([x[..., d // 2:], x[..., :d // 2]], -1) * sin


def check_wavelength(fn) -> Verdict:
    """Exercise 03.2: wavelength(i, head_dim, theta), in tokens, of RoPE pair i."""
    hint = ("pair i turns by theta ** (-2 * i / head_dim) radians per token; a full turn is 2 * pi radians, "
            "so the wavelength is 2 * pi / that frequency")
    mistakes = {lambda i, d, t: t ** (2 * i / d): "that is 1 / frequency: a full turn is 2 * pi radians, not 1",
                lambda i, d, t: t ** (-2 * i / d): "that is the frequency (radians per token), not the wavelength",
                lambda i, d, t: 2 * math.pi * t ** (i / d): "the exponent is 2i / head_dim: pair i holds channels 2i and 2i+1"}
    for i in (0, 1, 32, 63):
        for theta in (1e4, 1e6):
            expected = 2 * math.pi * theta ** (2 * i / 128)
            try:
                got = fn(i, 128, theta)
            except Exception as err:  # a learner's bug is reported, never raised
                return report(False, f"wavelength({i}, 128, {theta:g}) raised {type(err).__name__}: {err}.\n  hint: {hint}")
            if got is None:
                return report(False, f"hint: {hint}")
            if not math.isclose(float(got), expected, rel_tol=1e-5):
                why = next((text for wrong, text in mistakes.items() if math.isclose(float(got), wrong(i, 128, theta),
                                                                                     rel_tol=1e-5)),
                           f"wavelength({i}, 128, {theta:g}) returned {float(got):.6g}, expected {expected:.6g}")
                return report(False, f"{why}.\n  hint: {hint}")
    return report(True, "pair 0 turns every 6.3 tokens; pair 63 of theta 1e6 takes about 5 million")


# ----------------------------------------------------------------------------- 04 attention and GQA

def check_causal_attention(fn) -> Verdict:
    """Exercise 04.1: one head of causal attention, fn(q, k, v) with (seq, head_dim) inputs."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(7, 16, generator=g) * 2 for _ in range(3))
    expected = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
    hint = ("scores = q @ k.T / sqrt(head_dim); set scores above the diagonal to -inf "
            "(torch.triu(ones, diagonal=1)); weights = softmax over the last dim (the keys); return weights @ v")
    seq, d = q.shape
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
    mistakes = {
        "no causal mask: each token may read the future":
            torch.softmax(q @ k.T / math.sqrt(d), -1) @ v,
        "no 1/sqrt(head_dim) scaling":
            torch.softmax((q @ k.T).masked_fill(future, float("-inf")), -1) @ v,
        "softmax over the queries (dim 0) instead of the keys":
            torch.nan_to_num(torch.softmax((q @ k.T / math.sqrt(d)).masked_fill(future, float("-inf")), 0)) @ v,
    }
    try:
        got = fn(q, k, v)
    except Exception:  # check_function below reports it
        got = None
    for mistake, wrong in mistakes.items():
        if compare_tensors(got, wrong) is None:
            return report(False, f"{mistake}.\n  hint: {hint}")
    return check_function(fn, [((q, k, v), expected)], hint, "equal to F.scaled_dot_product_attention(is_causal=True)")


def check_kv_cache_bytes(fn) -> Verdict:
    """Exercise 04.2: kv_cache_bytes(cfg, n_tokens, bytes_per_value) for the whole model."""
    tiny = ModelConfig.tiny()
    cases = [(REAL, 32768, 2), (REAL, 1, 2), (tiny, 100, 4), (ModelConfig.mistral_7b_v01(), 4096, 2)]
    hint = "2 (K and V) x n_layers x n_kv_heads x head_dim x n_tokens x bytes_per_value"
    for cfg, n, b in cases:
        expected = kv_bytes_per_token(cfg, b) * n
        try:
            got = fn(cfg, n, b)
        except Exception as err:  # a learner's bug is reported, never raised
            return report(False, f"your function raised {type(err).__name__}: {err}.\n  hint: {hint}")
        if got is None:
            return report(False, f"hint: {hint}")
        if int(got) != expected:
            ratio = int(got) / expected
            why = {0.5: "half the answer: the cache stores keys AND values",
                   cfg.n_heads / cfg.n_kv_heads: "you used n_heads: the cache stores only the n_kv_heads",
                   1 / cfg.n_layers: "that is one layer; every layer keeps its own cache"}.get(ratio, f"got {int(got):,}, expected {expected:,}")
            return report(False, f"{why}.\n  hint: {hint}")
    return report(True, f"{kv_bytes_per_token(REAL) * 32768 / 2**30:.0f} GiB for a full 32k context of the real model")


# ----------------------------------------------------------------------------- 05 feed-forward, block, model

def check_swiglu(fn) -> Verdict:
    """Exercise 05.1: swiglu(x, w1, w2, w3) with nn.Linear-shaped (out, in) weight matrices."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, generator=g)
    w1, w3 = torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g)
    w2 = torch.randn(8, 20, generator=g)
    expected = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    hint = ("w2(silu(w1 x) * w3 x): an nn.Linear weight is (out, in), so w1 x is x @ w1.T; "
            "w1 is the gate that goes through SiLU, w3 the 'up' projection it multiplies")
    mistakes = {
        "w1 and w3 are swapped: the gate (through SiLU) is w1, the plain 'up' projection is w3":
            (F.silu(x @ w3.T) * (x @ w1.T)) @ w2.T,
        "that uses ReLU; Mistral's gate goes through SiLU (x * sigmoid(x))":
            (torch.relu(x @ w1.T) * (x @ w3.T)) @ w2.T,
        "no gating: the SiLU output must be multiplied by w3 x":
            F.silu(x @ w1.T) @ w2.T,
    }
    try:
        got = fn(x, w1, w2, w3)
    except Exception:  # check_function below reports it
        got = None
    for mistake, wrong in mistakes.items():
        if compare_tensors(got, wrong, atol=1e-4) is None:
            return report(False, f"{mistake}.\n  hint: {hint}")
    return check_function(fn, [((x, w1, w2, w3), expected)], hint, "SwiGLU, exactly as FeedForward computes it",
                          atol=1e-4)


def block_parameters(cfg: ModelConfig) -> int:
    """One transformer block: wq, wk, wv, wo, w1, w2, w3 and the two norm gains."""
    return (cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads) + 3 * cfg.dim * cfg.hidden_dim
            + 2 * cfg.dim)


def check_block_parameters(fn) -> Verdict:
    """Exercise 05.2: parameters of one transformer block, from a ModelConfig."""
    hint = ("attention: wq and wo are dim x (n_heads*head_dim), wk and wv are dim x (n_kv_heads*head_dim); "
            "feed-forward: three dim x hidden_dim matrices; plus two norm gains of dim each")
    for cfg in (REAL, ModelConfig.tiny()):
        expected = block_parameters(cfg)
        try:
            got = fn(cfg)
        except Exception as err:  # a learner's bug is reported, never raised
            return report(False, f"your function raised {type(err).__name__}: {err}.\n  hint: {hint}")
        if got is None:
            return report(False, f"hint: {hint}")
        got = int(got)
        if got == expected:
            continue
        kv_as_heads = expected + 2 * cfg.dim * cfg.head_dim * (cfg.n_heads - cfg.n_kv_heads)
        why = {expected - 2 * cfg.dim: "almost: add the two RMSNorm gains (dim each)",
               kv_as_heads: "wk and wv have n_kv_heads (8), not n_heads, heads",
               expected - cfg.dim * cfg.hidden_dim: "SwiGLU has three matrices (w1, w2, w3), not two"}
        return report(False, f"{why.get(got, f'got {got:,}, expected {expected:,}')}.\n  hint: {hint}")
    return report(True, f"{block_parameters(REAL):,} per block; x 32 blocks = "
                        f"{32 * block_parameters(REAL) / parameter_count(REAL):.1%} of the model")
