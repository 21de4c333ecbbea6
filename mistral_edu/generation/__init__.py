"""Generation: sampling, generate and chat through the KV cache, and the fast decode path."""
from .generate import chat, generate, sample_next

__all__ = ["chat", "generate", "sample_next"]
