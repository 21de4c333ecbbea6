"""Every spelling of a dtype that the package accepts, in one table, and the bytes of each."""
from __future__ import annotations

import torch

# Canonical names, used in the memory arithmetic and in messages, with their bytes per value.
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
           torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int8: "int8"}
# The dtypes the model can compute in.
COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _canonical(dtype) -> str | None:
    if isinstance(dtype, str):
        key = dtype.lower()
        return key if key in DTYPE_BYTES else ALIASES.get(key)
    if isinstance(dtype, torch.dtype) and "float8" in str(dtype):
        return "fp8"
    return ALIASES.get(dtype)


def dtype_name(dtype) -> str:
    """'fp32' | 'bf16' | 'fp16' | 'fp8' | 'int8' for a torch dtype or any accepted spelling; an error otherwise."""
    name = _canonical(dtype)
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)} or a torch dtype")
    return name


def parse_dtype(dtype) -> torch.dtype | None:
    """A compute dtype (float32, bfloat16 or float16) from a torch dtype or a name; None stays None."""
    if dtype is None:
        return None
    name = _canonical(dtype)
    if name in COMPUTE_DTYPES:
        return COMPUTE_DTYPES[name]
    if isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype {dtype} is not supported; use torch.float32, torch.bfloat16 or torch.float16")
    accepted = sorted(n for n in list(COMPUTE_DTYPES) + [a for a in ALIASES if isinstance(a, str)])
    raise ValueError(f"unknown dtype {dtype!r}; use one of {accepted} or a torch dtype")
