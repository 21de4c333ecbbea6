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
from .verdict import Case, Verdict, as_number, check, judge_numbers

__all__ = ["check_block_parameters", "check_kv_bytes_per_token", "check_kv_cache_bytes", "check_tokens_that_fit",
           "check_weight_bytes", "check_weight_gib"]

REAL = ModelConfig.mistral_7b_instruct_v02()
TINY = ModelConfig.tiny()

WEIGHT_GIB = register(Exercise(
    name="weight_gib", notebook="00", difficulty=1, minutes=5, takes_function=False,
    task="give the GiB that the real model's weights take in int8, one byte per parameter (section 4 printed bf16's; "
         "1 GiB = 2**30 bytes)",
    hints=("a format's size is the number of parameters times the bytes each one takes; int8 stores one byte where "
           "bfloat16 stores two",
           "the package counts the parameters for you; turn them into bytes at int8's width, then into GiB (a GiB is "
           "2 to the 30th bytes)"),
    solution="weight_gib = parameter_count(real) * 1 / 2**30",
))

TOKENS_THAT_FIT = register(Exercise(
    name="tokens_that_fit", notebook="00", difficulty=2, minutes=10, takes_function=False,
    task="give how many tokens of bf16 KV cache fit on a 24 GiB GPU beside the bf16 weights",
    hints=("what is left after the weights, divided by what one token adds to the cache: a key AND a value "
           "vector, in every layer, for every KV head",
           "subtract the weights' bytes from the GPU's, work out the bytes one token adds, and keep only whole "
           "tokens"),
    solution="tokens_that_fit = (24 * 2**30 - parameter_count(real) * 2) // "
             "(2 * real.n_layers * real.n_kv_heads * real.head_dim * 2)",
))

KV_BYTES_PER_TOKEN = register(Exercise(
    name="kv_bytes_per_token", notebook="04", difficulty=2, minutes=10,
    task="write kv_bytes_per_token(cfg, bytes_per_value): the bytes one token adds to the KV cache of the "
         "whole model",
    hints=("a token leaves two vectors behind in every layer, its key and its value, one per KV head (the query "
           "heads share them)",
           "multiply the number of stored vectors by their length and by the bytes each number takes"),
    solution='''def kv_bytes_per_token(cfg, bytes_per_value):
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * bytes_per_value''',
))

KV_CACHE_BYTES = register(Exercise(
    name="kv_cache_bytes", notebook="07", difficulty=2, minutes=10,
    task="write kv_cache_bytes(cfg, context, batch, bytes_per_value): the bytes of the KV cache of `batch` "
         "sequences of `context` tokens; with a sliding window (cfg.sliding_window: 4096 for v0.1, None for v0.2) the "
         "rolling buffer keeps only the last sliding_window tokens of each sequence",
    hints=("what is stored (two things), where (every layer), for which heads (not the query heads), how long "
           "each vector is, for how many tokens (a rolling buffer keeps no more than its window); the 7B in bf16"
           " comes out at 128 KiB per token",
           "start from one token's bytes, decide how many tokens each sequence really keeps (the window, if "
           "there is one, caps it), and multiply by the number of sequences"),
    solution='''def kv_cache_bytes(cfg, context, batch, bytes_per_value):
    kept = min(context, cfg.sliding_window) if cfg.sliding_window else context   # the rolling buffer's slots
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * kept * batch * bytes_per_value''',
))

WEIGHT_BYTES = register(Exercise(
    name="weight_bytes", notebook="07", difficulty=1, minutes=5,
    task="write weight_bytes(n_params, bits_per_weight): the bytes of the weights alone",
    hints=("a format is a number of bits per weight (16 for bf16, about 4.85 for Q4_K_M); a byte is 8 bits",
           "count the bits of all the weights, then convert to bytes without rounding each weight to a whole "
           "byte"),
    solution='''def weight_bytes(n_params, bits_per_weight):
    return n_params * bits_per_weight / 8''',
))

