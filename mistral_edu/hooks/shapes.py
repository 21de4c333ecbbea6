"""The shape every hook point sees, computed from a config, and what caching all of them costs."""
from __future__ import annotations

import math


def activation_shapes(cfg, batch: int, q_len: int, k_len: int | None = None) -> dict[str, tuple[int, ...]]:
    """The shape every hook point sees, by full name, in forward order: docs/interpretability.md's table.

    q_len is the number of new positions in the forward call, k_len the number of keys attention reads
    (q_len without a KV cache; every cached position with one).
    """
    k_len = q_len if k_len is None else k_len
    resid, scale = (batch, q_len, cfg.dim), (batch, q_len, 1)
    per_layer = {
        "hook_resid_pre": resid, "attention_norm.hook_scale": scale, "attention_norm.hook_normalized": resid,
        "attention.hook_q": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "attention.hook_k": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_v": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_rot_q": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "attention.hook_rot_k": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_attn_scores": (batch, cfg.n_heads, q_len, k_len),
        "attention.hook_pattern": (batch, cfg.n_heads, q_len, k_len),
        "attention.hook_z": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "hook_attn_out": resid, "hook_resid_mid": resid,
        "ffn_norm.hook_scale": scale, "ffn_norm.hook_normalized": resid,
        "feed_forward.hook_pre": (batch, q_len, cfg.hidden_dim),
        "feed_forward.hook_pre_linear": (batch, q_len, cfg.hidden_dim),
        "feed_forward.hook_post": (batch, q_len, cfg.hidden_dim),
        "hook_mlp_out": resid, "hook_resid_post": resid,
    }
    shapes = {"hook_embed": resid}
    for layer in range(cfg.n_layers):
        shapes.update({f"layers.{layer}.{leaf}": shape for leaf, shape in per_layer.items()})
    shapes.update({"norm.hook_scale": scale, "norm.hook_normalized": resid})
    return shapes


def full_cache_bytes(cfg, seq: int, batch: int = 1, bytes_per_value: int = 2) -> int:
    """Bytes a run_with_cache of every hook point would hold (bf16: 2 bytes per value).

    The norms' scales are float32 whatever the model's dtype. The two (q, k) tensors per layer, scores
    and pattern, grow with seq**2 and dominate long contexts.
    """
    return sum(math.prod(shape) * (4 if name.endswith("hook_scale") else bytes_per_value)
               for name, shape in activation_shapes(cfg, batch, seq).items())
