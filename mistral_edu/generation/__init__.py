"""Generation: sampling, generate and chat through the KV cache, and the fast decode path."""
from .generate import chat, generate
from .sampling import sample_next, top_p_filter

__all__ = ["chat", "generate", "sample_next", "top_p_filter"]
