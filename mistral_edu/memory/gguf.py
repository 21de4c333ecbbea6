"""llama.cpp's GGUF file types: which ggml type each tensor gets, and the bytes of each type's blocks.

A GGUF "file type" such as Q4_K_M is a mix: most tensors take the base type (Q4_K), some sensitive
ones more bits (attn_v and ffn_down of chosen layers, the output head). The choice follows
`llama_tensor_get_type` in llama.cpp's src/llama-quant.cpp at commit 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714
(ggml-org/llama.cpp), for a dense model with grouped-query attention and no importance matrix, which is
how the common files of Mistral-7B-Instruct-v0.2 are made. The rules changed over time: Q2_K's most
(files made before January 2024, e.g. with commit 8a7b2fa, kept more tensors at Q3_K and came out near
3.08 GB instead of 2.72 GB).
"""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..names import layer_of
from .parameters import component_of, tensor_shapes

# ggml block layouts from ggml-common.h: (weights per block, bytes per block).
# 32-weight blocks: Q8_0 = fp16 scale + 32 int8 (34 B, 8.5 bits per weight); Q4_0 = fp16 scale + 16 B of
# nibbles (18 B, 4.5 bpw); Q4_1 adds an fp16 minimum (20 B); Q5_0 = Q4_0 + 4 B of fifth bits (22 B, 5.5 bpw);
# Q5_1 = Q5_0 + fp16 minimum (24 B). K-quants use 256-weight super-blocks: Q2_K = 16 B of 4-bit scales and
# minimums + 64 B of 2-bit weights + fp16 d and dmin (84 B, 2.625 bpw); Q3_K = 32 B high bits + 64 B low bits
# + 12 B scales + fp16 d (110 B, 3.4375 bpw); Q4_K 144 B (4.5 bpw); Q5_K 176 B (5.5 bpw); Q6_K 210 B (6.5625 bpw).
GGML_BLOCKS = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
               "Q5_0": (32, 22), "Q5_1": (32, 24), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
               "Q5_K": (256, 176), "Q6_K": (256, 210)}

# Each file type and the ggml type most of its tensors get (llama_model_quantize_impl's default_type).
GGUF_FILE_TYPES = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q5_0": "Q5_0",
                   "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_0": "Q4_0", "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K",
                   "Q3_K_S": "Q3_K", "Q2_K": "Q2_K"}

# tensor_type_fallback: a row length that is not a multiple of the block needs a 32-block type.
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# Published sizes of Mistral-7B-Instruct-v0.2 GGUF files, in GB = 1e9 bytes, as Hugging Face lists them
# (rounded to 0.01 GB). TheBloke's conversion (https://huggingface.co/TheBloke/Mistral-7B-Instruct-v0.2-GGUF,
# llama.cpp commit 8a7b2fa, December 2023), except Q2_K, whose rules changed since: 2.72 GB is the
# Q2_K of a conversion with a 2024 llama.cpp (https://huggingface.co/RichardErkhov/mistralai_-_Mistral-7B-Instruct-v0.2-gguf).
PUBLISHED_GGUF_GB = {"Q8_0": 7.70, "Q6_K": 5.94, "Q5_K_M": 5.13, "Q5_K_S": 5.00, "Q5_0": 5.00, "Q4_K_M": 4.37,
                     "Q4_K_S": 4.14, "Q4_0": 4.11, "Q3_K_L": 3.82, "Q3_K_M": 3.52, "Q3_K_S": 3.16, "Q2_K": 2.72}


def _use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits: the first and last eighth, and every third between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def _attn_v_type(file_type: str, layer: int, cfg: ModelConfig) -> str | None:
    """attn_v (our wv): small under GQA and sensitive, so most mixes give it more bits."""
    if file_type == "Q2_K":
        return "Q4_K" if cfg.n_heads // cfg.n_kv_heads >= 4 else "Q3_K"
    if file_type == "Q3_K_M":
        return "Q5_K" if layer < 2 else "Q4_K"
    if file_type == "Q3_K_L":
        return "Q5_K"
    if file_type in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, cfg.n_layers):
        return "Q6_K"
    if file_type == "Q4_K_S" and layer < 4:
        return "Q5_K"
    return None


def _ffn_down_type(file_type: str, layer: int, cfg: ModelConfig) -> str | None:
    """ffn_down (our w2): the feed-forward's output, the tensor whose errors hurt most."""
    n = cfg.n_layers
    if file_type == "Q2_K":
        return "Q3_K"
    if file_type == "Q3_K_M":
        return "Q5_K" if layer < n // 16 else "Q4_K"
    if file_type == "Q3_K_L":
        return "Q5_K"
    if file_type in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
        return "Q6_K"
    if file_type == "Q4_K_S" and layer < n // 8:
        return "Q5_K"
    return None


def _attn_output_type(file_type: str) -> str | None:
    """attn_output (our wo): one step up in the low-bit mixes."""
    return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(file_type)


def gguf_tensor_type(file_type: str, name: str, shape: tuple[int, ...], cfg: ModelConfig) -> str:
    """The ggml type llama.cpp gives one tensor (our consolidated name) in a file of `file_type`.

    1-D tensors (the norms) stay F32; output.weight gets Q6_K unless the file is Q8_0; attn_v, ffn_down
    and attn_output follow the mix's rules above; every other matrix takes the base type. A row length
    that is not a multiple of the type's block falls back to a 32-block type, or to F16 if that does not fit either.
    """
    if file_type not in GGUF_FILE_TYPES:
        raise ValueError(f"unknown GGUF file type {file_type!r}; known: {', '.join(GGUF_FILE_TYPES)}")
    if len(shape) == 1:
        return "F32"
    base = GGUF_FILE_TYPES[file_type]
    part, layer = component_of(name), layer_of(name)
    if part == "output":
        kind = "Q8_0" if base == "Q8_0" or shape[-1] % GGML_BLOCKS[base][0] else "Q6_K"
    elif part == "attention.wv":
        kind = _attn_v_type(file_type, layer, cfg) or base
    elif part == "feed_forward.w2":
        kind = _ffn_down_type(file_type, layer, cfg) or base
    elif part == "attention.wo":
        kind = _attn_output_type(file_type) or base
    else:
        kind = base
    if shape[-1] % GGML_BLOCKS[kind][0]:
        kind = _FALLBACK.get(kind, "F16")
    return kind if shape[-1] % GGML_BLOCKS[kind][0] == 0 else "F16"


def gguf_tensor_bytes(file_type: str, name: str, shape: tuple[int, ...], cfg: ModelConfig) -> int:
    """Bytes of one tensor in a GGUF file: whole blocks of its ggml type."""
    per_block, block_bytes = GGML_BLOCKS[gguf_tensor_type(file_type, name, shape, cfg)]
    return math.ceil(math.prod(shape) / per_block) * block_bytes


def gguf_type_counts(cfg: ModelConfig, file_type: str) -> dict[str, int]:
    """How many parameters of a GGUF file get each ggml type (to see a K-quant mix)."""
    counts: dict[str, int] = {}
    for name, shape in tensor_shapes(cfg).items():
        kind = gguf_tensor_type(file_type, name, shape, cfg)
        counts[kind] = counts.get(kind, 0) + math.prod(shape)
    return counts
