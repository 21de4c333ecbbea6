"""Loading holds one copy of the weights plus one tensor, never two copies.

A checkpoint of about 300 MB in the real bf16 layout is loaded in bf16 (so no cast needs a second
buffer) by a fresh Python process, which reports its resident memory before load_model and its peak
(VmHWM) after. The difference must stay under 1.3x the checkpoint's size, in both layouts.

The peak is VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across
fork and exec, so a child of a large pytest process would report the parent's footprint.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import mistral_edu as me
from mistral_edu.memory import tensor_shapes
from mistral_edu.checkpoints import LazyTensor, write_consolidated, write_hf

# 148M parameters: 296 MB in bf16; its largest tensors (the 65 MB embedding and output) are what a
# loader that kept a second copy of even one tensor at a time would add on top.
CFG = me.ModelConfig(dim=1024, n_layers=6, head_dim=64, hidden_dim=3584, n_heads=16, n_kv_heads=4,
                     norm_eps=1e-5, vocab_size=32000, rope_theta=1e6, max_seq_len=4096)
LIMIT = 1.3

MEASURE = textwrap.dedent("""
    import json, os, sys
    import torch
    import mistral_edu as me

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    torch.ones(1) @ torch.ones(1)  # let torch finish its lazy start-up before the baseline
    before = rss()
    model = me.load_model(sys.argv[1], device="cpu", dtype="bf16", verbose=False)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"before": before, "peak": peak, "held": held}))
""")


def lazy_random_tensors() -> dict[str, LazyTensor]:
    """The checkpoint's tensors, each made only when written, so writing needs one tensor of memory."""
    def maker(i, shape):
        return lambda: torch.full(shape, 0.01 * i, dtype=torch.bfloat16)  # values do not matter here
    return {name: LazyTensor(torch.bfloat16, shape, maker(i, shape))
            for i, (name, shape) in enumerate(tensor_shapes(CFG).items())}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {"mistral": write_consolidated(lazy_random_tensors(), CFG, tmp_path_factory.mktemp("mistral_layout")),
            "hf": write_hf(lazy_random_tensors(), CFG, tmp_path_factory.mktemp("hf_layout"), shards=3)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("layout", ["mistral", "hf"])
def test_loading_peak_is_one_copy_of_the_weights(layout, checkpoints):
    folder = checkpoints[layout]
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    assert 280e6 < size < 320e6
    result = subprocess.run([sys.executable, "-c", MEASURE, str(folder)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    ratio = (measured["peak"] - measured["before"]) / size
    print(f"{layout} layout: checkpoint {size / 1e6:.0f} MB, load peak - baseline "
          f"{(measured['peak'] - measured['before']) / 1e6:.0f} MB = {ratio:.3f}x")
    assert measured["held"] == pytest.approx(size, rel=0.01), "the model holds the whole checkpoint"
    assert ratio < LIMIT, f"loading peaked at {ratio:.2f}x the checkpoint (limit {LIMIT}x)"
