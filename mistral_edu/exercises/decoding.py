"""Decoding-speed exercises (notebook 13): the speed floor from bytes and bandwidth, arithmetic intensity,
and the context at which the KV cache outweighs the weights.

Every expected number comes from mistral_edu.memory (decode_bytes_per_step, matmul_intensity,
kv_crossover_context), the functions the lesson prints its tables with. A wrong number is compared with
what each usual slip gives on several cases at once, so one slip is named only when it explains them all.
"""
from __future__ import annotations

import math
from typing import Callable

from ..config import ModelConfig
from ..memory import decode_bytes_per_step, kv_bytes_per_token, kv_crossover_context, matmul_intensity, weight_bytes
from .catalogue import Exercise, register
from .verdict import Verdict, as_number, attempt, check

__all__ = ["check_crossover_context", "check_decode_tokens_per_second", "check_matmul_intensity"]

REAL = ModelConfig.mistral_7b_instruct_v02()
TINY = ModelConfig.tiny()

DECODE_TOKENS_PER_SECOND = register(Exercise(
    name="decode_tokens_per_second", notebook="13", difficulty=2, minutes=10,
    task="write decode_tokens_per_second(cfg, bandwidth, context): the most tokens per second a batch-1 decode "
         "step can reach with bf16 weights and a bf16 KV cache already holding `context` tokens, on a device that "
         "reads `bandwidth` bytes per second. The step reads exactly: every parameter except the embedding table, "
         "plus one row (dim values) of that table, at 2 bytes each; and for each cached token its keys and values, "
         "2 x n_layers x n_kv_heads x head_dim values at 2 bytes each",
    hints=("a step must read every byte it uses once: the weights (the embedding table is a lookup: one row of "
           "it), and the keys and values of every cached token; time is at least the bytes divided by the "
           "bandwidth",
           "count the weight bytes (every parameter but the embedding table, plus one of its rows), add what the"
           " cache holds for `context` tokens, and turn bytes per step into steps per second"),
    solution='''def decode_tokens_per_second(cfg, bandwidth, context):
    from mistral_edu.memory import parameter_count
    weights = 2 * (parameter_count(cfg) - cfg.vocab_size * cfg.dim + cfg.dim)          # bf16, one embedding row
    kv = context * 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2                # K and V, bf16
    return bandwidth / (weights + kv)''',
))

MATMUL_INTENSITY = register(Exercise(
    name="matmul_intensity", notebook="13", difficulty=2, minutes=10,
    task="write matmul_intensity(batch, rows, cols, bytes_per_value): the FLOPs per byte moved by y = x W^T, x "
         "(batch, cols), W (rows, cols), every value bytes_per_value bytes",
    hints=("count the arithmetic (each weight is multiplied and added once per row of x) and the bytes (W is "
           "read once whatever the batch; x is read and y written)",
           "a multiply-add is two operations; the bytes are the three tensors' element counts at bytes_per_value"
           " each; the intensity is the first count divided by the second"),
    solution='''def matmul_intensity(batch, rows, cols, bytes_per_value):
    flops = 2 * batch * rows * cols
    return flops / (bytes_per_value * (rows * cols + batch * cols + batch * rows))''',
))

CROSSOVER_CONTEXT = register(Exercise(
    name="crossover_context", notebook="13", difficulty=2, minutes=10, takes_function=False,
    task="give the context (tokens already cached) at which one decode step of the real 7B at batch 16, bf16 "
         "weights and bf16 cache, reads as many bytes of KV cache as of weights",
    hints=("the weights are read once per step whatever the batch (not the embedding table: one row per "
           "sequence); the KV cache once per sequence, and it grows by 128 KiB per token for each of them",
           "take the weight bytes one batch-16 step reads (the package's decode_bytes_per_step gives them), and "
           "find the context at which sixteen caches hold that many bytes"),
    solution="crossover_context = decode_bytes_per_step(real, 'bf16', 0, batch=16)['weights'] / "
             "(16 * kv_bytes_per_token(real))",
))


def _weights_read(cfg: ModelConfig) -> int:
    return decode_bytes_per_step(cfg, "bf16")["weights"]


def _first_slip(got: list[float], slips: dict[str, list[float]]) -> str | None:
    """The slip whose numbers match every answer, if one does."""
    for message, values in slips.items():
        if all(math.isclose(g, v, rel_tol=1e-6) for g, v in zip(got, values)):
            return message
    return None


def _compare(got: list[float], expected: list[float], slips: dict[str, list[float]],
             describe: Callable[[int, float], str]) -> str | None:
    """None when every answer is right; else the slip that explains them all, or the first wrong case described."""
    wrong = [i for i, (g, e) in enumerate(zip(got, expected)) if not math.isclose(g, e, rel_tol=1e-6)]
    if not wrong:
        return None
    return _first_slip(got, slips) or describe(wrong[0], got[wrong[0]])


def _numbers(fn: Callable, cases: list[tuple]) -> list[float]:
    """The learner's answers to each case; an answer that is not a number raises WrongAnswer."""
    got = []
    for args in cases:
        got.append(float(as_number(attempt(fn, *args))))
    return got


