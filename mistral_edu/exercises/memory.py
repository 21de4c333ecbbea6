"""Memory exercises (notebooks 00, 04, 05, 07, 10): weights, KV-cache bytes, what fits, parameters per block.

Every expected number comes from mistral_edu.memory (parameter_count, tensor_shapes, kv_cache_bytes,
kv_bytes_per_token), the functions the lessons' tables are printed with. A wrong number is compared
with what each usual slip would give, over several configs and byte widths, so that two slips which
agree on one case (no K-and-V factor, or 2 bytes hard-coded, both halve a float32 cache) are told apart.
"""
from __future__ import annotations

import math
from typing import Callable

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES
from ..memory import kv_bytes_per_token, kv_cache_bytes, parameter_count, tensor_shapes
from ..names import layer_of
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check

__all__ = ["check_block_parameters", "check_kv_bytes_per_token", "check_kv_cache_bytes", "check_tokens_that_fit",
           "check_weight_bytes", "check_weight_gib"]

REAL = ModelConfig.mistral_7b_instruct_v02()
TINY = ModelConfig.tiny()

WEIGHT_GIB = register(Exercise(
    name="weight_gib", notebook="00", difficulty=1, minutes=5, takes_function=False,
    task="give the GiB that the real model's bf16 weights take (1 GiB = 2**30 bytes)",
    hints=("every parameter is one bfloat16 number of 2 bytes", "parameter_count(real) * 2 bytes, divided by 2**30"),
    solution="weight_gib = parameter_count(real) * 2 / 2**30",
))

TOKENS_THAT_FIT = register(Exercise(
    name="tokens_that_fit", notebook="00", difficulty=2, minutes=10, takes_function=False,
    task="give how many tokens of bf16 KV cache fit on a 24 GiB GPU beside the bf16 weights",
    hints=("what is left after the weights, divided by what one token adds to the cache: a key AND a value "
           "vector, in every layer, for every KV head",
           "(24 * 2**30 - parameter_count(real) * 2) // (2 * n_layers * n_kv_heads * head_dim * 2 bytes)"),
    solution="tokens_that_fit = (24 * 2**30 - parameter_count(real) * 2) // "
             "(2 * real.n_layers * real.n_kv_heads * real.head_dim * 2)",
))

KV_BYTES_PER_TOKEN = register(Exercise(
    name="kv_bytes_per_token", notebook="04", difficulty=2, minutes=10,
    task="write kv_bytes_per_token(cfg, bytes_per_value): the bytes one token adds to the KV cache of the "
         "whole model",
    hints=("a token leaves two vectors behind in every layer, its key and its value, one per KV head (the query "
           "heads share them)",
           "2 (K and V) x n_layers x n_kv_heads x head_dim numbers, each bytes_per_value bytes"),
    solution='''def kv_bytes_per_token(cfg, bytes_per_value):
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * bytes_per_value''',
))

KV_CACHE_BYTES = register(Exercise(
    name="kv_cache_bytes", notebook="07, 10", difficulty=2, minutes=10,
    task="write kv_cache_bytes(cfg, context, batch, bytes_per_value): the bytes of the KV cache of `batch` "
         "sequences of `context` tokens (no sliding window)",
    hints=("what is stored (two things), where (every layer), for which heads (not the query heads), how long each "
           "vector is, for how many tokens; the 7B in bf16 comes out at 128 KiB per token",
           "2 (K and V) x n_layers x n_kv_heads x head_dim x context x batch x bytes_per_value"),
    solution='''def kv_cache_bytes(cfg, context, batch, bytes_per_value):
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * context * batch * bytes_per_value''',
))

WEIGHT_BYTES = register(Exercise(
    name="weight_bytes", notebook="07", difficulty=1, minutes=5,
    task="write weight_bytes(n_params, bits_per_weight): the bytes of the weights alone",
    hints=("a format is a number of bits per weight (16 for bf16, about 4.85 for Q4_K_M); a byte is 8 bits",
           "n_params * bits_per_weight / 8"),
    solution='''def weight_bytes(n_params, bits_per_weight):
    return n_params * bits_per_weight / 8''',
))

BLOCK_PARAMETERS = register(Exercise(
    name="block_parameters", notebook="05", difficulty=2, minutes=10,
    task="write params_per_block(cfg): the number of parameters in one transformer block",
    hints=("a block holds attention (wq, wk, wv, wo), the feed-forward (w1, w2, w3) and two RMSNorm gains; with GQA "
           "wk and wv are smaller than wq",
           "wq and wo are dim x (n_heads * head_dim), wk and wv dim x (n_kv_heads * head_dim); w1, w2, w3 are "
           "dim x hidden_dim each; the gains are dim each"),
    solution='''def params_per_block(cfg):
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)   # wq, wo + wk, wv
    return attention + 3 * cfg.dim * cfg.hidden_dim + 2 * cfg.dim                 # w1, w2, w3 and two norm gains''',
))

