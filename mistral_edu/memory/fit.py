"""The fit check before loading: the dtype a device computes in, and free memory against each strategy's needs.

load_model() calls choose_strategy() before it allocates anything, so a model that cannot fit is
refused with the arithmetic and the options, instead of failing halfway with an out-of-memory error.
"""
from __future__ import annotations

import math
import os

import torch

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES, dtype_name
from ..names import is_block_matrix, layer_of
from .activations import PREFILL_CHUNK, prefill_activation_bytes
from .formats import int8_matrix_bytes
from .kv_cache import kv_cache_bytes
from .parameters import parameter_count, tensor_shapes
from .units import GB

# Below this many parameters a model computes in float32: exact reference maths costs little.
SMALL_MODEL_PARAMETERS = 1_000_000_000
# Native bf16 matmuls (tensor cores) start with Ampere. Older GPUs emulate bf16, several times slower.
BF16_MIN_CAPABILITY = (8, 0)
# The fit check plans for a prompt of this many tokens: KV cache and activation peak included.
PLAN_CONTEXT = 4096
STRATEGIES = ("full", "int8", "stream")


def compute_dtype(cfg: ModelConfig, capability: tuple[int, int] | None) -> tuple[torch.dtype, str]:
    """Small models compute in float32; the 7B in bf16 where it runs natively, else in fp16 on a GPU.

    capability: the CUDA GPU's compute capability, None for a CPU (or Apple's GPU). load_model asks
    it of the device (checkpoints.default_dtype); the named machines (memory.machines) state it.
    """
    if parameter_count(cfg) < SMALL_MODEL_PARAMETERS:
        return torch.float32, "float32: a small model, so exact reference maths costs little"
    if capability is not None and tuple(capability) < BF16_MIN_CAPABILITY:
        major, minor = capability
        return torch.float16, (f"float16: this GPU (compute capability {major}.{minor}) has no native "
                               "bf16, which starts at 8.0; fp16 takes the same memory at less range")
    return torch.bfloat16, "bfloat16: the dtype the weights are stored in"


def free_memory(device) -> tuple[int, str]:
    """(bytes free, where the number comes from) on a device, before anything is allocated."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"torch.cuda.mem_get_info({device})"
    if device.type in ("cpu", "mps"):  # Apple's GPU shares the machine's RAM
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
        except OSError:
            pass
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages (sysconf)"
    raise ValueError(f"cannot tell the free memory of device {device}; pass strategy='full', 'int8' or 'stream'")


def strategy_weight_bytes(cfg: ModelConfig, strategy: str, dtype="bf16") -> int:
    """Weight bytes a strategy holds on the device at its peak, computing in `dtype`."""
    e = DTYPE_BYTES[dtype_name(dtype)]
    shapes = tensor_shapes(cfg)
    if strategy == "full":
        return e * sum(math.prod(s) for s in shapes.values())
    if strategy == "int8":
        return sum(int8_matrix_bytes(s) if is_block_matrix(n) else e * math.prod(s) for n, s in shapes.items())
    if strategy == "stream":
        units: dict[str, int] = {}
        for name, shape in shapes.items():
            unit = f"layers.{layer_of(name)}" if layer_of(name) is not None else name
            units[unit] = units.get(unit, 0) + e * math.prod(shape)
        return max(units.values())
    raise ValueError(f"unknown strategy {strategy!r}; use 'auto' or one of {', '.join(STRATEGIES)}")


def strategy_path(cfg: ModelConfig, strategy: str, context: int) -> str:
    """The path generate reads a prompt by under a strategy, with no hook attached: a streamed model's weights
    are not resident, so it runs one pass (fast_path_applies); full and int8 take the fast path's chunks,
    unless a sliding window shorter than the prompt sends them to one pass as well."""
    window = cfg.sliding_window
    return "plain" if strategy == "stream" or (window is not None and window < context) else "fast"


def path_words(path: str) -> str:
    """How a path reads a prompt, for the fit check's messages."""
    return f"generate's fast path, {PREFILL_CHUNK:,} tokens at a time" if path == "fast" else "one pass"


