"""Run a command (the notebooks' nbval run) with PyTorch's CPU kernels forced to each other instruction set.

PyTorch picks its CPU kernels by instruction set (AVX-512, AVX2, the portable DEFAULT), and so do the BLAS
(MKL) and oneDNN it calls; each rounds the last digits of a float differently. A learner whose CPU lacks
this machine's instruction set gets those digits, so the committed outputs must not depend on them. This
forces every instruction set below this machine's (each checked to have taken effect) and runs the command
under each: `python tests/notebooks_other_cpu.py COMMAND...` (the Makefile's `notebooks-other-cpu`).
"""
from __future__ import annotations

import os
import subprocess
import sys

# ATen's names, from the widest to the portable one, with the matching MKL and oneDNN ceilings.
DISPATCHES = {
    "AVX512": {"MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "DEFAULT": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
PROBE = "import torch; print(torch.backends.cpu.get_cpu_capability())"


def capability(env: dict[str, str]) -> str:
    """The instruction set ATen's kernels dispatch to in a fresh process with this environment."""
    return subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def forced_environments() -> dict[str, dict[str, str]]:
    """{instruction set: environment} for every set below this machine's that can be forced here."""
    native = capability(dict(os.environ))
    forced = {}
    for name, libraries in DISPATCHES.items():
        env = {**os.environ, "ATEN_CPU_CAPABILITY": name.lower(), **libraries}
        if name != native and capability(env) == name:
            forced[name] = env
    print(f"this CPU's kernels: {native}; forced here: {', '.join(forced) or 'none'}", flush=True)
    return forced


def main(command: list[str]) -> int:
    if not command:
        sys.exit("usage: python tests/notebooks_other_cpu.py COMMAND... (e.g. the notebooks' nbval run)")
    forced = forced_environments()
    if not forced:
        sys.exit("no other instruction set could be forced on this CPU (ATEN_CPU_CAPABILITY had no effect): "
                 "run this on an x86 machine with AVX2 or AVX-512")
    failed = []
    for name, env in forced.items():
        print(f"\n=== {command[0]} ... with PyTorch's CPU kernels forced to {name} ===", flush=True)
        if subprocess.run(command, env=env).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed with the kernels forced to {', '.join(failed)}: a printed digit depends on the CPU; "
              "print fewer digits there (tests/test_notebook_outputs.py says how)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
