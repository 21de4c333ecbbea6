"""Measuring decode speed on the machine at hand: seconds per step, copy bandwidth, matmul FLOP/s.

Lesson 13 compares what a decode step costs with what it must cost: the bytes it reads divided by the
memory bandwidth. These functions measure both sides on whatever device the model is on, after a warm-up
(the first run pays for allocation and kernel selection). best_seconds keeps the fastest run; for comparing
variants, interleaved_seconds runs them in turn and keeps every run, so that a burst of load on a shared
machine hits them all alike, and relative_spread says how much the runs disagree. On a shared machine
the runs disagree a lot (other programs only ever add time), while the fastest run is reproducible:
split_half_spread says whether it is, comparing the fastest run of the first half of the runs with the
fastest of the second. On a GPU the clock is read only after the device has finished
(torch.cuda.synchronize): kernels run asynchronously, and a clock read after a launch measures the
launch, not the work. On a CPU shared with other busy programs, clock="cpu" reads the thread's CPU
clock instead of the wall clock: it stops while the system runs another program on the core, so a
step of tens of ms that is interrupted still counts only its own time (the wall clock adds the wait).
It needs PyTorch's work on the calling thread: one thread (torch.set_num_threads(1)).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..model import KVCache
from .fast_path import FastDecoder
from .fusion import fuse_projections

__all__ = ["copy_bandwidth", "fast_step", "fast_step_seconds", "interleaved_seconds", "matmul_flop_rate", "best_seconds",
           "model_bytes_read_per_step", "plain_step", "plain_step_seconds", "relative_spread",
           "split_half_spread"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], repeats: int = 5, device=None, warmup: int = 1,
                 clock: str = "wall") -> float:
    """The fewest seconds fn() took in `repeats` runs, after `warmup` untimed ones (clock: see interleaved_seconds)."""
    if repeats <= 0:
        raise ValueError(f"repeats must be positive, got {repeats}")
    return min(interleaved_seconds({"fn": fn}, repeats, device, warmup, clock)["fn"])


def _clock(clock: str, device: torch.device) -> Callable[[], float]:
    """time.perf_counter for clock="wall"; for clock="cpu" the calling thread's CPU clock (a CPU, one thread only)."""
    if clock == "wall":
        return time.perf_counter
    if clock != "cpu":
        raise ValueError(f'clock must be "wall" or "cpu", got {clock!r}')
    if device.type != "cpu" or torch.get_num_threads() != 1:
        raise ValueError('clock="cpu" times work on the calling thread only: it needs the CPU and '
                         f"torch.set_num_threads(1) (here: {device.type}, {torch.get_num_threads()} threads)")
    return time.thread_time


def _timed(fn: Callable[[], object], device: torch.device, now: Callable[[], float] = time.perf_counter) -> float:
    _sync(device)
    start = now()
    fn()
    _sync(device)
    return now() - start


def interleaved_seconds(fns: dict[str, Callable[[], object]], repeats: int = 5, device=None,
                        warmup: int = 1, clock: str = "wall") -> dict[str, list[float]]:
    """Every timed run of each fn, the fns taking turns (a, b, a, b, ...) after `warmup` untimed runs each.

    Turns, not one fn's runs then the next's: load from other programs comes and goes, and taking turns
    spreads it over every variant instead of charging it to whichever ran during it. clock="wall" (the
    default) reads time.perf_counter; clock="cpu" the thread's CPU clock (time.thread_time), which does
    not run while the system has paused this thread for another program: on a CPU, with one thread only.
    """
    if repeats <= 0:
        raise ValueError(f"repeats must be positive, got {repeats}")
    device = torch.device(device or "cpu")
    now = _clock(clock, device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device, now))
    return times


def relative_spread(times: list[float]) -> float:
    """How much repeated runs disagree: the interquartile range over the median (0.2 = 20%)."""
    q1, median, q3 = torch.tensor(times, dtype=torch.float64).quantile(torch.tensor([0.25, 0.5, 0.75],
                                                                                      dtype=torch.float64)).tolist()
    return (q3 - q1) / median


def split_half_spread(times: list[float]) -> float:
    """How far the fastest run of the first half of `times` (in the order run) is from the fastest of the
    second half, over the smaller of the two (0.1 = 10%).

    Load from other programs comes in bursts and only adds time: if both halves found a quiet moment,
    their fastest runs agree and the overall fastest run is the step's own cost; if they disagree, one
    half never ran unloaded and the minimum is not to be trusted either.
    """
    if len(times) < 2:
        raise ValueError(f"split_half_spread needs at least 2 runs to split, got {len(times)}")
    half = len(times) // 2
    first, second = min(times[:half]), min(times[half:])
    return abs(first - second) / min(first, second)


