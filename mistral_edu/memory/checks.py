"""Checks of a context length and a batch size, shared by the estimate, the fit check and the command line."""
from __future__ import annotations

from ..config import ModelConfig


def check_context(cfg: ModelConfig, context) -> int:
    """`context` as an int in 1..cfg.max_seq_len: a longer prompt is not something the model can read."""
    if isinstance(context, bool) or not isinstance(context, int) or not 0 < context <= cfg.max_seq_len:
        raise ValueError(f"context must be an integer in 1..{cfg.max_seq_len} (the model's context), got {context!r}")
    return context


def check_batch(batch) -> int:
    """`batch` as a positive int (True is not a batch size, though Python counts it as 1)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return batch
