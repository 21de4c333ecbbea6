"""Parameter and byte arithmetic, derived from a ModelConfig (no weights needed).

Memory for running the model has four parts, and this module computes each from the shapes alone:
the weights (parameters x bytes per parameter of the chosen format), the KV cache (2 x layers x
KV heads x head_dim x bytes, per token), the activations at the peak of a forward pass, and a
runtime overhead (the CUDA context) that the framework's allocator never sees. `estimate()` puts
them together; `check_fit()` compares a plan with the memory that is free before anything loads.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from .config import ModelConfig
from .dtypes import DTYPE_BYTES, dtype_name
from .names import is_block_matrix, layer_of

GB = 10**9
GiB = 2**30

# The CUDA context (driver state, kernel images of torch/cuBLAS/cuDNN) lives outside PyTorch's
# allocator: nvidia-smi shows it, torch.cuda.memory_allocated() does not. About 500 MiB on an H100
# with torch 2.x is typical (it varies with the driver and the libraries loaded); we state it apart.
CUDA_CONTEXT_BYTES = 500 * 2**20

# ----------------------------------------------------------------------------- parameters

COMPONENTS = ("tok_embeddings", "attention.wq", "attention.wk", "attention.wv", "attention.wo",
              "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "norms", "output")


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint by its consolidated name, in the order the model holds them."""
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {"tok_embeddings.weight": (cfg.vocab_size, cfg.dim)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes.update({
            p + "attention_norm.weight": (cfg.dim,),
            p + "attention.wq.weight": (q, cfg.dim), p + "attention.wk.weight": (kv, cfg.dim),
            p + "attention.wv.weight": (kv, cfg.dim), p + "attention.wo.weight": (cfg.dim, q),
            p + "ffn_norm.weight": (cfg.dim,),
            p + "feed_forward.w1.weight": (cfg.hidden_dim, cfg.dim),
            p + "feed_forward.w2.weight": (cfg.dim, cfg.hidden_dim),
            p + "feed_forward.w3.weight": (cfg.hidden_dim, cfg.dim),
        })
    shapes["norm.weight"] = (cfg.dim,)
    shapes["output.weight"] = (cfg.vocab_size, cfg.dim)
    return shapes


def component_of(name: str) -> str:
    """Which of COMPONENTS a tensor name belongs to ("layers.3.attention.wq.weight" -> "attention.wq")."""
    if name.endswith("norm.weight"):
        return "norms"
    return re.sub(r"^layers\.\d+\.", "", name).removesuffix(".weight")


def parameter_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per component, summed over the layers."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, shape in tensor_shapes(cfg).items():
        counts[component_of(name)] += math.prod(shape)
    return counts


def parameter_count(cfg: ModelConfig) -> int:
    """Every weight of the model: 7,241,732,096 for Mistral-7B-Instruct-v0.2."""
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    feed_forward = 3 * cfg.dim * cfg.hidden_dim
    norms = 2 * cfg.dim
    per_layer = attention + feed_forward + norms
    return 2 * cfg.vocab_size * cfg.dim + cfg.n_layers * per_layer + cfg.dim


# ----------------------------------------------------------------------------- weight formats

def _plain(bytes_per_param: int):
    return lambda name, shape, cfg: math.prod(shape) * bytes_per_param


def _int8_per_channel(name, shape, cfg):
    """Ours (mistral_edu.quantize): block matrices int8 + one float32 scale per output row; rest bf16."""
    if is_block_matrix(name):
        return math.prod(shape) + 4 * shape[0]
    return 2 * math.prod(shape)


def _int4_group128(name, shape, cfg):
    """GPTQ/AWQ-like: 4-bit weights; per 128 inputs of a row an fp16 scale and a 4-bit zero point;
    GPTQ's int32 g_idx per input column; embeddings, output head and norms stay fp16."""
    if not is_block_matrix(name):
        return 2 * math.prod(shape)
    rows, cols = shape
    groups = rows * math.ceil(cols / 128)
    return rows * cols // 2 + groups * 2 + math.ceil(groups / 2) + 4 * cols


def _nf4(name, shape, cfg):
    """bitsandbytes NF4 as transformers loads it (bnb_4bit_use_double_quant=True): 4-bit codes,
    one absmax per 64 weights quantised to 8 bits, and per 256 such absmax one fp32 scale (plus one
    fp32 offset per tensor): 4 + 8/64 + 32/16384 = 4.127 bits per weight. Embeddings, lm_head (skipped
    by transformers) and norms stay bf16."""
    if not is_block_matrix(name):
        return 2 * math.prod(shape)
    n = math.prod(shape)
    blocks = math.ceil(n / 64)
    return n // 2 + blocks + 4 * math.ceil(blocks / 256) + 4


# GGUF block layouts from ggml-common.h (llama.cpp/ggml): (weights per block, bytes per block).
# Q8_0: fp16 d + 32 int8 = 34 B / 32 (8.5 bpw). Q4_0: fp16 d + 16 B nibbles = 18 B / 32 (4.5 bpw).
# Q5_0: 22 B / 32, Q5_1: 24 B / 32. K-quants use 256-weight super-blocks: Q4_K 144 B (4.5 bpw),
# Q5_K 176 B (5.5 bpw), Q6_K 210 B (6.5625 bpw).
GGML_BLOCKS = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q5_0": (32, 22),
               "Q5_1": (32, 24), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}
