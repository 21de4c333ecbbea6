"""The automatic dtype and strategy, decided before a byte of weights is read, on the machines people have.

Each machine is mocked where torch reports it: compute capability, torch's own bf16 answer (which says
yes on a T4, where bf16 is only emulated), and the free memory a fresh CUDA context leaves
(total minus memory.CUDA_CONTEXT_BYTES). The 7B's numbers come from memory.strategy_bytes, planned
for a 4096-token prompt: 15.35 GB in bf16/fp16, 8.38 GB with int8 block matrices.
"""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from mistral_edu import memory
from mistral_edu.__main__ import describe_fit
from mistral_edu.checkpoints import default_dtype, parse_device, plan_load

SEVEN_B = me.ModelConfig.mistral_7b_instruct_v02()

# name: (compute capability, bytes torch.cuda.mem_get_info reports as total)
GPUS = {
    "T4 16 GB": ((7, 5), 15_835_660_288),
    "RTX 4090 24 GB": ((8, 9), 25_393_692_672),
    "H100 80 GB": ((9, 0), 85_031_714_816),
}


@pytest.fixture
def gpu(monkeypatch):
    """gpu(name) makes torch see that GPU as cuda:0 and returns the device."""
    def install(name: str) -> torch.device:
        capability, total = GPUS[name]
        free = total - memory.CUDA_CONTEXT_BYTES
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulation counts
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))
        return parse_device(None)
    return install


def test_t4_gets_fp16_and_int8_because_fp16_weights_do_not_fit(gpu):
    plan = plan_load(SEVEN_B, gpu("T4 16 GB"), verbose=False)
    assert plan.dtype == torch.float16 and plan.strategy == "int8"
    assert "compute capability 7.5" in plan.why and "8.0" in plan.why


def test_t4_loads_fp16_whole_when_the_memory_allows(gpu):
    """int8 only because 15.35 GB does not fit 15.3 GB; a roomier capability-7.5 card keeps every weight."""
    plan = plan_load(SEVEN_B, gpu("T4 16 GB"), verbose=False, free=16 * 10**9)
    assert plan.dtype == torch.float16 and plan.strategy == "full"


@pytest.mark.parametrize("name", ["RTX 4090 24 GB", "H100 80 GB"])
def test_ampere_and_later_get_native_bf16_whole(gpu, name):
    plan = plan_load(SEVEN_B, gpu(name), verbose=False)
    assert plan.dtype == torch.bfloat16 and plan.strategy == "full"
    assert plan.why.startswith("bfloat16")


def test_a_16_gb_laptop_without_gpu_gets_bf16_in_int8(monkeypatch):
    """16 GB of RAM leaves about 11 GB available beside the OS and a browser: int8 fits, bf16 does not."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device = parse_device(None)
    assert device == torch.device("cpu")
    plan = plan_load(SEVEN_B, device, verbose=False, free=11 * 10**9)
    assert plan.dtype == torch.bfloat16 and plan.strategy == "int8"


@pytest.mark.parametrize("name", list(GPUS))
def test_small_models_compute_in_fp32_everywhere(gpu, name):
    assert default_dtype(me.ModelConfig.tiny(), gpu(name))[0] == torch.float32
    assert default_dtype(me.ModelConfig.tiny(), torch.device("cpu"))[0] == torch.float32


def test_an_asked_dtype_is_kept_and_planned_for(gpu):
    """fp32 on the 4090 would need 31 GB: asked for, it is kept, and int8 makes it fit."""
    plan = plan_load(SEVEN_B, gpu("RTX 4090 24 GB"), dtype="fp32", verbose=False)
    assert plan.dtype == torch.float32 and plan.why == "as requested" and plan.strategy == "int8"


def test_info_reports_the_t4_choice(gpu):
    line = describe_fit(gpu("T4 16 GB"), 4096)
    assert "in fp16 (float16: this GPU (compute capability 7.5)" in line and "strategy 'int8'" in line