BLOCK_PARAMETERS = register(Exercise(
    name="block_parameters", notebook="05", difficulty=2, minutes=10,
    task="write params_per_block(cfg): the number of parameters in one transformer block",
    hints=("a block holds attention (wq, wk, wv, wo), the feed-forward (w1, w2, w3) and two RMSNorm gains; with "
           "GQA wk and wv are smaller than wq",
           "write down each matrix's shape from the config (query heads for wq and wo, KV heads for wk and wv, "
           "hidden_dim for the feed-forward), add their element counts and the two gains"),
    solution='''def params_per_block(cfg):
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)   # wq, wo + wk, wv
    return attention + 3 * cfg.dim * cfg.hidden_dim + 2 * cfg.dim                 # w1, w2, w3 and two norm gains''',
))

_CACHE_DTYPES = {value: name for name, value in DTYPE_BYTES.items() if name in ("fp32", "bf16", "fp8")}
V01 = ModelConfig.mistral_7b_v01()
_CONFIG_NAMES = {id(REAL): "the 7B v0.2 config", id(TINY): "the tiny config", id(V01): "the 7B v0.1 config (window 4096)"}


def _show(args: tuple) -> str:
    return ", ".join(_CONFIG_NAMES.get(id(a), str(a)) for a in args)


def _cases(arguments: list[tuple], expected: Callable[..., float]) -> list[Case]:
    return [Case(f"for the arguments ({_show(args)})", args, expected(*args)) for args in arguments]


def _per_value(cfg: ModelConfig, heads: int | None = None, layers: int | None = None) -> int:
    """Keys and values (numbers, not bytes) one token leaves in the cache, with the heads or layers changed."""
    return 2 * (cfg.n_layers if layers is None else layers) * (cfg.n_kv_heads if heads is None else heads) * cfg.head_dim


def _kv_slips(tokens: Callable[[Case], int], width: Callable[[Case], int]) -> dict[str, Callable[[Case], float]]:
    """The usual slips of a KV-cache size, given how many tokens and bytes per value a case stores."""
    return {
        "you forgot the K-and-V factor of 2: the cache stores a key AND a value for every token":
            lambda c: _per_value(c.args[0]) // 2 * tokens(c) * width(c),
        "you hard-coded 2 bytes per value: use bytes_per_value (4 for float32, 1 for fp8)":
            lambda c: _per_value(c.args[0]) * tokens(c) * 2,
        "you forgot bytes_per_value: that counts numbers, not bytes": lambda c: _per_value(c.args[0]) * tokens(c),
        "you used n_heads: GQA caches only the n_kv_heads key/value heads":
            lambda c: _per_value(c.args[0], heads=c.args[0].n_heads) * tokens(c) * width(c),
        "that is one layer: every layer keeps its own cache":
            lambda c: _per_value(c.args[0], layers=1) * tokens(c) * width(c),
        "that is bits: multiply by bytes, not by 8 bits": lambda c: _per_value(c.args[0]) * tokens(c) * width(c) * 8,
    }


def check_kv_bytes_per_token(fn: Callable[[ModelConfig, int], int] | None) -> Verdict:
    """fn(cfg, bytes_per_value): the KV-cache bytes one token adds, for the whole model."""
    cases = _cases([(REAL, 2), (REAL, 4), (TINY, 1), (TINY, 2)], lambda cfg, b: kv_bytes_per_token(cfg, _CACHE_DTYPES[b]))

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, _kv_slips(lambda c: 1, lambda c: c.args[1]), what="a number of bytes")

    return check(KV_BYTES_PER_TOKEN, fn, verify,
                 f"{kv_bytes_per_token(REAL) // 1024} KiB per token for the 7B in bf16, "
                 f"{kv_cache_bytes(REAL, REAL.max_seq_len) / 2**30:.0f} GiB for a full 32k context")


