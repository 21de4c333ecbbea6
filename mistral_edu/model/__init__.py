"""The Mistral transformer, one idea per module."""
from .attention import Attention, AttentionSpan, repeat_kv
from .block import TransformerBlock
from .feed_forward import FeedForward
from .rmsnorm import RMSNorm
from .rope import apply_rope, rope_inverse_frequencies, rope_rotations
from .transformer import Transformer

__all__ = ["Attention", "AttentionSpan", "FeedForward", "RMSNorm", "Transformer", "TransformerBlock",
           "apply_rope", "repeat_kv", "rope_inverse_frequencies", "rope_rotations"]
