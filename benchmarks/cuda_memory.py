"""Predicted vs measured GPU memory of the full-size model: prefill at 1k, 4k, 16k, 32k, and decoding.

Builds Mistral-7B-Instruct-v0.2's exact shape on the GPU with random bf16 weights (values change
neither memory nor speed), then for each case resets torch.cuda's peak counter, runs the forward
pass and compares torch.cuda.max_memory_allocated() with mistral_edu.memory's prediction
(weights + KV cache + activation peak). Needs only torch; runs in about a minute on an H100.

    python benchmarks/cuda_memory.py            # on a CUDA machine
    python benchmarks/cuda_memory.py --smoke    # anywhere: the tiny shape on the CPU, peaks from the profiler

A GPU run saves its table as benchmarks/results/cuda_memory.json (results.py), which the README quotes.
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    import sentencepiece  # noqa: F401
except ImportError:
    # mistral_edu imports sentencepiece for its tokenizer. This script never tokenizes, so on a bare
    # torch install (a GPU machine with nothing else) an empty stand-in lets the package import.
    sys.modules["sentencepiece"] = types.ModuleType("sentencepiece")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mistral_edu as me  # noqa: E402
from mistral_edu import memory  # noqa: E402
from results import save  # noqa: E402
from mistral_edu.model import random_init_  # noqa: E402

GB = 1e9
CASES = [  # (label, context, attention, logits)
    ("prefill", 1024, "sdpa", "last"), ("prefill", 4096, "sdpa", "last"),
    ("prefill", 16384, "sdpa", "last"), ("prefill", 32768, "sdpa", "last"),
    ("prefill, all logits", 4096, "sdpa", "all"),
    ("prefill, explicit attention", 1024, "explicit", "last"),
    ("prefill, explicit attention", 4096, "explicit", "last"),
]
DECODE_CONTEXT, DECODE_STEPS = 4096, 16


class CudaPeak:
    """torch.cuda's own counters: the peak of allocated bytes between reset() and peak()."""

    def __init__(self, device):
        self.device = device

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)


