"""The bytes of the KV cache: the one home of "128 KiB per token" for Mistral 7B in bf16."""
from __future__ import annotations

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES, dtype_name
from .checks import check_batch, check_context


def kv_bytes_per_token(cfg: ModelConfig, cache_dtype="bf16", gqa: bool = True) -> int:
    """A key and a value per layer and KV head: 2 x 32 x 8 x 128 x 2 B = 128 KiB for Mistral 7B in bf16.

    gqa=False gives what the same model would need with one KV head per query head (512 KiB).
    """
    heads = cfg.n_kv_heads if gqa else cfg.n_heads
    return 2 * cfg.n_layers * heads * cfg.head_dim * DTYPE_BYTES[dtype_name(cache_dtype)]


def kv_cache_bytes(cfg: ModelConfig, context: int, batch: int = 1, cache_dtype="bf16", gqa: bool = True) -> int:
    """Keys and values of every layer for `context` tokens of `batch` sequences: what KVCache allocates.

    With a sliding window the rolling buffer keeps only `window` slots, so the cache stops growing there.
    """
    check_context(cfg, context)
    check_batch(batch)
    slots = min(context, cfg.sliding_window) if cfg.sliding_window else context
    return batch * slots * kv_bytes_per_token(cfg, cache_dtype, gqa)
