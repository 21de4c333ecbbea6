"""Generation: sampling, generate and chat through the KV cache, the fast decode path, and measuring its speed."""
from .fast_path import PREFILL_CHUNK, FastDecoder, fast_path_applies
from .fusion import fuse_projections
from .generate import chat, generate, greedy_continuations
from .sampling import sample_next, top_p_filter
from .speed import (best_seconds, copy_bandwidth, fast_step, fast_step_seconds, interleaved_seconds, matmul_flop_rate,
                    model_bytes_read_per_step, plain_step, plain_step_seconds, relative_spread, split_half_spread)

__all__ = ["FastDecoder", "PREFILL_CHUNK", "best_seconds", "chat", "copy_bandwidth", "fast_path_applies", "fast_step_seconds", "fuse_projections", "generate", "greedy_continuations",
           "fast_step", "interleaved_seconds", "matmul_flop_rate", "model_bytes_read_per_step", "plain_step",
           "plain_step_seconds", "relative_spread", "sample_next", "split_half_spread",
           "top_p_filter"]