GGUF_FILE_TYPES = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K", "Q4_0": "Q4_0"}
# llama.cpp's fallback when a row is not a multiple of 256 (K-quants need whole super-blocks).
_K_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# Published sizes of TheBloke's widely used conversion of Mistral-7B-Instruct-v0.2 (README table
# "Provided files", https://huggingface.co/TheBloke/Mistral-7B-Instruct-v0.2-GGUF), in GB = 1e9 bytes.
PUBLISHED_GGUF_GB = {"Q8_0": 7.70, "Q6_K": 5.94, "Q5_K_M": 5.13, "Q4_K_M": 4.37, "Q4_0": 4.11}


def _use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits: the first and last eighth, and every third between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def gguf_tensor_type(file_type: str, name: str, shape: tuple[int, ...], cfg: ModelConfig) -> str:
    """The ggml type llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) gives one tensor.

    1-D tensors (the norms) stay F32. output.weight gets Q6_K unless the file is Q8_0. In Q4_K_M
    and Q5_K_M, attn_v (our wv) and ffn_down (our w2) of the layers chosen by use_more_bits get Q6_K.
    A row length that is not a multiple of 256 falls back from a K-quant to a 32-block type.
    """
    if len(shape) == 1:
        return "F32"
    base = GGUF_FILE_TYPES[file_type]
    kind = base
    layer = layer_of(name)
    if name == "output.weight":
        kind = "Q8_0" if base == "Q8_0" else "Q6_K"
    elif (file_type in ("Q4_K_M", "Q5_K_M") and name.endswith(("attention.wv.weight", "feed_forward.w2.weight"))
          and _use_more_bits(layer, cfg.n_layers)):
        kind = "Q6_K"
    if kind in _K_FALLBACK and shape[-1] % 256:
        kind = _K_FALLBACK[kind]
    return kind


def _gguf(file_type: str):
    def tensor_bytes(name, shape, cfg):
        per_block, block_bytes = GGML_BLOCKS[gguf_tensor_type(file_type, name, shape, cfg)]
        return math.ceil(math.prod(shape) / per_block) * block_bytes
    return tensor_bytes


@dataclass(frozen=True)
class WeightFormat:
    """How a format stores weights: bytes of each tensor, and the dtype the matmuls then run in."""

    name: str
    description: str
    tensor_bytes: object
    compute: str = "bf16"