class ProfilerPeak:
    """The same on the CPU, from the profiler's allocation events (for --smoke)."""

    def __init__(self, device):
        self.device = device
        self.base = 0
        self.prof = None

    def reset(self) -> None:
        from torch.profiler import ProfilerActivity, profile
        if self.prof is not None:
            self.prof.__exit__(None, None, None)
        self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self.prof.__enter__()

    def allocated(self) -> int:
        return self.base

    def peak(self) -> int:
        self.prof.__exit__(None, None, None)
        events = sorted((e for e in self.prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
        self.prof = None
        live = peak = 0
        for e in events:
            live += e.nbytes()
            peak = max(peak, live)
        return self.base + peak


def build_model(cfg: me.ModelConfig, device, dtype) -> me.Transformer:
    """The model's exact tensors, allocated on the device and filled there (no host copy)."""
    with torch.device("meta"):
        model = me.Transformer(cfg).to(dtype)
    return random_init_(model.to_empty(device=device).requires_grad_(False).eval())


def run_case(model, meter, context: int, attention: str, logits: str, dtype) -> tuple[int, float]:
    """(peak bytes, seconds) of one prefill of `context` tokens into a fresh KV cache."""
    cfg = model.cfg
    hooks = [(lambda n: n.endswith("hook_pattern"), lambda t, h: None)] if attention == "explicit" else []
    meter.reset()
    tokens = torch.randint(3, cfg.vocab_size, (1, context), device=meter.device)
    cache = me.KVCache(cfg, 1, context, device=meter.device, dtype=dtype)
    start = time.perf_counter()
    with torch.no_grad(), model.hooks(hooks):
        out = model(tokens, cache=cache, last_only=logits == "last")
    peak = meter.peak()
    del out, cache, tokens
    return peak, time.perf_counter() - start


def run_decode(model, meter, context: int, steps: int, dtype) -> tuple[int, float]:
    """(peak bytes, seconds per token) of decoding `steps` tokens on a cache filled to `context - steps`."""
    cfg = model.cfg
    meter.reset()
    cache = me.KVCache(cfg, 1, context, device=meter.device, dtype=dtype)
    cache.pos = context - steps  # a full cache without the prefill: memory does not depend on the values
    token = torch.tensor([[5]], device=meter.device)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            model(token, cache=cache)
    peak = meter.peak()
    return peak, (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny shape on the CPU (checks the script itself)")
    args = parser.parse_args()
    dtype = torch.bfloat16
    if args.smoke:
        cfg, device, meter_cls = me.ModelConfig.tiny(), torch.device("cpu"), ProfilerPeak
        cases = [(label, max(64, context // 64), attention, logits) for label, context, attention, logits in CASES]
        decode_context, steps = 256, 4
    else:
        if not torch.cuda.is_available():
            print("no CUDA device visible to torch " + torch.__version__ + "; run with --smoke on a CPU", file=sys.stderr)
            return 2
        cfg, device, meter_cls = me.ModelConfig.mistral_7b_instruct_v02(), torch.device("cuda"), CudaPeak
        cases, decode_context, steps = CASES, DECODE_CONTEXT, DECODE_STEPS
    meter = meter_cls(device)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"model dim {cfg.dim} x {cfg.n_layers} layers, bf16, batch 1", flush=True)

    start = time.perf_counter()
    model = build_model(cfg, device, dtype)
    predicted_weights = memory.weight_bytes(cfg, "bf16")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        measured_weights = meter.allocated()
    else:
        measured_weights = sum(p.numel() * p.element_size() for p in model.parameters())
    meter.base = measured_weights
    print(f"weights: predicted {predicted_weights:,} B, allocated {measured_weights:,} B "
          f"({time.perf_counter() - start:.1f} s to build)", flush=True)
    run_case(model, meter, 8, "sdpa", "last", dtype)  # warm-up: cuBLAS workspaces and kernels load once
    after_warmup = meter.allocated()
    persistent = after_warmup - measured_weights
    print(f"allocated after a warm-up forward: {after_warmup:,} B ({persistent / 2**20:.1f} MiB besides the "
          "weights: cuBLAS workspaces, kept for the whole run and not in the prediction)", flush=True)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        context_bytes = total - free - torch.cuda.memory_reserved(device)
        print(f"outside PyTorch's allocator (CUDA context, libraries): {context_bytes / 2**20:.0f} MiB measured, "
              f"{memory.CUDA_CONTEXT_BYTES / 2**20:.0f} MiB stated in mistral_edu.memory", flush=True)

    header = (f"{'case':<30} {'context':>7} {'predicted':>11} {'measured':>11} {'ratio':>6} "
              f"{'pred. above w.':>14} {'meas. above w.':>14} {'ratio':>6} {'seconds':>8}")
    print("\n" + header + "\n" + "-" * len(header), flush=True)

    rows = []

    def row(label, context, predicted, measured, seconds):
        rows.append({"case": label, "context": context, "predicted_bytes": predicted, "measured_bytes": measured,
                     "seconds": seconds})
        above_p, above_m = predicted - predicted_weights, measured - after_warmup
        print(f"{label:<30} {context:>7,} {predicted / GB:9.3f}GB {measured / GB:9.3f}GB {measured / predicted:6.3f} "
              f"{above_p / GB:12.3f}GB {above_m / GB:12.3f}GB {above_m / max(above_p, 1):6.3f} {seconds:8.3f}",
              flush=True)

    for label, context, attention, logits in cases:
        predicted = (predicted_weights + memory.kv_cache_bytes(cfg, context, 1, dtype)
                     + memory.prefill_activation_bytes(cfg, context, 1, dtype, attention, logits))
        try:
            measured, seconds = run_case(model, meter, context, attention, logits, dtype)
        except torch.OutOfMemoryError:
            print(f"{label:<30} {context:>7,} {predicted / GB:9.3f}GB   out of memory", flush=True)
            continue
        row(label, context, predicted, measured, seconds)
    predicted = (predicted_weights + memory.kv_cache_bytes(cfg, decode_context, 1, dtype)
                 + memory.prefill_activation_bytes(cfg, 1, 1, dtype, "sdpa", "last"))
    measured, seconds = run_decode(model, meter, decode_context, steps, dtype)
    row(f"decode ({steps} tokens, s/token)", decode_context, predicted, measured, seconds)
    print("\npredicted = weights + KV cache + activation peak (mistral_edu.memory); measured = "
          "max_memory_allocated. 'above w.' leaves out the weights (measured: also the warm-up's workspaces).")
    if device.type == "cuda":
        worst = max(abs(r["measured_bytes"] / r["predicted_bytes"] - 1) for r in rows)
        figures = {"rows": rows, "max_difference_percent": 100 * worst}
        print("saved", save("cuda_memory", "benchmarks/cuda_memory.py", torch.cuda.get_device_name(device), figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
