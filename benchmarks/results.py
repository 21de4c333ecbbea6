"""Benchmark results as JSON files under benchmarks/results/: the one source of every quoted number.

Each benchmark script ends with `save(...)`: one file per script (and per variant, e.g. a device),
holding what was measured and where. The README's benchmark section and the figures the notebooks
quote are generated from these files (benchmarks/render_results.py), never retyped.

A file looks like:

    {"script": "benchmarks/cpu_speed.py", "name": "cpu_speed", "remeasured": true,
     "commit": "8a14538...", "date": "2026-11-27T16:40:00+00:00", "device": "AMD EPYC ...; 1 thread",
     "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.24.0"},
     "figures": {...whatever the script measured, plain JSON numbers and strings...},
     "source": null}

"remeasured": false marks figures copied from an earlier run that this machine cannot repeat (e.g. a
GPU figure on a CPU-only machine); "source" then names where they come from (a commit or a log).
"""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent


def library_versions(*names: str) -> dict[str, str]:
    """Python's version and each installed distribution's (those not installed are left out)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def current_commit() -> str:
    """The repository's HEAD commit, with "+changes" when the work tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def save(name: str, script: str, device: str, figures: dict, libraries: tuple[str, ...] = (),
         remeasured: bool = True, source: str | None = None, versions: dict[str, str] | None = None) -> Path:
    """Write benchmarks/results/<name>.json and return its path.

    `versions` is only for figures that were not re-measured: the library versions of the run that
    measured them, which this machine's installed ones would misstate.
    """
    if not remeasured and not source:
        raise ValueError("figures that were not re-measured need a source (a commit or a log)")
    if remeasured and versions is not None:
        raise ValueError("re-measured figures record this machine's library versions: leave `versions` out")
    record = {"script": script, "name": name, "remeasured": remeasured, "commit": current_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "device": device, "versions": versions or library_versions(*libraries), "figures": figures, "source": source}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def load(name: str) -> dict:
    """One results file, or a clear error naming the script that writes it."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the benchmark that writes it")
    return json.loads(path.read_text())


def processor(threads: int) -> str:
    """The CPU and how many of its cores torch used: the device a results file names."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}; {torch.get_num_threads()} of {torch.multiprocessing.cpu_count()} cores used ({threads} requested)"