def check_kv_cache_bytes(fn: Callable[[ModelConfig, int, int, int], int] | None) -> Verdict:
    """fn(cfg, context, batch, bytes_per_value): bytes of the whole KV cache, as memory.kv_cache_bytes allocates it.

    With a sliding window the rolling buffer holds only the window's tokens: v0.1 is tried below and
    above its 4096-token window, so ignoring the window and always using it are both caught.
    """
    cases = _cases([(REAL, 1, 1, 2), (REAL, 32768, 1, 2), (REAL, 4096, 4, 4), (TINY, 1000, 2, 1), (V01, 8192, 2, 2),
                    (V01, 1000, 1, 2)],
                   lambda cfg, context, batch, b: kv_cache_bytes(cfg, context, batch, _CACHE_DTYPES[b]))
    window = lambda c: min(c.args[1], c.args[0].sliding_window) if c.args[0].sliding_window else c.args[1]
    slips = _kv_slips(lambda c: window(c) * c.args[2], lambda c: c.args[3])
    slips.update({
        "you ignored the sliding window: v0.1's rolling buffer keeps only the last sliding_window (4096) tokens, so "
        "its cache stops growing there": lambda c: _per_value(c.args[0]) * c.args[1] * c.args[2] * c.args[3],
        "a window caps the cache; a context shorter than the window stores only its own tokens":
            lambda c: _per_value(c.args[0]) * (c.args[0].sliding_window or c.args[1]) * c.args[2] * c.args[3],
        "you forgot the batch: every sequence has its own cache": lambda c: _per_value(c.args[0]) * window(c) * c.args[3],
    })

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, what="a number of bytes")

    return check(KV_CACHE_BYTES, fn, verify, "128 KiB per token for the 7B in bf16, 4 GiB at 32k; v0.1 stops at its "
                                             "4096-token window")


def check_tokens_that_fit(answer: int | None, gpu_gib: float = 24) -> Verdict:
    """How many whole tokens of bf16 KV cache fit on a 24 GiB GPU beside the bf16 weights."""
    weights = parameter_count(REAL) * 2
    free = gpu_gib * 2**30 - weights
    per_token = kv_bytes_per_token(REAL)
    expected = free // per_token
    wrong = {
        free // (per_token // 2): "that counts only K (or only V): the cache stores both, a factor of 2",
        free // kv_bytes_per_token(REAL, gqa=False):
            "that uses 32 heads: the cache stores the 8 key/value heads (grouped-query attention)",
        free // (per_token // REAL.n_layers): "every one of the 32 layers keeps its own cache",
        gpu_gib * 2**30 // per_token: "the weights take their share of the 24 GiB first: subtract them",
        expected + 1: f"you rounded up: {free / per_token:,.2f} tokens' worth of bytes are free, and the last, partial "
                      "token does not fit; round down",
        free // (per_token * 4 // 2): "that is float32 cache (4 bytes a value); this cache is bf16, 2 bytes",
    }

    def verify(x) -> str | None:
        x = as_number(x, "a number of tokens")
        if x == expected:
            return None
        if math.isclose(x, free / per_token, rel_tol=1e-9):
            return (f"that is the exact quotient {x:,.2f}: a token's keys and values fit whole or not at all, so "
                    "round down to a whole number of tokens")
        return wrong.get(x, f"{x:,} tokens is not it")

    return check(TOKENS_THAT_FIT, answer, verify,
                 f"{expected:,} tokens: {expected / REAL.max_seq_len:.1f} times the 32k context")


def check_weight_gib(answer: float | None) -> Verdict:
    """The int8 weights of Mistral-7B-Instruct-v0.2, in GiB (section 4 of notebook 00 prints the bf16 size)."""
    n = parameter_count(REAL)
    expected = n / 2**30

    def verify(x) -> str | None:
        x = as_number(x, "a number of GiB")
        wrong = {n / 1e9: f"{x:.2f} is in GB (10^9 bytes); a GiB is 2^30 bytes",
                 expected * 2: f"{x:.2f} GiB is bfloat16 (2 bytes per parameter); int8 takes 1",
                 expected * 4: f"{x:.2f} GiB is float32 (4 bytes per parameter); int8 takes 1",
                 expected / 2: f"{x:.2f} GiB is 4-bit (half a byte per parameter); int8 takes a whole byte",
                 float(n): "that is bytes: divide by 2**30 for GiB",
                 n / 2**20: "that is MiB (2^20 bytes); a GiB is 2^30 bytes",
                 n * 8 / 2**30: "that is gibibits: an int8 is 8 bits but 1 byte"}
        if math.isclose(x, expected, rel_tol=1e-4):
            return None
        return next((why for value, why in wrong.items() if math.isclose(x, value, rel_tol=1e-4)),
                    f"{x:.4g} GiB is not it")

    return check(WEIGHT_GIB, answer, verify, f"{expected:.2f} GiB in int8, half of bfloat16's {2 * expected:.2f}")