WEIGHT_FORMATS = {f.name: f for f in [
    WeightFormat("fp32", "float32, 4 bytes per weight", _plain(4), compute="fp32"),
    WeightFormat("bf16", "bfloat16 as shipped, 2 bytes per weight", _plain(2)),
    WeightFormat("fp16", "float16, 2 bytes per weight", _plain(2), compute="fp16"),
    WeightFormat("int8", "ours: int8 block matrices + fp32 scale per output row", _int8_per_channel),
    WeightFormat("int4-g128", "GPTQ/AWQ-like 4-bit, fp16 scale + 4-bit zero per 128", _int4_group128, compute="fp16"),
    WeightFormat("nf4", "bitsandbytes NF4, absmax per 64, double-quantised", _nf4),
] + [WeightFormat(f"gguf-{t.lower()}", f"llama.cpp GGUF {t}", _gguf(t)) for t in GGUF_FILE_TYPES]}


def weight_format(name: str) -> WeightFormat:
    """Look a format up by name, case-insensitively ("Q4_K_M" and "gguf-q4_k_m" both work)."""
    key = str(name).lower()
    if key in ("float32", "float"):
        key = "fp32"
    elif key in ("bfloat16",):
        key = "bf16"
    elif key in ("float16", "half"):
        key = "fp16"
    elif f"gguf-{key}" in WEIGHT_FORMATS:
        key = f"gguf-{key}"
    if key not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {name!r}; known: {', '.join(WEIGHT_FORMATS)}")
    return WEIGHT_FORMATS[key]


def weight_bytes_by_component(cfg: ModelConfig, fmt: str = "bf16") -> dict[str, int]:
    """Bytes of the weights per component in one format."""
    f = weight_format(fmt)
    out = dict.fromkeys(COMPONENTS, 0)
    for name, shape in tensor_shapes(cfg).items():
        out[component_of(name)] += f.tensor_bytes(name, shape, cfg)
    return out


def weight_bytes(cfg: ModelConfig, fmt: str = "bf16") -> int:
    """Bytes of all weights in one format (14,483,464,192 for v0.2 in bf16)."""
    return sum(weight_bytes_by_component(cfg, fmt).values())


def gguf_type_counts(cfg: ModelConfig, file_type: str) -> dict[str, int]:
    """How many parameters of a GGUF file get each ggml type (to see a K-quant mix)."""
    counts: dict[str, int] = {}
    for name, shape in tensor_shapes(cfg).items():
        kind = gguf_tensor_type(file_type, name, shape, cfg)
        counts[kind] = counts.get(kind, 0) + math.prod(shape)
    return counts


# ----------------------------------------------------------------------------- checks of input

def check_context(cfg: ModelConfig, context) -> int:
    if isinstance(context, bool) or not isinstance(context, int) or not 0 < context <= cfg.max_seq_len:
        raise ValueError(f"context must be an integer in 1..{cfg.max_seq_len} (the model's context), got {context!r}")
    return context


def check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return batch


# ----------------------------------------------------------------------------- KV cache

def kv_cache_bytes(cfg: ModelConfig, context: int, batch: int = 1, cache_dtype="bf16", gqa: bool = True) -> int:
    """Keys and values of every layer for `context` tokens: what KVCache allocates.

    With a sliding window the rolling buffer keeps only `window` slots. gqa=False gives what the same
    model would need with one KV head per query head (multi-head attention).
    """
    check_context(cfg, context)
    check_batch(batch)
    slots = min(context, cfg.sliding_window) if cfg.sliding_window else context
    heads = cfg.n_kv_heads if gqa else cfg.n_heads
    return 2 * cfg.n_layers * batch * slots * heads * cfg.head_dim * DTYPE_BYTES[dtype_name(cache_dtype)]


