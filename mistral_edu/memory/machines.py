"""What load_model() would do with the 7B on machines learners have: named ones, and the one running this.

Each answer comes from the same two rules load_model applies: compute_dtype (the dtype a device
computes in: fp16 below compute capability 8.0, where bf16 is only emulated) and choose_strategy (the
first of full, int8, stream whose weights + KV cache + activation peak fit the free memory). These are
predictions from the arithmetic; a notebook or README labels a number "measured on <device>" only
where a benchmark's results file holds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..dtypes import dtype_name
from .estimate import CUDA_CONTEXT_BYTES
from .fit import PLAN_CONTEXT, choose_strategy, compute_dtype, free_memory, strategy_bytes, strategy_reason
from .units import GB


@dataclass(frozen=True)
class Machine:
    """A device as load_model sees it: its type, the memory a fresh process may use, its compute capability."""

    name: str
    device: str                              # "cuda" or "cpu"
    available: int                           # bytes free to a fresh process, before anything is loaded
    capability: tuple[int, int] | None       # a CUDA GPU's compute capability; None for a CPU
    source: str                              # where `available` comes from

    @classmethod
    def gpu(cls, name: str, total: int, capability: tuple[int, int]) -> "Machine":
        """A GPU whose torch.cuda.mem_get_info total is `total`, less a fresh CUDA context."""
        return cls(name, "cuda", total - CUDA_CONTEXT_BYTES, capability,
                   f"{total / GB:.2f} GB total as torch reports it, less a {CUDA_CONTEXT_BYTES / 2**20:.0f} MiB "
                   "CUDA context")


# Totals are torch.cuda.mem_get_info()'s for each card (a "16 GB" T4 reports 15,102 MiB). The laptop's
# 11 GB is an assumption: 16 GB of RAM less the operating system, a browser and the notebook server.
MACHINES = {
    "T4-class GPU, 16 GB": Machine.gpu("T4-class GPU, 16 GB", 15_835_660_288, (7, 5)),
    "RTX 4090, 24 GB": Machine.gpu("RTX 4090, 24 GB", 25_393_692_672, (8, 9)),
    "H100, 80 GB": Machine.gpu("H100, 80 GB", 85_031_714_816, (9, 0)),
    "laptop, 16 GB RAM, no GPU": Machine("laptop, 16 GB RAM, no GPU", "cpu", 11 * 10**9, None,
                                         "16 GB of RAM less about 5 GB for the system, a browser and Jupyter"),
}


def this_machine(device=None) -> Machine:
    """The device this process would load onto (cuda if available), with what it has free now."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    available, source = free_memory(device)
    if device.type == "cuda":
        return Machine(f"this machine ({torch.cuda.get_device_name(device)})", "cuda", available,
                       torch.cuda.get_device_capability(device), source)
    return Machine(f"this machine ({device.type})", device.type, available, None, source)


@dataclass(frozen=True)
class Prediction:
    """load_model()'s automatic choice on a machine, with its reasons and the bytes it needs."""

    machine: Machine
    context: int
    dtype: torch.dtype
    dtype_why: str
    strategy: str | None                     # None: not even streaming fits
    strategy_why: str
    needs: int                               # bytes of the chosen strategy (or of streaming, if none fits)

    def line(self) -> str:
        """One sentence: the machine, then what it gets and why, labelled as a prediction."""
        what = (f"{dtype_name(self.dtype)} with strategy '{self.strategy}', {self.needs / GB:.2f} GB"
                if self.strategy else "nothing: not even streaming fits")
        return (f"{self.machine.name}: {what} for a {self.context:,}-token prompt, of "
                f"{self.machine.available / GB:.2f} GB available (predicted)")


def predict(machine: Machine, cfg: ModelConfig | None = None, context: int = PLAN_CONTEXT) -> Prediction:
    """What load_model(context=context) would choose on `machine`, by compute_dtype and choose_strategy."""
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    dtype, dtype_why = compute_dtype(cfg, machine.capability)
    try:
        strategy = choose_strategy(cfg, machine.device, dtype, verbose=False, free=machine.available, context=context)
    except MemoryError:
        needs = sum(strategy_bytes(cfg, "stream", dtype, context).values())
        return Prediction(machine, context, dtype, dtype_why, None,
                          f"streaming needs {needs / GB:.2f} GB, more than is available", needs)
    return Prediction(machine, context, dtype, dtype_why, strategy,
                      strategy_reason(cfg, strategy, dtype, machine.available, context),
                      sum(strategy_bytes(cfg, strategy, dtype, context).values()))


def expectations(contexts: tuple[int, ...] = (1024, PLAN_CONTEXT, 32768), cfg: ModelConfig | None = None) -> str:
    """A Markdown table: per named machine, load_model's choice at each context (every cell predicted)."""
    head = "| machine | computes in | " + " | ".join(f"{c:,}-token prompt" for c in contexts) + " |"
    rows = [head, "|" + " --- |" * (len(contexts) + 2)]
    for machine in MACHINES.values():
        predictions = [predict(machine, cfg, c) for c in contexts]
        cells = [f"{p.strategy}, {p.needs / GB:.1f} GB" if p.strategy else "does not fit" for p in predictions]
        rows.append(f"| {machine.name} ({machine.available / GB:.1f} GB available) | "
                    f"{dtype_name(predictions[0].dtype)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