def check_weight_bytes(fn: Callable[[int, float], float] | None) -> Verdict:
    """fn(n_params, bits_per_weight) -> bytes of the weights alone."""
    cases = [Case(f"for {n:,} parameters at {bits} bits", (n, bits), n * bits / 8)
             for n, bits in [(parameter_count(REAL), 16), (parameter_count(REAL), 4.85), (1000, 32), (4096, 3.5)]]
    slips = {"that is bits: divide by 8 for bytes": lambda c: c.args[0] * c.args[1],
             "that is GiB: return bytes (the caller converts)": lambda c: c.expected / 2**30,
             "that is GB: return bytes (the caller converts)": lambda c: c.expected / 1e9,
             "that is always 2 bytes per weight (bf16): use bits_per_weight": lambda c: c.args[0] * 2,
             "you rounded each weight up to whole bytes: a 4.85-bit format packs its weights across byte boundaries":
                 lambda c: c.args[0] * math.ceil(c.args[1] / 8),
             "that divides by bits_per_weight: n_params weights of bits_per_weight bits each is a product":
                 lambda c: c.args[0] / c.args[1] / 8}

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, what="a number of bytes")

    return check(WEIGHT_BYTES, fn, verify, "bf16 7B = 14.48 GB, as the files say")


def block_parameters(cfg: ModelConfig) -> int:
    """One transformer block's parameters, summed from the package's tensor shapes of layer 0."""
    return sum(math.prod(shape) for name, shape in tensor_shapes(cfg).items() if layer_of(name) == 0)


# heads x head_dim != dim here, so "wq is dim x dim" is told from "wk has n_heads"
ODD = ModelConfig(dim=64, n_layers=2, head_dim=24, hidden_dim=200, n_heads=4, n_kv_heads=1, vocab_size=100)
_CONFIG_NAMES[id(ODD)] = "a config with n_heads * head_dim != dim (64, 4 heads of 24, 1 KV head, hidden 200)"


def check_block_parameters(fn: Callable[[ModelConfig], int] | None) -> Verdict:
    """fn(cfg): the parameters of one transformer block, on three configs that separate the slips."""
    cases = _cases([(REAL,), (TINY,), (ODD,)], block_parameters)
    q = lambda cfg: cfg.n_heads * cfg.head_dim
    kv = lambda cfg: cfg.n_kv_heads * cfg.head_dim
    ffn = lambda cfg, hidden=None: 3 * cfg.dim * (cfg.hidden_dim if hidden is None else hidden)
    attention = lambda cfg, kv_width=None: cfg.dim * (2 * q(cfg) + 2 * (kv(cfg) if kv_width is None else kv_width))
    slips = {
        "almost: add the two RMSNorm gains (dim each)": lambda c: c.expected - 2 * c.args[0].dim,
        "one RMSNorm gain is missing: a block has two, before attention and before the feed-forward":
            lambda c: c.expected - c.args[0].dim,
        "wk and wv have n_kv_heads heads, not n_heads": lambda c: attention(c.args[0], q(c.args[0])) + ffn(c.args[0])
                                                                   + 2 * c.args[0].dim,
        "SwiGLU has three matrices (w1, w2, w3), not two": lambda c: c.expected - c.args[0].dim * c.args[0].hidden_dim,
        "the feed-forward's width is cfg.hidden_dim, not 4 x dim (Mistral's is 3.5 x)":
            lambda c: c.expected - ffn(c.args[0]) + ffn(c.args[0], 4 * c.args[0].dim),
        "wq and wo are dim x (n_heads * head_dim), which need not be dim x dim":
            lambda c: c.expected - 2 * c.args[0].dim * q(c.args[0]) + 2 * c.args[0].dim ** 2,
        "the embedding table is not part of a block": lambda c: c.expected + c.args[0].vocab_size * c.args[0].dim,
    }

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, slips, rel_tol=0, what="a number of parameters")

    return check(BLOCK_PARAMETERS, fn, verify,
                 f"{block_parameters(REAL):,} per block; x 32 blocks = "
                 f"{REAL.n_layers * block_parameters(REAL) / parameter_count(REAL):.1%} of the model")