def check_decode_tokens_per_second(fn: Callable[[ModelConfig, float, int], float] | None) -> Verdict:
    """fn(cfg, bandwidth, context): the batch-1 tokens/s ceiling with bf16 weights and cache."""
    cases = [(REAL, 3.35e12, 0), (REAL, 1.0e12, 32768), (TINY, 50e9, 1000)]

    def read(cfg, context, weights=None, per_token=None):
        weights = _weights_read(cfg) if weights is None else weights
        return weights + context * (kv_bytes_per_token(cfg) if per_token is None else per_token)

    expected = [bw / read(cfg, c) for cfg, bw, c in cases]
    slips = {
        "that is seconds per token (bytes / bandwidth): tokens per second is its inverse":
            [read(cfg, c) / bw for cfg, bw, c in cases],
        "you counted the whole embedding table: a lookup reads one row of it per token, not vocab_size rows":
            [bw / read(cfg, c, weights=_weights_read(cfg) + 2 * cfg.dim * (cfg.vocab_size - 1)) for cfg, bw, c in cases],
        "you left out the KV cache: each step also reads the keys and values of every cached token":
            [bw / read(cfg, 0) for cfg, bw, c in cases],
        "you used n_heads for the cache: with GQA only the n_kv_heads key/value heads are stored and read":
            [bw / read(cfg, c, per_token=kv_bytes_per_token(cfg, gqa=False)) for cfg, bw, c in cases],
        "you counted one of K and V: the cache holds a key AND a value per token, layer and KV head":
            [bw / read(cfg, c, per_token=kv_bytes_per_token(cfg) // 2) for cfg, bw, c in cases],
    }

    def verify(fn) -> str | None:
        def describe(i: int, got: float) -> str:
            cfg, bw, c = cases[i]
            return (f"for the {'7B' if cfg is REAL else 'tiny'} config, {bw:.3g} B/s and {c} cached tokens: "
                    f"got {got:.4g}, expected {expected[i]:.4g}")
        return _compare(_numbers(fn, cases), expected, slips, describe)

    return check(DECODE_TOKENS_PER_SECOND, fn, verify,
                 f"the 7B in bf16 on an H100's 3.35 TB/s: at most {expected[0]:.0f} tokens/s at batch 1; "
                 f"at 32k context on 1 TB/s, {expected[1]:.0f}")


def check_matmul_intensity(fn: Callable[[int, int, int, float], float] | None) -> Verdict:
    """fn(batch, rows, cols, bytes_per_value): FLOPs per byte of y = x W^T."""
    cases = [(1, 4096, 4096, 2), (64, 4096, 4096, 2), (64, 14336, 4096, 1), (8, 256, 512, 4)]
    expected = [matmul_intensity(*args) for args in cases]
    slips = {
        "that is half: a multiply-add is 2 FLOPs, one multiply and one add":
            [e / 2 for e in expected],
        "the matrix is read once for the whole batch, not once per row of x: that is why batching pays":
            [2 * b * r * c / (v * b * (r * c + c + r)) for b, r, c, v in cases],
        "you counted only the matrix's bytes: x is read and y written too (small at batch 1, not at batch 64)":
            [2 * b / v for b, r, c, v in cases],
        "that counts values, not bytes: multiply the count by bytes_per_value":
            [e * v for e, (b, r, c, v) in zip(expected, cases)],
        "the FLOPs grow with the batch: every row of x multiplies the whole matrix":
            [e / b for e, (b, r, c, v) in zip(expected, cases)],
    }

    def verify(fn) -> str | None:
        describe = lambda i, got: f"matmul_intensity{cases[i]} returned {got:.4g}, expected {expected[i]:.4g}"
        return _compare(_numbers(fn, cases), expected, slips, describe)

    return check(MATMUL_INTENSITY, fn, verify,
                 f"a 4096 x 4096 bf16 matmul does {expected[0]:.2f} FLOP per byte at batch 1 and "
                 f"{expected[1]:.0f} at batch 64")


def check_crossover_context(answer: float | None) -> Verdict:
    """The context where the real 7B's batch-16 decode step reads as much KV cache as weights."""
    batch = 16
    expected = kv_crossover_context(REAL, "bf16", batch)
    per_token = kv_bytes_per_token(REAL)
    weights = _weights_read(REAL) + (batch - 1) * REAL.dim * 2
    wrong = {
        kv_crossover_context(REAL, "bf16", 1): "that is batch 1: each of the 16 sequences has its own cache",
        weights / (batch * per_token / 2): "that counts half the cache: it holds a key AND a value per token (128 KiB, "
                                           "not 64) for each of the 16 sequences (this is batch 16, not section 6's 8)",
        weights / (batch * kv_bytes_per_token(REAL, gqa=False)):
            "that uses 32 heads: the cache stores the 8 key/value heads (grouped-query attention)",
        weight_bytes(REAL, "bf16") / (batch * per_token):
            "you counted the whole embedding table: a lookup reads one row per sequence, not 32,000",
    }

    def verify(x) -> str | None:
        x = float(as_number(x, "a number of tokens"))
        if abs(x - expected) <= 1:
            return None
        return next((why for value, why in wrong.items() if abs(x - value) <= 1), f"{x:,.0f} tokens is not it")

    return check(CROSSOVER_CONTEXT, answer, verify,
                 f"about {expected:,.0f} tokens: past that, a batch-16 step reads more cache than weights, "
                 "and a longer context slows every token")
