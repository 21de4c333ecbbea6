"""Reading and writing the safetensors format with plain file reads, one tensor at a time.

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets) and the raw bytes. Reading each tensor straight into its own buffer keeps loading at
one copy of the weights; nothing is ever unpickled.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

DTYPES = {
    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


class SafetensorsFile:
    """The header of one .safetensors file, validated against its size, and reads of its tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{self.path} is {size} bytes, too short for a safetensors file; re-download it")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise ValueError(f"{self.path}: header length {n} does not fit in a {size}-byte file; "
                                 "the file is truncated or not safetensors: re-download it")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{self.path}: the header is not valid JSON ({err}); re-download the file") from err
            if not isinstance(header, dict):
                raise ValueError(f"{self.path}: the header is JSON but not a name -> tensor table; "
                                 "the file is not safetensors: re-download it")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            self.entries[name] = self._check_entry(name, info, size)

    def _check_entry(self, name, info, size):
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.path}: tensor {name!r} has a malformed header entry {info!r}") from err
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if end - begin != math.prod(shape) * itemsize:
            raise ValueError(f"{self.path}: tensor {name!r} claims shape {shape} but {end - begin} bytes")
        if self.data_start + end > size:
            raise ValueError(f"{self.path} is truncated: tensor {name!r} ends at byte {self.data_start + end} "
                             f"but the file has {size} bytes; re-download it")
        return dtype, shape, begin, end

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def read(self, name: str) -> torch.Tensor:
        """The tensor's bytes read into a fresh CPU tensor of its stored dtype and shape."""
        dtype, shape, begin, end = self.entries[name]
        raw = torch.empty(end - begin, dtype=torch.uint8)
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            got = f.readinto(raw.numpy())
        if got != end - begin:
            raise ValueError(f"{self.path}: could only read {got} of {end - begin} bytes of {name!r}; re-download it")
        return raw.view(dtype).reshape(shape)


@dataclass
class LazyTensor:
    """A tensor described now and made only when written, so a 14 GB file needs one tensor of memory."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    make: Callable[[], torch.Tensor]


def write_safetensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> None:
    """Write tensors (or LazyTensors) in safetensors layout, one tensor in memory at a time."""
    specs, shapes, offset = {}, {}, 0
    for name, t in tensors.items():
        dtype, shape = t.dtype, tuple(t.shape)
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        specs[name] = {"dtype": NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        shapes[name] = (dtype, shape)
        offset += nbytes
    header = dict(specs)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, t in tensors.items():
            tensor = t.make() if isinstance(t, LazyTensor) else t
            if (tensor.dtype, tuple(tensor.shape)) != shapes[name]:
                raise ValueError(f"{name}: promised {shapes[name]}, produced {tensor.dtype} {tuple(tensor.shape)}")
            f.write(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())