def kv_bytes_per_token(cfg: ModelConfig, cache_dtype="bf16", gqa: bool = True) -> int:
    """128 KiB per token for Mistral 7B in bf16 (512 KiB without GQA)."""
    heads = cfg.n_kv_heads if gqa else cfg.n_heads
    return 2 * cfg.n_layers * heads * cfg.head_dim * DTYPE_BYTES[dtype_name(cache_dtype)]


# ----------------------------------------------------------------------------- activations

def _stage_bytes(cfg: ModelConfig, tokens: int, e: int, attention: str, cached: bool, batch: int) -> dict:
    """Live activation bytes at each stage of one block, for `tokens` positions (batch included).

    Mirrors the code: RMSNorm computes in float32 (x.float(), the normalised copy, the cast back, the
    weighted output); a block keeps its input, attention output and mid residual alive until it
    returns; RoPE works on a float32 copy as complex numbers; SwiGLU holds gate, up, silu(gate) and
    their product at once. Float32 compute (e = 4) skips the float copies and casts.
    """
    convert = 0 if e == 4 else 1
    d, q, kv, hidden = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.hidden_dim
    norm_temps = (convert * 4 * d + 4 * d + convert * e * d + e * d) * tokens
    rope_q = (convert * 4 * q + 4 * q + convert * e * q) * tokens
    qkv = e * (q + 2 * kv) * tokens
    stages = {
        "attention_norm": {"norm temporaries": norm_temps},
        "attention (RoPE on q)": {"normalised input": e * d * tokens, "q, k, v": qkv, "RoPE temporaries": rope_q},
        "attention (output)": {"normalised input": e * d * tokens, "q, k, v": e * q * tokens + (0 if cached else 2 * e * kv * tokens),
                               "attention output z, wo(z)": e * (q + d) * tokens,
                               "softmax statistics": 4 * cfg.n_heads * tokens},
        "ffn_norm": {"attention output, mid residual": 2 * e * d * tokens, "norm temporaries": norm_temps},
        "feed_forward (SwiGLU)": {"attention output, mid residual": 2 * e * d * tokens, "normalised input": e * d * tokens,
                                  "SwiGLU gate, up, silu(gate), product": 4 * e * hidden * tokens},
    }
    if attention == "explicit":
        seq = tokens // batch
        scores = batch * cfg.n_heads * seq * seq
        stages["attention (explicit scores)"] = {
            "normalised input": e * d * tokens, "q, repeated k and v": 3 * e * q * tokens,
            "scores + pattern (n_heads x L x L)": (e + convert * 4 + 4) * scores,
            "mask (L x L bool)": 2 * seq * seq}
    return stages


def prefill_activations(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16", attention: str = "sdpa",
                        logits: str = "last", cached: bool = True) -> tuple[str, dict[str, int]]:
    """(stage, parts) of the activation peak of one forward pass over `context` new tokens.

    attention: "sdpa" (fused, never stores the scores) or "explicit" (materialises n_heads x L x L
    scores and pattern, as hooks on them require). logits: "last" (generation's prefill, last_only)
    or "all" (every position: (e + 4) x vocab bytes per token, the float32 copy included).
    The residual stream (the block's input) and RoPE's rotations are live throughout.
    """
    check_context(cfg, context)
    check_batch(batch)
    if attention not in ("sdpa", "explicit"):
        raise ValueError(f"attention must be 'sdpa' or 'explicit', got {attention!r}")
    if logits not in ("last", "all"):
        raise ValueError(f"logits must be 'last' or 'all', got {logits!r}")
    e = DTYPE_BYTES[dtype_name(dtype)]
    tokens = batch * context
    resident = {"residual stream": e * cfg.dim * tokens,
                "token ids, positions, RoPE rotations": 8 * tokens + 8 * context + 4 * cfg.head_dim * context}
    stages = _stage_bytes(cfg, tokens, e, attention, cached, batch)
    out_tokens = batch if logits == "last" else tokens
    stages["output head"] = {"final norm output": e * cfg.dim * out_tokens,
                             f"logits ({logits} positions, {e}-byte + float32)": (e + 4) * cfg.vocab_size * out_tokens}
    if logits == "all":
        stages["final norm"] = {"norm temporaries": _stage_bytes(cfg, tokens, e, "sdpa", cached, batch)["ffn_norm"]["norm temporaries"]}
    peak = max(stages, key=lambda s: sum(stages[s].values()))
    return peak, {**resident, **stages[peak]}


