"""The 7B on a 16 GB GPU, emulated on a larger one: fp16 and int8 under a 14.5 GiB cap, 2k prompt, 128 tokens.

A 16 GB card (a T4: compute capability 7.5, no native bf16) gives about 14.7 GiB to a process. Here
PyTorch's allocator is capped with torch.cuda.set_per_process_memory_fraction so that the allocator's
limit plus the CUDA context (which the allocator never sees) stays within 14.5 GiB. Each run is a fresh
process that loads the model, runs a 2,048-token prompt and generates 128 tokens greedily:

  bf16 full, uncapped   the reference for the generated tokens
  fp16 full, capped     every weight in fp16 (what compute capability < 8.0 gets)
  fp16 int8, capped     block matrices in int8, the rest in fp16

and records the load time, the host's peak RSS during the load (the loader reads one tensor at a time,
so it stays near one tensor above the baseline), the prefill time, decode tokens/s, the peak GPU memory
(allocated, reserved, and reserved + CUDA context), whether the residual stream stayed finite
(analysis.watch_nonfinite), how many generated tokens equal the reference's before the first
difference, and what load_model's automatic plan predicts for the capped memory.

Run on a machine with a CUDA GPU: `python benchmarks/gpu_16gb.py [weights folder]`. Without a folder
(and without $MISTRAL_EDU_WEIGHTS) it writes a synthetic checkpoint of the real shape to a temporary
folder (14.5 GB of disk, about 2 minutes) and deletes it at the end. Figures: benchmarks/results/gpu_16gb.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import save  # noqa: E402

import mistral_edu as me  # noqa: E402
from mistral_edu.analysis import watch_nonfinite  # noqa: E402
from mistral_edu.checkpoints import plan_load  # noqa: E402
from mistral_edu.memory import GiB  # noqa: E402

CAP_BYTES = int(14.5 * GiB)
PROMPT_TOKENS = 2048
NEW_TOKENS = 128
# name: (dtype, strategy, capped)
RUNS = {"bf16 full, uncapped (reference)": ("bf16", "full", False),
        "fp16 full, capped": ("fp16", "full", True),
        "fp16 int8, capped": ("fp16", "int8", True)}


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def cuda_context_bytes() -> int:
    """Device memory in use that PyTorch's allocator did not reserve: the CUDA context (and other processes)."""
    free, total = torch.cuda.mem_get_info()
    return total - free - torch.cuda.memory_reserved()


def cap_allocator() -> int:
    """Cap the allocator so that its limit plus the CUDA context is CAP_BYTES; returns the limit in bytes."""
    torch.ones(1, device="cuda")  # creates the context, so it can be measured
    limit = CAP_BYTES - cuda_context_bytes()
    torch.cuda.set_per_process_memory_fraction(limit / torch.cuda.mem_get_info()[1])
    return limit


def prompt_ids() -> list[int]:
    """BOS and 2,047 reproducible random ids from the ordinary vocabulary."""
    generator = torch.Generator().manual_seed(0)
    return [1] + torch.randint(3, 32000, (PROMPT_TOKENS - 1,), generator=generator).tolist()


def child(run: str, folder: str) -> dict:
    """One run in this fresh process: load, a watched prefill, then generation; a dict of what was measured."""
    dtype, strategy, capped = RUNS[run]
    limit = cap_allocator() if capped else None
    result = {"allocator_limit_gib": limit / GiB if limit else None, "cuda_context_gib": cuda_context_bytes() / GiB}
    if capped:
        plan = plan_load(me.ModelConfig.mistral_7b_instruct_v02(), torch.device("cuda"), dtype="fp16",
                         verbose=False, free=limit, context=PROMPT_TOKENS + NEW_TOKENS)
        result["auto_plan_for_this_cap"] = f"{plan.strategy}: {plan.strategy_why}"
    rss_before = peak_rss()
    start = time.perf_counter()
    model = me.load_model(folder, device="cuda", dtype=dtype, strategy=strategy, verbose=False)
    torch.cuda.synchronize()
    result["load_s"] = time.perf_counter() - start
    result["host_peak_rss_during_load_gb"] = peak_rss() / 1e9
    result["host_rss_added_by_load_gb"] = (peak_rss() - rss_before) / 1e9
    ids = prompt_ids()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), watch_nonfinite(model) as watch:
        model(torch.tensor([ids], device="cuda"), last_only=True)
    result["residual_stream"] = watch.report()
    result["finite"] = watch.first is None
    times: list[float] = []
    start = time.perf_counter()
    tokens = me.generate(model, ids, max_new_tokens=NEW_TOKENS, stop_at_eos=False,
                         stream=lambda token: times.append(time.perf_counter()))
    result["prefill_s"] = times[0] - start
    result["decode_tokens_per_s"] = (len(times) - 1) / (times[-1] - times[0])
    result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GiB
    result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GiB
    result["peak_reserved_plus_context_gib"] = result["peak_reserved_gib"] + result["cuda_context_gib"]
    result["tokens"] = tokens
    return result


def measure(run: str, folder: Path) -> dict:
    """child(run) in a fresh process (its own CUDA context and peaks); an out-of-memory error is a result."""
    proc = subprocess.run([sys.executable, __file__, "--child", run, str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"error": " | ".join(lines[-3:]) or f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def weights_folder(given: str | None, scratch: Path) -> Path:
    """The given checkpoint, else a synthetic one of the real shape written into scratch."""
    if given:
        return Path(given)
    from full_size_memory import write_checkpoints
    print(f"no weights given: writing a synthetic 14.5 GB checkpoint to {scratch}", flush=True)
    return write_checkpoints(scratch, {"mistral"})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="?", default=os.environ.get("MISTRAL_EDU_WEIGHTS"),
                        help="a Mistral-7B checkpoint folder (default: $MISTRAL_EDU_WEIGHTS, else a synthetic one)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(f"benchmarks/gpu_16gb.py measures a CUDA GPU, and this PyTorch (torch {torch.__version__}) sees "
                 "none. Run it on a machine with an NVIDIA GPU of 16 GB or more; the prediction for a 16 GB GPU "
                 "without one is `python -m mistral_edu info` or mistral_edu.memory.machines.")
    scratch = Path(tempfile.mkdtemp(prefix="mistral_edu_gpu_16gb_"))
    try:
        folder = weights_folder(args.weights, scratch)
        results = {}
        for run in RUNS:
            results[run] = measure(run, folder)
            print(run, json.dumps({k: v for k, v in results[run].items() if k != "tokens"}), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reference = results["bf16 full, uncapped (reference)"].get("tokens", [])
    for result in results.values():
        tokens = result.pop("tokens", None)
        if tokens is not None and reference:
            same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(tokens))
            result["tokens_equal_to_reference_before_first_difference"] = same
    synthetic = not args.weights
    figures = {"cap_gib": CAP_BYTES / GiB, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
               "weights": "synthetic (random, real shape)" if synthetic else str(args.weights), "runs": results}
    device = f"{torch.cuda.get_device_name(0)} (compute capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))})"
    print("saved", save("gpu_16gb", "benchmarks/gpu_16gb.py", device, figures))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