_CACHE_DTYPES = {value: name for name, value in DTYPE_BYTES.items() if name in ("fp32", "bf16", "fp8")}


def _per_token(cfg: ModelConfig, bytes_per_value: int) -> int:
    return kv_bytes_per_token(cfg, _CACHE_DTYPES[bytes_per_value])


def _kv_slip(got: list[float], expected: list[float], cases: list[tuple[ModelConfig, int]]) -> str | None:
    """The one slip that explains every wrong number, if one does; cases are (cfg, bytes_per_value)."""
    slips = {
        "you forgot the K-and-V factor of 2: the cache stores a key AND a value for every token":
            lambda e, cfg, b: e / 2,
        "you hard-coded 2 bytes per value: use bytes_per_value (4 for float32, 1 for fp8)":
            lambda e, cfg, b: e / b * 2,
        "you forgot bytes_per_value: that counts numbers, not bytes": lambda e, cfg, b: e / b,
        "you used n_heads: GQA caches only the n_kv_heads key/value heads": lambda e, cfg, b: e * cfg.n_heads / cfg.n_kv_heads,
        "that is one layer: every layer keeps its own cache": lambda e, cfg, b: e / cfg.n_layers,
        "that is bits: multiply by bytes, not by 8 bits": lambda e, cfg, b: e * 8,
    }
    for message, slip in slips.items():
        if all(math.isclose(g, slip(e, cfg, b), rel_tol=1e-9) for g, e, (cfg, b) in zip(got, expected, cases)):
            return message
    return None


def _judge_kv(fn: Callable, cases: list[tuple], expected: list[int], byte_width: Callable[[tuple], tuple]) -> str | None:
    got = []
    for args in cases:
        value = attempt(fn, *args)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"return a number of bytes, got {type(value).__name__}"
        got.append(value)
    if all(math.isclose(g, e, rel_tol=1e-9) for g, e in zip(got, expected)):
        return None
    slip = _kv_slip(got, expected, [byte_width(args) for args in cases])
    if slip:
        return slip
    i = next(i for i, (g, e) in enumerate(zip(got, expected)) if not math.isclose(g, e, rel_tol=1e-9))
    return f"for the arguments {_show(cases[i])}: got {got[i]:,}, expected {expected[i]:,}"


def _show(args: tuple) -> str:
    return ", ".join("the 7B config" if a is REAL else "the tiny config" if a is TINY else str(a) for a in args)


def check_kv_bytes_per_token(fn: Callable[[ModelConfig, int], int] | None) -> Verdict:
    """fn(cfg, bytes_per_value): the KV-cache bytes one token adds, for the whole model."""
    cases = [(REAL, 2), (REAL, 4), (TINY, 1), (TINY, 2)]
    expected = [_per_token(cfg, b) for cfg, b in cases]

    def verify(fn) -> str | None:
        return _judge_kv(fn, cases, expected, lambda args: args)

    return check(KV_BYTES_PER_TOKEN, fn, verify,
                 f"{_per_token(REAL, 2) // 1024} KiB per token for the 7B in bf16, "
                 f"{kv_cache_bytes(REAL, REAL.max_seq_len) / 2**30:.0f} GiB for a full 32k context")


def check_kv_cache_bytes(fn: Callable[[ModelConfig, int, int, int], int] | None) -> Verdict:
    """fn(cfg, context, batch, bytes_per_value): bytes of the whole KV cache (no sliding window)."""
    cases = [(REAL, 1, 1, 2), (REAL, 32768, 1, 2), (REAL, 4096, 4, 4), (TINY, 1000, 2, 1)]
    expected = [kv_cache_bytes(cfg, context, batch, _CACHE_DTYPES[b]) for cfg, context, batch, b in cases]

    def verify(fn) -> str | None:
        return _judge_kv(fn, cases, expected, lambda args: (args[0], args[3]))

    return check(KV_CACHE_BYTES, fn, verify, "128 KiB per token for the 7B in bf16, 4 GiB at 32k")


