"""Parameter counts from a ModelConfig alone: every tensor's shape, grouped by what it does."""
from __future__ import annotations

import math
import re

from ..config import ModelConfig

COMPONENTS = ("tok_embeddings", "attention.wq", "attention.wk", "attention.wv", "attention.wo",
              "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "norms", "output")


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint by its consolidated name, in the order the model holds them."""
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {"tok_embeddings.weight": (cfg.vocab_size, cfg.dim)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes.update({
            p + "attention_norm.weight": (cfg.dim,),
            p + "attention.wq.weight": (q, cfg.dim), p + "attention.wk.weight": (kv, cfg.dim),
            p + "attention.wv.weight": (kv, cfg.dim), p + "attention.wo.weight": (cfg.dim, q),
            p + "ffn_norm.weight": (cfg.dim,),
            p + "feed_forward.w1.weight": (cfg.hidden_dim, cfg.dim),
            p + "feed_forward.w2.weight": (cfg.dim, cfg.hidden_dim),
            p + "feed_forward.w3.weight": (cfg.hidden_dim, cfg.dim),
        })
    shapes["norm.weight"] = (cfg.dim,)
    shapes["output.weight"] = (cfg.vocab_size, cfg.dim)
    return shapes


def component_of(name: str) -> str:
    """Which of COMPONENTS a tensor name belongs to ("layers.3.attention.wq.weight" -> "attention.wq")."""
    if name.endswith("norm.weight"):
        return "norms"
    return re.sub(r"^layers\.\d+\.", "", name).removesuffix(".weight")


def parameter_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per component, summed over the layers."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, shape in tensor_shapes(cfg).items():
        counts[component_of(name)] += math.prod(shape)
    return counts


def parameter_count(cfg: ModelConfig) -> int:
    """Every weight of the model: 7,241,732,096 for Mistral-7B-Instruct-v0.2.

    Written out as a formula (not summed from tensor_shapes) so that a reader sees where the 7.2 billion come from.
    """
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    feed_forward = 3 * cfg.dim * cfg.hidden_dim
    norms = 2 * cfg.dim
    per_layer = attention + feed_forward + norms
    return 2 * cfg.vocab_size * cfg.dim + cfg.n_layers * per_layer + cfg.dim
