"""Parameter and byte arithmetic, derived from a ModelConfig (no weights needed)."""
from __future__ import annotations

from .config import ModelConfig


def parameter_count(cfg: ModelConfig) -> int:
    """Every weight of the model: 7,241,732,096 for Mistral-7B-Instruct-v0.2."""
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    feed_forward = 3 * cfg.dim * cfg.hidden_dim
    norms = 2 * cfg.dim
    per_layer = attention + feed_forward + norms
    return 2 * cfg.vocab_size * cfg.dim + cfg.n_layers * per_layer + cfg.dim