def prefill_activation_bytes(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16",
                             attention: str = "sdpa", logits: str = "last", cached: bool = True) -> int:
    """The activation peak in bytes (see prefill_activations for the parts)."""
    return sum(prefill_activations(cfg, context, batch, dtype, attention, logits, cached)[1].values())


# ----------------------------------------------------------------------------- the estimate

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
        rows.append((f"activations (peak at {self.activation_stage}, {self.attention})", self.parts["activations"]))
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

    def plot(self, ax=None):
        """A stacked bar: weights, KV cache, activations, overhead (a matplotlib Figure)."""
        return plot_estimates([self], ax=ax)


def plot_estimates(estimates: list[Estimate], ax=None):
    """Stacked bars, one per estimate, in GB; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(estimates) + 2), 4))
    else:
        fig = ax.figure
    labels = [f"{e.weights}\n{e.context // 1024 if e.context >= 1024 else e.context}{'k' if e.context >= 1024 else ''}"
              for e in estimates]
    bottoms = [0.0] * len(estimates)
    colours = {"weights": "#4c72b0", "KV cache": "#dd8452", "activations": "#55a868", "overhead": "#bbbbbb"}
    for part, colour in colours.items():
        heights = [(e.overhead if part == "overhead" else e.parts[part]) / GB for e in estimates]
        ax.bar(labels, heights, bottom=bottoms, color=colour, label=part)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_ylabel("GB")
    ax.set_title(f"Memory to run {estimates[0].cfg.dim}-dim x {estimates[0].cfg.n_layers}-layer model")
    ax.legend()
    fig.tight_layout()
    return fig


def estimate(cfg: ModelConfig | None = None, weights: str = "bf16", context: int = 1024, batch: int = 1,
             cache_dtype=None, attention: str = "sdpa", logits: str = "last",
             overhead: int = CUDA_CONTEXT_BYTES) -> Estimate:
    """Memory for a prefill of `context` tokens, then decoding into the same cache.

    cache_dtype defaults to the dtype the format computes in (bf16 for quantised formats). For the
    GGUF formats the activations are those of this package's PyTorch model, not llama.cpp's buffers.
    """
    cfg = cfg or ModelConfig.mistral_7b_instruct_v02()
    fmt = weight_format(weights)
    check_context(cfg, context)
    check_batch(batch)
    cache_dtype = dtype_name(cache_dtype or fmt.compute)
    weight_parts = weight_bytes_by_component(cfg, fmt.name)
    stage, act_parts = prefill_activations(cfg, context, batch, fmt.compute, attention, logits)
    parts = {"weights": sum(weight_parts.values()),
             "KV cache": kv_cache_bytes(cfg, context, batch, cache_dtype),
             "activations": sum(act_parts.values())}
    return Estimate(cfg, fmt.name, context, batch, cache_dtype, attention, logits, parts, weight_parts, stage,
                    act_parts, kv_cache_bytes(cfg, context, batch, cache_dtype, gqa=False), overhead,
                    "CUDA context, about 500 MiB" if overhead == CUDA_CONTEXT_BYTES else "as given")


# ----------------------------------------------------------------------------- fitting a plan

# The fit check plans for a prompt of this many tokens: KV cache and activation peak included.
PLAN_CONTEXT = 4096
STRATEGIES = ("full", "int8", "stream")


def free_memory(device) -> tuple[int, str]:
    """(bytes free, where the number comes from) on a device, before anything is allocated."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"torch.cuda.mem_get_info({device})"
    if device.type in ("cpu", "mps"):  # Apple's GPU shares the machine's RAM
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
        except OSError:
            pass
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages (sysconf)"
    raise ValueError(f"cannot tell the free memory of device {device}; pass strategy='full', 'int8' or 'stream'")


