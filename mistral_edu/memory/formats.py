"""Weight formats: how many bytes each tensor takes in bf16, int8, 4-bit (GPTQ/AWQ, NF4) or a GGUF file."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

from ..config import ModelConfig
from ..dtypes import ALIASES
from ..names import is_block_matrix
from .gguf import GGUF_FILE_TYPES, gguf_tensor_bytes
from .parameters import COMPONENTS, component_of, tensor_shapes

# (name, shape, cfg) -> bytes of that tensor in one format.
TensorBytes = Callable[[str, tuple[int, ...], ModelConfig], int]


def _plain(bytes_per_param: int, name: str, shape: tuple[int, ...], cfg: ModelConfig) -> int:
    return math.prod(shape) * bytes_per_param


def int8_matrix_bytes(shape: tuple[int, ...]) -> int:
    """A block matrix as our int8 layer holds it: one byte per weight, one float32 scale per output row."""
    return math.prod(shape) + 4 * shape[0]


def _int8_per_channel(name: str, shape: tuple[int, ...], cfg: ModelConfig) -> int:
    """Ours (the int8 strategy): block matrices int8 + one float32 scale per output row; rest bf16."""
    if is_block_matrix(name):
        return int8_matrix_bytes(shape)
    return 2 * math.prod(shape)


def _int4_group128(name: str, shape: tuple[int, ...], cfg: ModelConfig) -> int:
    """GPTQ/AWQ-like: 4-bit weights; per 128 inputs of a row an fp16 scale and a 4-bit zero point;
    GPTQ's int32 g_idx per input column; embeddings, output head and norms stay fp16."""
    if not is_block_matrix(name):
        return 2 * math.prod(shape)
    rows, cols = shape
    groups = rows * math.ceil(cols / 128)
    return rows * cols // 2 + groups * 2 + math.ceil(groups / 2) + 4 * cols


def _nf4(name: str, shape: tuple[int, ...], cfg: ModelConfig) -> int:
    """bitsandbytes NF4 as transformers loads it (bnb_4bit_use_double_quant=True): 4-bit codes,
    one absmax per 64 weights quantised to 8 bits, and per 256 such absmax one fp32 scale (plus one
    fp32 offset per tensor): 4 + 8/64 + 32/16384 = 4.127 bits per weight. Embeddings, lm_head (skipped
    by transformers) and norms stay bf16."""
    if not is_block_matrix(name):
        return 2 * math.prod(shape)
    n = math.prod(shape)
    blocks = math.ceil(n / 64)
    return n // 2 + blocks + 4 * math.ceil(blocks / 256) + 4


@dataclass(frozen=True)
class WeightFormat:
    """How a format stores weights: bytes of each tensor, and the dtype the matmuls then run in."""

    name: str
    description: str
    tensor_bytes: TensorBytes
    compute: str = "bf16"


WEIGHT_FORMATS = {f.name: f for f in [
    WeightFormat("fp32", "float32, 4 bytes per weight", partial(_plain, 4), compute="fp32"),
    WeightFormat("bf16", "bfloat16 as shipped, 2 bytes per weight", partial(_plain, 2)),
    WeightFormat("fp16", "float16, 2 bytes per weight", partial(_plain, 2), compute="fp16"),
    WeightFormat("int8", "ours: int8 block matrices + fp32 scale per output row", _int8_per_channel),
    WeightFormat("int4-g128", "GPTQ/AWQ-like 4-bit, fp16 scale + 4-bit zero per 128", _int4_group128, compute="fp16"),
    WeightFormat("nf4", "bitsandbytes NF4, absmax per 64, double-quantised", _nf4),
] + [WeightFormat(f"gguf-{t.lower()}", f"llama.cpp GGUF {t}", partial(gguf_tensor_bytes, t)) for t in GGUF_FILE_TYPES]}

def weight_format(name: str) -> WeightFormat:
    """Look a format up by name, case-insensitively ("Q4_K_M" and "gguf-q4_k_m" both work)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)                                     # float32 -> fp32, as everywhere
    if f"gguf-{key}" in WEIGHT_FORMATS:
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
