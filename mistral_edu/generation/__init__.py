"""Generation: sampling, generate and chat through the KV cache, and the fast decode path."""
from .fast_path import FastDecoder, fast_path_applies
from .fusion import fuse_projections
from .generate import chat, generate
from .sampling import sample_next, top_p_filter

__all__ = ["FastDecoder", "chat", "fast_path_applies", "fuse_projections", "generate", "sample_next", "top_p_filter"]