def strategy_bytes(cfg: ModelConfig, strategy: str, dtype="bf16", context: int | None = None) -> dict[str, int]:
    """Weights, KV cache and activation peak of a strategy for a prompt of `context` tokens, read the way
    generate reads it under that strategy (strategy_path)."""
    context = min(context or PLAN_CONTEXT, cfg.max_seq_len)
    path = strategy_path(cfg, strategy, context)
    return {"weights": strategy_weight_bytes(cfg, strategy, dtype),
            "KV cache": kv_cache_bytes(cfg, context, 1, dtype),
            "activations": prefill_activation_bytes(cfg, context, 1, dtype, path=path)}


def strategy_reason(cfg: ModelConfig, strategy: str, dtype, free: int, context: int | None = None) -> str:
    """Why an automatic choice is `strategy`, in a clause: the bytes of full against the free memory."""
    context = min(context or PLAN_CONTEXT, cfg.max_seq_len)
    full = sum(strategy_bytes(cfg, "full", dtype, context).values())
    room = f"{free / GB:.2f} GB free for a {context}-token prompt"
    read = f"the prompt read by {path_words(strategy_path(cfg, strategy, context))}"
    if strategy == "full":  # the free memory is left out: it changes from run to run, the fit does not
        return f"every weight fits: {full / GB:.2f} GB for a {context}-token prompt, {read}"
    return (f"every weight would need {full / GB:.2f} GB, more than the {room}; '{strategy}' needs "
            f"{sum(strategy_bytes(cfg, strategy, dtype, context).values()) / GB:.2f} GB, {read}")


def choose_strategy(cfg: ModelConfig, device, dtype, strategy: str = "auto", verbose: bool = True,
                    free: int | None = None, context: int | None = None) -> str:
    """Check a load against free memory before anything is allocated; "auto" picks the first that fits.

    context: the prompt length to plan for (KV cache and activation peak), PLAN_CONTEXT by default, read the
    way generate will read it (strategy_path: the fast path's chunks for full and int8, one pass streamed); a
    shorter one can let a 16 GB GPU hold every weight in fp16 where 4096 tokens need int8. Refuses (MemoryError) with the arithmetic and the options when the requested strategy does not
    fit, or when none does.
    """
    if strategy != "auto" and strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use 'auto' or one of {', '.join(STRATEGIES)}")
    device = torch.device(device)
    if free is None:
        free, source = free_memory(device)
    else:
        source = "as given"
    context = min(context or PLAN_CONTEXT, cfg.max_seq_len)
    needs = {s: strategy_bytes(cfg, s, dtype, context) for s in STRATEGIES}
    totals = {s: sum(parts.values()) for s, parts in needs.items()}

    def explain(s: str) -> str:
        parts = " + ".join(f"{k} {v / GB:.2f}" for k, v in needs[s].items())
        return f"{s}: {parts} = {totals[s] / GB:.2f} GB ({path_words(strategy_path(cfg, s, context))})"

    table = "\n".join("  " + explain(s) for s in STRATEGIES)
    where = f"{free / GB:.2f} GB free on {device} ({source}); planned for a {context}-token prompt"
    if strategy == "auto":
        for s in STRATEGIES:
            if totals[s] <= free:
                if verbose and s != "full":
                    print(f"mistral_edu: strategy '{s}': {explain('full')} does not fit in {where}; "
                          f"{explain(s)} does")
                return s
        raise MemoryError(f"the model cannot fit on {device} in any way: {where}, and even streaming needs "
                          f"{totals['stream'] / GB:.2f} GB:\n{table}\nUse a device with more memory, or a "
                          "smaller model (ModelConfig.tiny() / the embedded default).")
    if totals[strategy] > free:
        fitting = [s for s in STRATEGIES if totals[s] <= free]
        options = (f"strategies that fit: {', '.join(fitting)} (strategy='auto' picks the first)" if fitting
                   else "nothing fits on this device; use one with more memory")
        raise MemoryError(f"strategy '{strategy}' needs {totals[strategy] / GB:.2f} GB but {where}:\n{table}\n"
                          f"{options}. Nothing was loaded.")
    return strategy