def check_tokens_that_fit(answer: int | None, gpu_gib: float = 24) -> Verdict:
    """How many tokens of bf16 KV cache fit on a 24 GiB GPU beside the bf16 weights."""
    weights = parameter_count(REAL) * 2
    free = gpu_gib * 2**30 - weights
    per_token = kv_bytes_per_token(REAL)
    expected = int(free // per_token)
    wrong = {
        int(free // (per_token // 2)): "that counts only K (or only V): the cache stores both, a factor of 2",
        int(free // kv_bytes_per_token(REAL, gqa=False)):
            "that uses 32 heads: the cache stores the 8 key/value heads (grouped-query attention)",
        int(free // (per_token // REAL.n_layers)): "every one of the 32 layers keeps its own cache",
        int(gpu_gib * 2**30 // per_token): "the weights take their share of the 24 GiB first: subtract them",
    }

    def verify(x) -> str | None:
        x = int(x)
        if abs(x - expected) <= 1:
            return None
        return wrong.get(x, f"{x:,} tokens is not it")

    return check(TOKENS_THAT_FIT, answer, verify,
                 f"about {expected:,} tokens: {expected / REAL.max_seq_len:.1f} times the 32k context")


def check_weight_gib(answer: float | None) -> Verdict:
    """The bf16 weights of Mistral-7B-Instruct-v0.2, in GiB."""
    n = parameter_count(REAL)
    expected = n * 2 / 2**30

    def verify(x) -> str | None:
        x = float(x)
        wrong = {n * 2 / 1e9: f"{x:.2f} is in GB (10^9 bytes); a GiB is 2^30 bytes",
                 expected * 2: f"{x:.2f} GiB is float32 (4 bytes per parameter); bfloat16 takes 2",
                 n / 2**30: "that counts parameters, not bytes: each bfloat16 takes 2 bytes",
                 n * 2: "that is bytes: divide by 2**30 for GiB"}
        if math.isclose(x, expected, rel_tol=1e-3):
            return None
        return next((why for value, why in wrong.items() if math.isclose(x, value, rel_tol=1e-3)),
                    f"{x:.3g} GiB is not it")

    return check(WEIGHT_GIB, answer, verify, f"{expected:.2f} GiB of weights before a single token is processed")


def check_weight_bytes(fn: Callable[[int, float], float] | None) -> Verdict:
    """fn(n_params, bits_per_weight) -> bytes of the weights alone."""

    def verify(fn) -> str | None:
        for n, bits in [(parameter_count(REAL), 16), (parameter_count(REAL), 4.85), (1000, 32)]:
            got = attempt(fn, n, bits)
            if not isinstance(got, (int, float)):
                return f"return a number of bytes, got {type(got).__name__}"
            expected = n * bits / 8
            if math.isclose(got, expected, rel_tol=1e-9):
                continue
            wrong = {n * bits: "that is bits: divide by 8 for bytes",
                     expected / 2**30: "that is GiB: return bytes (the caller converts)",
                     expected / 1e9: "that is GB: return bytes (the caller converts)",
                     n * 2: "that is always 2 bytes per weight (bf16): use bits_per_weight"}
            why = next((w for value, w in wrong.items() if math.isclose(got, value, rel_tol=1e-9)),
                       f"got {got:,}, expected {expected:,.0f}")
            return f"for {n:,} parameters at {bits} bits: {why}"
        return None

    return check(WEIGHT_BYTES, fn, verify, "bf16 7B = 14.48 GB, as the files say")


def block_parameters(cfg: ModelConfig) -> int:
    """One transformer block's parameters, summed from the package's tensor shapes of layer 0."""
    return sum(math.prod(shape) for name, shape in tensor_shapes(cfg).items() if layer_of(name) == 0)


def check_block_parameters(fn: Callable[[ModelConfig], int] | None) -> Verdict:
    """fn(cfg): the parameters of one transformer block."""

    def verify(fn) -> str | None:
        for cfg in (REAL, TINY):
            expected = block_parameters(cfg)
            got = int(attempt(fn, cfg))
            if got == expected:
                continue
            wrong = {expected - 2 * cfg.dim: "almost: add the two RMSNorm gains (dim each)",
                     expected + 2 * cfg.dim * cfg.head_dim * (cfg.n_heads - cfg.n_kv_heads):
                         "wk and wv have n_kv_heads (8), not n_heads, heads",
                     expected - cfg.dim * cfg.hidden_dim: "SwiGLU has three matrices (w1, w2, w3), not two"}
            return wrong.get(got, f"got {got:,}, expected {expected:,}")
        return None

    return check(BLOCK_PARAMETERS, fn, verify,
                 f"{block_parameters(REAL):,} per block; x 32 blocks = "
                 f"{REAL.n_layers * block_parameters(REAL) / parameter_count(REAL):.1%} of the model")
