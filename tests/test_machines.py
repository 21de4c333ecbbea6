"""The named machines get load_model's own choice (compute_dtype and choose_strategy), with its numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mistral_edu as me
from mistral_edu import memory
from mistral_edu.checkpoints import load, parse_device, plan_load
from mistral_edu.memory import MACHINES, predict

SEVEN_B = me.ModelConfig.mistral_7b_instruct_v02()


@pytest.fixture
def as_machine(monkeypatch):
    """as_machine(machine) makes torch report that machine's device, capability and free memory."""
    def install(machine: memory.Machine) -> torch.device:
        is_gpu = machine.device == "cuda"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: is_gpu)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: int(is_gpu))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: machine.capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulation counts
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: machine.name)
        monkeypatch.setattr(torch.cuda, "mem_get_info",
                            lambda device=None: (machine.available, machine.available + memory.CUDA_CONTEXT_BYTES))
        monkeypatch.setattr(memory.machines, "free_memory", lambda device: (machine.available, "mocked"))
        monkeypatch.setattr(memory.fit, "free_memory", lambda device: (machine.available, "mocked"))
        monkeypatch.setattr(load, "free_memory", lambda device: (machine.available, "mocked"))
        return parse_device(None)
    return install


@pytest.mark.parametrize("name", list(MACHINES))
@pytest.mark.parametrize("context", [1024, 4096, 32768])
def test_each_named_machine_is_predicted_as_load_model_plans_it(as_machine, name, context):
    machine = MACHINES[name]
    device = as_machine(machine)
    plan = plan_load(SEVEN_B, device, verbose=False, context=context)
    prediction = predict(machine, context=context)
    assert (prediction.dtype, prediction.strategy) == (plan.dtype, plan.strategy)
    assert prediction.strategy_why == plan.strategy_why and prediction.dtype_why == plan.why
    assert predict(memory.this_machine(), context=context).strategy == plan.strategy


@pytest.mark.parametrize("name, context, dtype, strategy, gb", [
    ("T4-class GPU, 16 GB", 1024, torch.float16, "full", 14.78),
    ("T4-class GPU, 16 GB", 2048, torch.float16, "full", 15.08),
    ("T4-class GPU, 16 GB", 4096, torch.float16, "int8", 8.38),
    ("T4-class GPU, 16 GB", 32768, torch.float16, "int8", 12.66),
    ("RTX 4090, 24 GB", 4096, torch.bfloat16, "full", 15.35),
    ("RTX 4090, 24 GB", 32768, torch.bfloat16, "full", 19.63),
    ("H100, 80 GB", 32768, torch.bfloat16, "full", 19.63),
    ("laptop, 16 GB RAM, no GPU", 1024, torch.bfloat16, "int8", 7.81),
    ("laptop, 16 GB RAM, no GPU", 4096, torch.bfloat16, "int8", 8.38),
])
def test_what_each_machine_gets(name, context, dtype, strategy, gb):
    """A T4 keeps every fp16 weight up to a 2k prompt; at 4k the weights go int8; no machine gets emulated bf16."""
    prediction = predict(MACHINES[name], context=context)
    assert (prediction.dtype, prediction.strategy) == (dtype, strategy)
    assert prediction.needs / 1e9 == pytest.approx(gb, abs=0.005)
    assert prediction.line().endswith("(predicted)")


def test_a_machine_too_small_for_streaming_is_told_so():
    tiny = memory.Machine("a 2 GB GPU", "cuda", 2 * 10**9, (7, 5), "given")
    prediction = predict(tiny, context=32768)
    assert prediction.strategy is None and "not even streaming fits" in prediction.line()


def test_the_table_has_a_row_per_machine_and_a_cell_per_context():
    table = memory.expectations((1024, 4096)).splitlines()
    assert len(table) == 2 + len(MACHINES)
    assert table[2] == "| T4-class GPU, 16 GB (15.3 GB available) | fp16 | full, 14.8 GB | int8, 8.4 GB |"


def test_the_readme_table_is_the_functions_output():
    """The README's "what to expect" table is memory.expectations(), not retyped numbers."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert memory.expectations() in readme


def test_the_readme_precision_figures_are_the_results_file():
    root = Path(__file__).resolve().parents[1]
    figures = json.loads((root / "benchmarks" / "results" / "fp16_vs_fp32.json").read_text())["figures"]
    readme = (root / "README.md").read_text()
    for dtype in ("fp16", "bf16"):
        assert f"{figures[dtype]['logits_relative_error']:.1e}" in readme
    assert f"fp16 rounds {figures['bf16_over_fp16_error']:.1f}x more finely" in readme
