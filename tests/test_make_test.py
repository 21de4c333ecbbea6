"""`make test` runs where a learner runs it: the notebooks on the CPU that made their outputs, the tests on every
device the machine has, and CI's second pass under other CPU kernels. Checked from the Makefile's recipes, so
that no GPU is needed to see that a GPU would be hidden from the notebooks only."""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import notebooks_other_cpu  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def recipe(target: str) -> list[list[str]]:
    """The commands `make TARGET` would run, split into words, with the venv already installed."""
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def test_notebooks_run_with_every_gpu_hidden_and_tests_do_not():
    commands = recipe("test")
    nbval = [c for c in commands if "--nbval" in c]
    others = [c for c in commands if "--nbval" not in c]
    assert len(nbval) == 1, f"expected one nbval run in `make test`, got {commands}"
    assert nbval[0][:2] == ["env", "CUDA_VISIBLE_DEVICES="], (
        f"the notebooks must run with CUDA_VISIBLE_DEVICES= (their outputs were made on a CPU): {nbval[0][:4]}")
    assert any("tests" in c and "pytest" in c for c in others), "the tests must run in `make test`"
    assert not any("CUDA_VISIBLE_DEVICES=" in c for c in others), "the tests must see the GPU to run their CUDA checks"
    assert "notebooks/sanitize.cfg" in nbval[0] and sum(w.endswith(".ipynb") for w in nbval[0]) >= 15


def test_ci_reruns_the_same_notebook_command_under_other_kernels():
    nbval = next(c for c in recipe("test") if "--nbval" in c)
    other = next(c for c in recipe("notebooks-other-cpu") if "notebooks_other_cpu.py" in " ".join(c))
    assert other[other.index("tests/notebooks_other_cpu.py") + 1:] == nbval
    assert "make notebooks-other-cpu" in (ROOT / ".ci" / "run").read_text()


def test_an_empty_cuda_visible_devices_reaches_the_command():
    out = subprocess.run(["env", "CUDA_VISIBLE_DEVICES=", sys.executable, "-c",
                          "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "''"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ATen's AVX2/DEFAULT names are x86's")
def test_the_portable_kernels_can_be_forced_and_are_checked():
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    assert notebooks_other_cpu.capability(env) == "DEFAULT"
    assert "DEFAULT" in notebooks_other_cpu.forced_environments()
