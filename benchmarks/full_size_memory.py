"""Peak RAM of loading and running the full-size model on a CPU, measured in fresh processes.

Writes a synthetic checkpoint with the exact names and shapes of Mistral-7B-Instruct-v0.2 (random
bf16 values, 14.48 GB) in Mistral's layout and in Hugging Face's sharded layout to a temporary
folder, one tensor in memory at a time, then measures in a new process each:

  load_model, both layouts          aim: peak RSS <= 1.07 x 14.48 GB
  a 32-token forward, streamed       aim: peak RSS <= 2.5 GB
  an int8 load (+ the same forward)  aim: peak RSS <= 8.5 GB

and compares the logits of each with the fully loaded model's. Needs about 30 GB of free disk and
15.5 GB of free RAM; deletes its files at the end. Run: `make memory-bench`
(or `python benchmarks/full_size_memory.py --dir /big/disk`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import mistral_edu as me
from mistral_edu import ModelConfig
from mistral_edu.checkpoints import LazyTensor, write_consolidated, write_hf
from mistral_edu.int8 import compare_logits
from mistral_edu.memory import free_memory, strategy_bytes, tensor_shapes, weight_bytes
from mistral_edu.progress import progress

GB = 1e9
TOKENS = 32


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# ----------------------------------------------------------------------------- writing the checkpoint

# Drawing 7.2 billion normal numbers twice takes minutes on two cores; instead each tensor is a window
# of one pool of random bf16 values, repeated. The pool's length is prime, so every row of every
# matrix starts at a different place in it: the values are random-looking, and memory does not care.
POOL = (torch.randn(16_777_259, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)


def synthetic_tensor(name: str, shape: tuple[int, ...], index: int) -> torch.Tensor:
    """Random-looking bf16 with std 0.02 (norm weights: ones), reproducible per tensor from its index."""
    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)
    n = math.prod(shape)
    start = (7919 * index) % len(POOL)
    repeats = math.ceil((start + n) / len(POOL))
    return POOL.repeat(repeats)[start:start + n].reshape(shape)


def write_checkpoints(root: Path, layouts: set[str]) -> tuple[Path, Path]:
    """Mistral layout in root/mistral, HF layout (3 shards + index) in root/hf; never the whole model in RAM."""
    cfg = ModelConfig.mistral_7b_instruct_v02()
    lazy = {name: LazyTensor(torch.bfloat16, shape, lambda n=name, s=shape, i=i: synthetic_tensor(n, s, i))
            for i, (name, shape) in enumerate(tensor_shapes(cfg).items())}
    mistral, hf = root / "mistral", root / "hf"
    if "mistral" in layouts:
        write_consolidated(lazy, cfg, mistral)
    if "hf" in layouts:
        write_hf(lazy, cfg, hf, shards=3)
    return mistral, hf


# ----------------------------------------------------------------------------- one measurement (child)

def child(strategy: str, folder: str, logits_out: str) -> None:
    """Load with a strategy, run a 32-token forward, print a JSON line of what was measured."""
    start = time.perf_counter()
    model = me.load_model(folder, device="cpu", strategy=strategy)
    load_s = time.perf_counter() - start
    after_load = peak_rss()
    tokens = torch.randint(3, 32000, (1, TOKENS), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        logits = model(tokens)
    forward_s = time.perf_counter() - start
    torch.save(logits, logits_out)
    print(json.dumps({"load_s": load_s, "forward_s": forward_s, "rss_after_load": after_load,
                      "rss_peak": peak_rss()}))


def wait_for_memory(strategy: str, patience_s: float) -> None:
    """The machine's RAM is shared: wait (up to patience_s) until load_model's fit check would pass."""
    need = sum(strategy_bytes(ModelConfig.mistral_7b_instruct_v02(), strategy, "bf16").values())
    deadline = time.monotonic() + patience_s
    while free_memory("cpu")[0] < need and time.monotonic() < deadline:
        print(f"waiting for {need / GB:.1f} GB of free RAM for '{strategy}' "
              f"({free_memory('cpu')[0] / GB:.1f} GB free now)", flush=True)
        time.sleep(30)


def measure(strategy: str, folder: Path, logits_out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", strategy, str(folder), str(logits_out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        start = max((i for i, line in enumerate(lines) if "Error" in line.split(":")[0]), default=len(lines) - 1)
        return {"error": " | ".join(lines[start:start + 6]) or f"exit code {proc.returncode}"}
    print(proc.stdout.strip().splitlines()[0], flush=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write the 29 GB of checkpoints (default: the temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the checkpoints on disk")
    parser.add_argument("--wait", type=float, default=1800, help="seconds to wait for free RAM before each run")
    parser.add_argument("--runs", default="full:mistral,full:hf,stream:mistral,stream:hf,int8:mistral",
                        help="which strategy:layout runs, in order (the first is the logits' reference)")
    args = parser.parse_args()

    weights = weight_bytes(ModelConfig.mistral_7b_instruct_v02(), "bf16")
    parent = Path(args.dir or tempfile.gettempdir())
    wanted = [tuple(run.split(":")) for run in args.runs.split(",")]
    layouts = {layout for _, layout in wanted}
    free = shutil.disk_usage(parent).free
    if free < 1.03 * len(layouts) * weights:
        sys.exit(f"{parent} has {free / GB:.1f} GB free; the checkpoints need {len(layouts) * weights / GB:.1f} GB. "
                 "Pass --dir on a larger disk.")
    root = Path(tempfile.mkdtemp(prefix="mistral_edu_full_size_", dir=parent))
    try:
        start = time.perf_counter()
        folders = dict(zip(("mistral", "hf"), write_checkpoints(root, layouts)))
        print(f"wrote {' and '.join(sorted(layouts))} ({len(layouts) * weights / GB:.2f} GB) to {root} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        names = {"full": "load_model (full)", "stream": f"{TOKENS}-token forward, streamed", "int8": "int8 load"}
        aims = {"full": 1.07 * weights, "stream": 2.5 * GB, "int8": 8.5 * GB}
        runs = [(names[strategy], strategy, folders[layout], aims[strategy]) for strategy, layout in wanted]
        rows = []
        with progress(len(runs), "measured runs (each a fresh process)", unit="run") as bar:
            for what, strategy, folder, aim in runs:
                out = root / f"logits_{strategy}_{folder.name}.pt"
                bar.set_postfix_str(f"{strategy}, {folder.name} layout")
                wait_for_memory(strategy, args.wait)
                result = measure(strategy, folder, out)
                rows.append((what, strategy, folder.name, aim, result, out))
                bar.update(1)
        first = root / f"logits_{wanted[0][0]}_{wanted[0][1]}.pt"
        reference = torch.load(first) if first.exists() else None
        print(f"\npeak RSS in fresh processes, {TOKENS}-token forward after each load; torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs; weights {weights / GB:.2f} GB (bf16)\n")
        print(f"{'what':<32} {'layout':<8} {'peak RSS load':>14} {'peak RSS +fwd':>14} {'aim':>9} "
              f"{'load s':>7} {'fwd s':>7}  logits vs {':'.join(wanted[0])}"
              + (f" (their std {float(reference.float().std()):.3f})" if reference is not None else ""))
        for what, strategy, layout, aim, result, out in rows:
            if "error" in result:
                print(f"{what:<32} {layout:<8} failed: {result['error']}")
                continue
            measured = result["rss_peak"] if strategy == "stream" else result["rss_after_load"]
            verdict = "ok" if measured <= aim else "OVER"
            note = ""
            if reference is not None and out.exists():
                cmp = compare_logits(reference, torch.load(out))
                note = f"max |diff| {cmp['max_abs_logit_diff']:.4f}, top-1 agree {cmp['top1_agreement']:.3f}"
            print(f"{what:<32} {layout:<8} {result['rss_after_load'] / GB:11.2f} GB {result['rss_peak'] / GB:11.2f} GB "
                  f"{aim / GB:6.2f} GB {result['load_s']:7.1f} {result['forward_s']:7.1f}  {verdict}; {note}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            print(f"removed {root}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
