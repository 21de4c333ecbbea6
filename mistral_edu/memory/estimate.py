"""The estimate: weights + KV cache + activation peak of running a model, with the runtime overhead apart.

Memory for running the model has four parts, each computed from the shapes alone: the weights
(parameters x bytes per parameter of the chosen format), the KV cache, the activations at the peak of a
forward pass, and a runtime overhead (the CUDA context) that the framework's allocator never sees.
`estimate()` puts them together and prints as a table, renders as HTML, and plots as stacked bars.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelConfig
from ..dtypes import dtype_name
from .activations import PREFILL_CHUNK, prefill_activations, prefill_path
from .checks import check_batch, check_context
from .formats import weight_bytes_by_component, weight_format
from .kv_cache import kv_cache_bytes
from .units import GB, GiB

# The CUDA context (driver state, kernel images of torch/cuBLAS/cuDNN) lives outside PyTorch's
# allocator: nvidia-smi shows it, torch.cuda.memory_allocated() does not. About 500 MiB on an H100
# with torch 2.x is typical (it varies with the driver and the libraries loaded); we state it apart.
CUDA_CONTEXT_BYTES = 500 * 2**20


@dataclass
class Estimate:
    """Memory to run a model: weights + KV cache + activation peak, with the runtime overhead apart."""

    cfg: ModelConfig
    weights: str
    context: int
    batch: int
    cache_dtype: str
    attention: str
    logits: str
    path: str
    parts: dict[str, int]
    weight_parts: dict[str, int]
    activation_stage: str
    activation_parts: dict[str, int]
    kv_no_gqa: int
    overhead: int
    overhead_note: str = field(default="")

    @property
    def total(self) -> int:
        """What the framework allocates (torch.cuda.max_memory_allocated measures this)."""
        return sum(self.parts.values())

    @property
    def total_with_overhead(self) -> int:
        return self.total + self.overhead

    def rows(self) -> list[tuple[str, int]]:
        """(label, bytes) lines of the table, details indented under their part."""
        rows = [("weights (" + weight_format(self.weights).description + ")", self.parts["weights"])]
        rows += [(f"  {k}", v) for k, v in self.weight_parts.items() if v]
        rows.append((f"KV cache ({self.context:,} tokens x {self.batch}, {self.cache_dtype})", self.parts["KV cache"]))
        rows.append(("  without GQA it would be", self.kv_no_gqa))
        how = f"generate's fast path, {PREFILL_CHUNK:,}-token chunks" if self.path == "fast" else "one pass"
        rows.append((f"activations (peak at {self.activation_stage}, {self.attention}, {how})", self.parts["activations"]))
        rows += [(f"  {k}", v) for k, v in self.activation_parts.items()]
        rows.append(("total (allocated by PyTorch)", self.total))
        rows.append((f"runtime overhead, apart ({self.overhead_note})", self.overhead))
        rows.append(("total with overhead", self.total_with_overhead))
        return rows

    def __str__(self) -> str:
        title = f"{self.weights}, context {self.context:,}, batch {self.batch}"
        width = max(len(label) for label, _ in self.rows())
        lines = [title, "-" * (width + 24)]
        for label, value in self.rows():
            lines.append(f"{label:<{width}}  {value / GB:9.3f} GB {value / GiB:8.3f} GiB")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Estimate({self.weights}, context={self.context}, batch={self.batch}: "
                f"{self.total / GB:.2f} GB + {self.overhead / GB:.2f} GB overhead)")

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><td style='text-align:left'>{label.replace('  ', '&emsp;')}</td>"
                        f"<td>{value / GB:.3f} GB</td><td>{value / GiB:.3f} GiB</td></tr>"
                        for label, value in self.rows())
        return (f"<table><caption>{self.weights}, context {self.context:,}, batch {self.batch}</caption>"
                f"{cells}</table>")


def estimate(cfg: ModelConfig | None = None, weights: str = "bf16", context: int = 1024, batch: int = 1,
             cache_dtype=None, attention: str = "sdpa", logits: str = "last",
             overhead: int = CUDA_CONTEXT_BYTES, path: str = "auto") -> Estimate:
    """Memory for a prefill of `context` tokens, then decoding into the same cache.

    path: how the prompt is read. "auto" is the path generate takes with no hook attached
    (memory.prefill_path: its fast path, PREFILL_CHUNK tokens at a time, for one sequence with fused
    attention; one pass otherwise); "plain" is one pass (model(tokens), or generate with a hook); "fast" the chunks.

    cache_dtype defaults to the dtype the format computes in (bf16 for quantised formats). For the
    GGUF formats the activations are those of this package's PyTorch model, not llama.cpp's buffers.
    """
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    fmt = weight_format(weights)
    check_context(cfg, context)
    check_batch(batch)
    cache_dtype = dtype_name(cache_dtype or fmt.compute)
    weight_parts = weight_bytes_by_component(cfg, fmt.name)
    path = prefill_path(cfg, context, batch, attention, logits) if path == "auto" else path
    stage, act_parts = prefill_activations(cfg, context, batch, fmt.compute, attention, logits, path=path)
    parts = {"weights": sum(weight_parts.values()),
             "KV cache": kv_cache_bytes(cfg, context, batch, cache_dtype),
             "activations": sum(act_parts.values())}
    return Estimate(cfg, fmt.name, context, batch, cache_dtype, attention, logits, path, parts, weight_parts, stage,
                    act_parts, kv_cache_bytes(cfg, context, batch, cache_dtype, gqa=False), overhead,
                    "CUDA context, about 500 MiB" if overhead == CUDA_CONTEXT_BYTES else "as given")
