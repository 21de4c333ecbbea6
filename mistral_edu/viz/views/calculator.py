"""07's will-it-fit calculator as a self-contained HTML view: format x context x batch -> bytes, with the
breakdown memory.estimate prints, and a verdict on each named machine.

Python sends the numbers the arithmetic is made of, not its answers: each format's weight bytes per
component, the KV cache's bytes per token, the activation model's terms (memory.activation_terms) and the
runtime overhead. The browser evaluates them as memory.estimate does, so every format, context and batch
is answered without a kernel, to the byte (tests/test_browser.py runs both over a grid and compares).
"""
from __future__ import annotations

from dataclasses import fields

from ... import memory
from ...config import ModelConfig
from ..figure import finish, new_figure, tidy
from .page import View

TERMS = [f.name for f in fields(memory.ActivationTerm)]   # the order of each term's coefficients in the data
PARTS = ("weights", "KV cache", "activations", "overhead")
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#bab0ac")   # one per part, in the chart and the live bar
ATTENTION, LOGITS = "sdpa", "last"   # memory.estimate's defaults: generation's prefill, as load_model runs it


def fits(estimate: memory.Estimate, machine: memory.Machine) -> bool:
    """Whether what PyTorch allocates fits what the machine has free: a GPU's `available` already excludes
    the CUDA context (the estimate's overhead), and a CPU has none."""
    return estimate.total <= machine.available


def verdict(estimate: memory.Estimate, machine: memory.Machine) -> str:
    """One line: the machine, fits or not, and by how much (a prediction from the arithmetic)."""
    margin = machine.available - estimate.total
    answer = (f"fits, {margin / memory.GB:.2f} GB to spare" if fits(estimate, machine)
              else f"does not fit, {-margin / memory.GB:.2f} GB short")
    return f"{machine.name} ({machine.available / memory.GB:.2f} GB available): {answer} (predicted)"


def _terms(parts: dict[str, memory.ActivationTerm]) -> list:
    return [[name, [getattr(term, t) for t in TERMS]] for name, term in parts.items()]


def calculator_data(cfg: ModelConfig, machines: list[memory.Machine]) -> dict:
    """The numbers the view's script evaluates: per format its weight bytes by component; per compute dtype
    the KV bytes per token (with and without GQA) and the activation terms; the overhead; the machines."""
    formats = list(memory.WEIGHT_FORMATS.values())
    dtypes = sorted({f.compute for f in formats})
    activations = {}
    for dtype in dtypes:
        activations[dtype] = {}
        for path in memory.PATHS:
            resident, stages = memory.activation_terms(cfg, dtype, ATTENTION, LOGITS, path=path)
            activations[dtype][path] = {"resident": _terms(resident),
                                        "stages": [[s, _terms(p)] for s, p in stages.items()]}
    return {
        "model": f"{cfg.dim}-dim x {cfg.n_layers}-layer model, {memory.parameter_count(cfg):,} parameters",
        "max_context": cfg.max_seq_len, "sliding_window": cfg.sliding_window,
        "attention": ATTENTION, "terms": TERMS, "chunk": memory.PREFILL_CHUNK,
        "cfg_code": ("me.ModelConfig.mistral_7b_instruct_v02()" if cfg == ModelConfig.mistral_7b_instruct_v02()
                     else "cfg"),
        "formats": [{"name": f.name, "description": f.description, "compute": f.compute,
                     "weights": list(memory.weight_bytes_by_component(cfg, f.name).items())} for f in formats],
        "kv_per_token": {d: [memory.kv_bytes_per_token(cfg, d), memory.kv_bytes_per_token(cfg, d, gqa=False)]
                         for d in dtypes},
        "activations": activations,
        "overhead": memory.CUDA_CONTEXT_BYTES, "overhead_note": "CUDA context, about 500 MiB",
        "machines": [{"name": m.name, "available": m.available, "source": m.source} for m in machines],
        "colours": dict(zip(PARTS, COLOURS)),
    }


def fit_chart(estimate: memory.Estimate, machines: list[memory.Machine]):
    """The starting answer as a picture: what PyTorch allocates (three parts, stacked) above each machine's
    free memory, green where it fits. A GPU's free memory already excludes the CUDA context."""
    fig = new_figure(7.5, 1.2 + 0.35 * (len(machines) + 1))
    ax = tidy(fig.add_subplot())
    need = f"needs ({estimate.weights}, {estimate.context:,} x {estimate.batch})"
    left = 0.0
    for part, colour in zip(PARTS[:3], COLOURS):
        value = estimate.parts[part] / memory.GB
        ax.barh([need], [value], left=left, color=colour, label=f"{part} {value:.2f} GB")
        left += value
    for machine in machines:
        fit = fits(estimate, machine)
        ax.barh([machine.name], [machine.available / memory.GB], color="#8cc084" if fit else "#e8a0a0")
        ax.text(machine.available / memory.GB, machine.name, " fits" if fit else " does not fit", va="center",
                fontsize=8)
    ax.axvline(estimate.total / memory.GB, color="#333", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("GB (1e9 bytes); bars below: memory free on each machine (predicted)")
    ax.set_title(f"Will it fit? {estimate.total / memory.GB:.2f} GB allocated by PyTorch "
                 f"(+ {estimate.overhead / memory.GB:.2f} GB CUDA context on a GPU)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return finish(fig, None)


def will_it_fit(cfg: ModelConfig | None = None, weights: str = "bf16", context: int = 4096, batch: int = 1,
                machines: list[memory.Machine] | None = None) -> View:
    """Pick a format, a context and a batch; see the bytes, what they are made of, and which machines hold them.

    cfg: the model's shape (default Mistral-7B-Instruct-v0.2); weights, context, batch: the starting answer
    (any format memory.WEIGHT_FORMATS knows); machines: default memory.MACHINES, e.g. add memory.this_machine().
    The view also takes a device size of the reader's own. Without scripts it shows the starting answer as a
    picture, and as text (the estimate's table and each machine's verdict).
    """
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    machines = list(memory.MACHINES.values()) if machines is None else list(machines)
    if not all(isinstance(m, memory.Machine) for m in machines):
        raise TypeError("machines must be memory.Machine objects, e.g. memory.MACHINES['RTX 4090, 24 GB'] or "
                        "memory.this_machine()")
    start = memory.estimate(cfg, weights=weights, context=context, batch=batch)   # checks all three
    data = calculator_data(cfg, machines)
    data["start"] = {"format": start.weights, "context": context, "batch": batch}
    text = "\n".join([str(start), "", *(verdict(start, m) for m in machines)])
    return View("will-it-fit", ["will_it_fit.js"], "buildWillItFit", data, fit_chart(start, machines),
                "will it fit?", text=text)