def strategy_weight_bytes(cfg: ModelConfig, strategy: str, dtype="bf16") -> int:
    """Weight bytes a strategy holds on the device at its peak, computing in `dtype`."""
    e = DTYPE_BYTES[dtype_name(dtype)]
    shapes = tensor_shapes(cfg)
    if strategy == "full":
        return e * sum(math.prod(s) for s in shapes.values())
    if strategy == "int8":
        return sum(math.prod(s) + 4 * s[0] if is_block_matrix(n) else e * math.prod(s) for n, s in shapes.items())
    if strategy == "stream":
        units: dict[str, int] = {}
        for name, shape in shapes.items():
            unit = f"layers.{layer_of(name)}" if layer_of(name) is not None else name
            units[unit] = units.get(unit, 0) + e * math.prod(shape)
        return max(units.values())
    raise ValueError(f"unknown strategy {strategy!r}; use 'auto' or one of {', '.join(STRATEGIES)}")


def strategy_bytes(cfg: ModelConfig, strategy: str, dtype="bf16", context: int | None = None) -> dict[str, int]:
    """Weights, KV cache and activation peak of a strategy for a prompt of `context` tokens."""
    context = min(context or PLAN_CONTEXT, cfg.max_seq_len)
    return {"weights": strategy_weight_bytes(cfg, strategy, dtype),
            "KV cache": kv_cache_bytes(cfg, context, 1, dtype),
            "activations": prefill_activation_bytes(cfg, context, 1, dtype)}


def choose_strategy(cfg: ModelConfig, device, dtype, strategy: str = "auto", verbose: bool = True,
                    free: int | None = None) -> str:
    """Check a load against free memory before anything is allocated; "auto" picks the first that fits.

    Refuses (MemoryError) with the arithmetic and the options when the requested strategy does not
    fit, or when none does.
    """
    if strategy != "auto" and strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use 'auto' or one of {', '.join(STRATEGIES)}")
    device = torch.device(device)
    if free is None:
        free, source = free_memory(device)
    else:
        source = "as given"
    needs = {s: strategy_bytes(cfg, s, dtype) for s in STRATEGIES}
    totals = {s: sum(parts.values()) for s, parts in needs.items()}

    def explain(s: str) -> str:
        parts = " + ".join(f"{k} {v / GB:.2f}" for k, v in needs[s].items())
        return f"{s}: {parts} = {totals[s] / GB:.2f} GB"

    table = "\n".join("  " + explain(s) for s in STRATEGIES)
    where = f"{free / GB:.2f} GB free on {device} ({source}); planned for a {min(PLAN_CONTEXT, cfg.max_seq_len)}-token prompt"
    if strategy == "auto":
        for s in STRATEGIES:
            if totals[s] <= free:
                if verbose and s != "full":
                    print(f"mistral_edu: strategy '{s}': {explain('full')} does not fit in {where}; "
                          f"{explain(s)} does")
                return s
        raise MemoryError(f"the model cannot fit on {device} in any way: {where}, and even streaming needs "
                          f"{totals['stream'] / GB:.2f} GB:\n{table}\nUse a device with more memory, or a "
                          "smaller model (ModelConfig.tiny() / the embedded default).")
    if totals[strategy] > free:
        fitting = [s for s in STRATEGIES if totals[s] <= free]
        options = (f"strategies that fit: {', '.join(fitting)} (strategy='auto' picks the first)" if fitting
                   else "nothing fits on this device; use one with more memory")
        raise MemoryError(f"strategy '{strategy}' needs {totals[strategy] / GB:.2f} GB but {where}:\n{table}\n"
                          f"{options}. Nothing was loaded.")
    return strategy