def copy_bandwidth(device=None, megabytes: int = 256, repeats: int = 5, clock: str = "wall") -> float:
    """Bytes per second that copying a large buffer moves: each byte is read once and written once.

    The buffer must be much larger than the processor's caches, or the copy measures the cache. This is
    the rate a decode step can hope to stream weights at (STREAM's "copy" counts bytes the same way).
    """
    device = torch.device(device or "cpu")
    n = megabytes * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)    # (n,)
    dst = torch.empty_like(src)                                 # (n,)
    seconds = best_seconds(lambda: dst.copy_(src), repeats, device, clock=clock)
    return 2 * src.numel() * src.element_size() / seconds


def matmul_flop_rate(device=None, size: int = 1024, dtype=torch.float32, repeats: int = 5,
                     clock: str = "wall") -> float:
    """FLOP/s of one square (size x size) matmul: near the processor's peak, since it reuses each byte `size` times."""
    device = torch.device(device or "cpu")
    a = torch.randn(size, size, device=device, dtype=dtype)    # (size, size)
    b = torch.randn(size, size, device=device, dtype=dtype)    # (size, size)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats, device, clock=clock)


def model_bytes_read_per_step(model) -> int:
    """Bytes of the tensors a batch-1 decode step reads from this model, as it is held in memory.

    Every parameter and buffer (int8 weights and their scales included) except the embedding table, of
    which the step reads one row. Read from the tensors themselves, so it is right for any dtype or
    strategy; memory.decode_bytes_per_step predicts the same from a config.
    """
    table = model.tok_embeddings.weight
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if t is not table and not t.is_meta}
    return sum(t.nbytes for t in tensors.values()) + table.shape[1] * table.dtype.itemsize


def _filled_cache(model, batch: int, context: int, extra: int) -> KVCache:
    """A KV cache that already holds `context` positions (random keys and values: the time does not depend
    on them), with room for `extra` more."""
    cache = KVCache.for_model(model, batch=batch, max_seq_len=context + extra)
    if context:
        cache.k[:, :, :context].normal_()
        cache.v[:, :, :context].normal_()
        cache.advance(context)
    return cache


def plain_step(model, batch: int = 1, context: int = 16, steps: int = 8) -> Callable[[], object]:
    """A function that runs one decode step on the readable path (model.forward through a KVCache).

    `batch` sequences take one new token each, after `context` tokens already cached; it can be called
    `steps` times (each call adds a position to the cache).
    """
    cache = _filled_cache(model, batch, context, steps)
    token = torch.full((batch, 1), 1, dtype=torch.long, device=model.device)   # (batch, 1)

    @torch.no_grad()
    def step():
        return model(token, cache=cache, check_ids=False)
    return step


def fast_step(model, context: int = 16, steps: int = 8, use_graph: bool | None = None,
              use_compile: bool | None = None) -> Callable[[], object]:
    """A function that runs one FastDecoder.decode step (batch 1) after a `context`-token prompt.

    The model's projections are fused first (fuse_projections, in place, no copy). use_graph and
    use_compile are FastDecoder's switches: None takes its defaults (both on CUDA, neither on a CPU).
    Its first call captures the CUDA graph (and compiles): time it after a warm-up.
    """
    fuse_projections(model)
    decoder = FastDecoder(model, context + steps + 1, use_graph=use_graph, use_compile=use_compile)
    with torch.no_grad():
        decoder.prefill(torch.full((context,), 1, dtype=torch.long))

    @torch.no_grad()
    def step():
        return decoder.decode(1)
    return step


def plain_step_seconds(model, batch: int = 1, context: int = 16, repeats: int = 5) -> float:
    """Seconds of the fastest of `repeats` plain_step runs, after one warm-up."""
    return best_seconds(plain_step(model, batch, context, repeats + 1), repeats, model.device)


def fast_step_seconds(model, context: int = 16, repeats: int = 5, use_graph: bool | None = None,
                      use_compile: bool | None = None) -> float:
    """Seconds of the fastest of `repeats` fast_step runs, after the warm-up that captures the graph."""
    step = fast_step(model, context, repeats + 1, use_graph, use_compile)
    return best_seconds(step, repeats, model.device)
