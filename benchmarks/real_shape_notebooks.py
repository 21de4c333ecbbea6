"""Run every notebook, unchanged, against a full-size synthetic Mistral-7B-Instruct-v0.2 checkpoint.

Writes the exact v0.2 tensor names and shapes (random-looking bf16, 14.48 GB, Mistral's layout) to a
temporary folder one tensor at a time, then executes each notebook with MISTRAL_EDU_WEIGHTS pointing
there, in a fresh kernel, and prints its wall time and the kernel's peak resident memory. Executed
copies go to the temporary folder: the committed notebooks are never touched. This is the proof that
a learner with the real weights on a 24 GB CPU machine is not the first to run the notebooks at 7B.

    make real-shape-notebooks                       # all notebooks, then delete the checkpoint
    .venv/bin/python benchmarks/real_shape_notebooks.py --dir /big/disk --keep 06 08
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

from mistral_edu import ModelConfig
from mistral_edu.checkpoints import LazyTensor, write_consolidated
from mistral_edu.memory import tensor_shapes

ROOT = Path(__file__).resolve().parent.parent
GB = 1e9


def write_checkpoint(folder: Path) -> None:
    """params.json + consolidated.safetensors with v0.2's names and shapes, one tensor in memory at a time."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from full_size_memory import synthetic_tensor  # the memory benchmark's fast random-looking bf16, beside us

    cfg = ModelConfig.mistral_7b_instruct_v02()
    lazy = {name: LazyTensor(torch.bfloat16, shape, lambda n=name, s=shape, i=i: synthetic_tensor(n, s, i))
            for i, (name, shape) in enumerate(tensor_shapes(cfg).items())}
    write_consolidated(lazy, cfg, folder)


def run_one(notebook: Path, out_dir: Path, weights: Path, timeout: int) -> tuple[float, int, str]:
    """Execute one notebook in a fresh kernel: (seconds, peak RSS of the kernel in bytes, error or '')."""
    env = dict(os.environ, MISTRAL_EDU_WEIGHTS=str(weights))
    # A middle process owns the kernel's rusage: its RUSAGE_CHILDREN peak is this notebook's alone.
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); "
             "print(r.returncode); print(r.stderr[-2000:])")
    # --allow-errors runs every cell even after a failure, so one expensive run reports every failing cell.
    command = [sys.executable, "-c", probe, str(ROOT / ".venv" / "bin" / "jupyter"), "nbconvert", "--to", "notebook",
               "--execute", "--allow-errors", f"--ExecutePreprocessor.timeout={timeout}",
               "--output-dir", str(out_dir), str(notebook)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=notebook.parent)
    seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    if len(lines) < 2:  # the probe itself failed (e.g. no jupyter in .venv): say why instead of an IndexError
        return seconds, 0, f"could not run {command[3]}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
    peak, code, err = int(lines[0]), int(lines[1]), "\n".join(lines[2:]).strip()
    if code != 0:
        return seconds, peak, err.splitlines()[-1] if err else f"exit {code}"
    return seconds, peak, cell_errors(out_dir / notebook.name)


def cell_errors(executed: Path) -> str:
    """'cell N: Error: message' for every cell of an executed notebook that raised, or ''."""
    cells = json.loads(executed.read_text())["cells"]
    errors = [f"cell {i}: {out['ename']}: {out['evalue'][:120]}"
              for i, cell in enumerate(cells) for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    return "; ".join(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose names start so (e.g. 06 10)")
    parser.add_argument("--dir", help="folder for the 14.5 GB checkpoint and the executed copies (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint (reused by the next run with --dir)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mistral-edu-real-shape-"))
    weights, out_dir = root / "weights", root / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                       if not args.prefixes or p.name.startswith(tuple(args.prefixes)))
    try:
        if not (weights / "consolidated.safetensors").is_file():
            start = time.perf_counter()
            write_checkpoint(weights)
            print(f"wrote {weights} ({(weights / 'consolidated.safetensors').stat().st_size / GB:.2f} GB) "
                  f"in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"{'notebook':<34}{'time':>9}{'peak RSS':>11}  result", flush=True)
        failures = 0
        for notebook in notebooks:
            seconds, peak, error = run_one(notebook, out_dir, weights, args.timeout)
            failures += bool(error)
            print(f"{notebook.stem:<34}{seconds:8.0f}s{peak / GB:9.2f} GB  {error or 'ok'}", flush=True)
        print(f"executed copies: {out_dir}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
