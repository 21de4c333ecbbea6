"""The Mistral transformer, one idea per module."""
from .attention import Attention, AttentionSpan, fused_attention, repeat_kv
from .block import TransformerBlock, projection_groups
from .feed_forward import FeedForward, swiglu
from .kv_cache import KVCache
from .rmsnorm import RMSNorm, rms_norm, rms_scale
from .rope import apply_rope, rope_inverse_frequencies, rope_rotations, rotate_pairs
from .transformer import Transformer, random_init_

__all__ = ["Attention", "AttentionSpan", "FeedForward", "KVCache", "RMSNorm", "Transformer", "TransformerBlock",
           "apply_rope", "fused_attention", "projection_groups", "random_init_", "repeat_kv", "rms_norm", "rms_scale", "rope_inverse_frequencies",
           "rope_rotations", "rotate_pairs", "swiglu"]
