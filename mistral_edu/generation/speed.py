"""Measuring decode speed on the machine at hand: seconds per step, copy bandwidth, matmul FLOP/s.

Lesson 13 compares what a decode step costs with what it must cost: the bytes it reads divided by the
memory bandwidth. These functions measure both sides on whatever device the model is on. Every number
is the fastest of a few runs after a warm-up (the first run pays for allocation and kernel selection):
other programs on the machine only ever add time, so the fastest run is the closest to what the work
itself costs. On a GPU the clock is read only after the device has finished (torch.cuda.synchronize):
kernels run asynchronously, and a clock read after a launch measures the launch, not the work.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..model import KVCache
from .fast_path import FastDecoder
from .fusion import fuse_projections

__all__ = ["copy_bandwidth", "fast_step_seconds", "matmul_flop_rate", "best_seconds", "model_bytes_read_per_step",
           "plain_step_seconds"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], repeats: int = 5, device=None, warmup: int = 1) -> float:
    """The fewest wall-clock seconds fn() took in `repeats` runs, after `warmup` untimed ones."""
    if repeats <= 0:
        raise ValueError(f"repeats must be positive, got {repeats}")
    device = torch.device(device or "cpu")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def copy_bandwidth(device=None, megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second that copying a large buffer moves: each byte is read once and written once.

    The buffer must be much larger than the processor's caches, or the copy measures the cache. This is
    the rate a decode step can hope to stream weights at (STREAM's "copy" counts bytes the same way).
    """
    device = torch.device(device or "cpu")
    n = megabytes * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)    # (n,)
    dst = torch.empty_like(src)                                 # (n,)
    seconds = best_seconds(lambda: dst.copy_(src), repeats, device)
    return 2 * src.numel() * src.element_size() / seconds


def matmul_flop_rate(device=None, size: int = 1024, dtype=torch.float32, repeats: int = 5) -> float:
    """FLOP/s of one square (size x size) matmul: near the processor's peak, since it reuses each byte `size` times."""
    device = torch.device(device or "cpu")
    a = torch.randn(size, size, device=device, dtype=dtype)    # (size, size)
    b = torch.randn(size, size, device=device, dtype=dtype)    # (size, size)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats, device)


def model_bytes_read_per_step(model) -> int:
    """Bytes of the tensors a batch-1 decode step reads from this model, as it is held in memory.

    Every parameter and buffer (int8 weights and their scales included) except the embedding table, of
    which the step reads one row. Read from the tensors themselves, so it is right for any dtype or
    strategy; memory.decode_bytes_per_step predicts the same from a config.
    """
    table = model.tok_embeddings.weight
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if t is not table and not t.is_meta}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    return total + table.shape[1] * table.element_size()


def _filled_cache(model, batch: int, context: int, extra: int) -> KVCache:
    """A KV cache that already holds `context` positions (random keys and values: the time does not depend
    on them), with room for `extra` more."""
    cache = KVCache.for_model(model, batch=batch, max_seq_len=context + extra)
    if context:
        cache.k[:, :, :context].normal_()
        cache.v[:, :, :context].normal_()
        cache.advance(context)
    return cache


@torch.no_grad()
def plain_step_seconds(model, batch: int = 1, context: int = 16, repeats: int = 5) -> float:
    """Seconds of one decode step on the readable path (model.forward through a KVCache).

    `batch` sequences take one new token each, after `context` tokens already cached.
    """
    cache = _filled_cache(model, batch, context, repeats + 1)
    step = torch.full((batch, 1), 1, dtype=torch.long, device=model.device)   # (batch, 1)
    return best_seconds(lambda: model(step, cache=cache, check_ids=False), repeats, model.device)


@torch.no_grad()
def fast_step_seconds(model, context: int = 16, repeats: int = 5, use_graph: bool | None = None,
                      use_compile: bool | None = None) -> float:
    """Seconds of one FastDecoder.decode step (batch 1) after a `context`-token prompt.

    The model's projections are fused first (fuse_projections, in place, no copy). use_graph and
    use_compile are FastDecoder's switches: None takes its defaults (both on CUDA, neither on a CPU).
    The warm-up step captures the CUDA graph (and compiles), so it is not timed.
    """
    fuse_projections(model)
    decoder = FastDecoder(model, context + repeats + 2, use_graph=use_graph, use_compile=use_compile)
    decoder.prefill(torch.full((context,), 1, dtype=torch.long))
    return best_seconds(lambda: decoder.decode(1), repeats, model.device)
