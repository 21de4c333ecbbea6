"""What one decode step reads, and why that, not arithmetic, sets its speed: bytes per token and the roofline.

A decode step multiplies one new vector (per sequence) by every weight matrix, so each weight byte read from
memory is used for ~2 FLOPs per sequence. A processor does far more FLOPs per second than it reads bytes
(an H100: ~990 TFLOP/s of bf16 against ~3.35 TB/s), so at small batch the step waits for memory, and its
time is at least bytes read / bandwidth. These functions give the bytes and the FLOPs per byte (the
arithmetic intensity) from a config alone; generation/speed.py measures the seconds.
"""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..dtypes import dtype_name
from .formats import weight_bytes_by_component
from .kv_cache import kv_cache_bytes

__all__ = ["attainable_flop_rate", "decode_bytes_per_step", "kv_crossover_context", "matmul_intensity"]


def decode_bytes_per_step(cfg: ModelConfig, weights="bf16", context: int = 0, batch: int = 1,
                          cache_dtype="bf16") -> dict[str, int]:
    """Bytes one decode step reads: every weight once (the embedding table only one row per sequence),
    and the keys and values of the `context` tokens already cached, for each of `batch` sequences.

    The weights are read once whatever the batch (every sequence's vector meets the same matrix), the
    KV cache once per sequence (each has its own): that asymmetry is why batching pays until the cache
    dominates. Activations (a few vectors of dim or hidden_dim) are left out: kilobytes against gigabytes.
    weights is a format name (memory.WEIGHT_FORMATS: "bf16", "int8", ...) or a torch dtype.
    """
    if batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    if context < 0:
        raise ValueError(f"context (tokens already in the cache) must be >= 0, got {context}")
    if not isinstance(weights, str):                         # a torch dtype: the format of that name
        weights = dtype_name(weights)
    by_component = weight_bytes_by_component(cfg, weights)
    table = by_component.pop("tok_embeddings")
    one_row = table // cfg.vocab_size                        # a lookup reads its rows, not the table
    kv = kv_cache_bytes(cfg, context, batch, cache_dtype) if context else 0
    return {"weights": sum(by_component.values()) + batch * one_row, "KV cache": kv}


def kv_crossover_context(cfg: ModelConfig, weights="bf16", batch: int = 1, cache_dtype="bf16") -> float:
    """The context at which a decode step reads as many bytes of KV cache as of weights (no sliding window)."""
    weight_read = decode_bytes_per_step(cfg, weights, 0, batch)["weights"]
    return weight_read / (kv_cache_bytes(cfg, 1, batch, cache_dtype))


def matmul_intensity(batch: int, rows: int, cols: int, bytes_per_value: float = 2) -> float:
    """FLOPs per byte moved by y = x W^T with x (batch, cols) and W (rows, cols).

    2 FLOPs (a multiply and an add) per weight per row of x; the bytes are W once, x read and y written.
    At batch 1 that is ~1 FLOP per byte in bf16, whatever the matrix; it grows with the batch until the
    matrix reads no longer dominate.
    """
    if min(batch, rows, cols) <= 0 or bytes_per_value <= 0:
        raise ValueError(f"batch, rows, cols and bytes_per_value must be positive, got {batch}, {rows}, {cols}, "
                         f"{bytes_per_value}")
    flops = 2 * batch * rows * cols
    moved = bytes_per_value * (rows * cols + batch * cols + batch * rows)
    return flops / moved


def attainable_flop_rate(intensity, peak_flop_rate: float, bandwidth: float):
    """The roofline: FLOP/s a kernel of this intensity can reach, min(peak, intensity x bandwidth).

    Below the ridge point (peak / bandwidth FLOPs per byte) memory limits it, above it the arithmetic
    units do. Works on a number or a numpy array of intensities.
    """
    return np.minimum(peak_flop_rate, np.asarray(intensity, dtype=float) * bandwidth)

