"""Reading and writing the safetensors format with plain file reads, one tensor at a time.

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets) and the raw bytes. Reading each tensor straight into its own buffer keeps loading at
one copy of the weights; nothing is ever unpickled.

Why not the safetensors library: safe_open maps the file and get_tensor copies out of the mapping, so
the mapped pages stay resident beside the copies, and filling a model's parameters through it peaks
near twice the weights' size, where this reader stays near one copy (measured on a 7B-shaped bf16
checkpoint cut to 4 layers). The library remains the tests' reference reader.
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


# No real checkpoint's header comes near this (Mistral 7B's is 25 KB); a larger claim is damage.
MAX_HEADER_BYTES = 100_000_000
REDOWNLOAD = "the file is damaged or not safetensors: re-download it"


def _unique_keys(pairs: list[tuple]) -> dict:
    """A JSON object as a dict, refusing a repeated key (json.loads would silently keep the last)."""
    table = dict(pairs)
    if len(table) != len(pairs):
        repeated = sorted({k for k, _ in pairs if sum(1 for k2, _ in pairs if k2 == k) > 1})
        raise ValueError(f"repeated key(s) {repeated[:3]}")
    return table


def _is_count(x) -> bool:
    """A non-negative JSON integer (bool is an int in Python, but not in a shape)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class SafetensorsFile:
    """The header of one .safetensors file, validated against its size, and reads of its tensors.

    Every check runs before a byte of weights is read, and a hostile header (deep nesting, wrong
    types, negative or overlapping offsets, a header length larger than the file) is a ValueError
    naming the file, never a crash inside json or a read of the wrong bytes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{self.path} is {size} bytes, too short for a safetensors file; re-download it")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError(f"{self.path}: header length {n} does not fit in a {size}-byte file; "
                                 "the file is truncated or not safetensors: re-download it")
            if n > MAX_HEADER_BYTES:
                self._refuse(f"it claims a header of {n:,} bytes, more than any checkpoint's ({MAX_HEADER_BYTES:,})")
            header = self._parse(f.read(n))
        self.metadata = self._check_metadata(header.pop("__metadata__", {}))
        self.data_start = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            self.entries[name] = self._check_entry(name, info)
        self._check_offsets(size)

    def _refuse(self, problem: str):
        raise ValueError(f"{self.path}: {problem}; {REDOWNLOAD}")

    def _parse(self, raw: bytes) -> dict:
        try:
            header = json.loads(raw, object_pairs_hook=_unique_keys)
        except RecursionError:
            self._refuse("the header nests JSON too deeply to be a name -> tensor table")
        except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
            self._refuse(f"the header is not valid JSON ({str(err)[:200]})")
        if not isinstance(header, dict):
            self._refuse(f"the header is JSON but not a name -> tensor table (a {type(header).__name__})")
        return header

    def _check_metadata(self, metadata) -> dict[str, str]:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            self._refuse(f"the header's __metadata__ must map strings to strings, got {str(metadata)[:100]}")
        return metadata

    def _check_entry(self, name: str, info) -> tuple[torch.dtype, tuple[int, ...], int, int]:
        """(dtype, shape, begin, end) of one header entry, each field checked for type and range."""
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            self._refuse(f"tensor {name!r} has a malformed header entry {str(info)[:100]}: not a dict of "
                         "dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has a malformed header entry: dtype {str(dtype)[:30]!r}, "
                             f"which mistral_edu does not read (it reads {', '.join(DTYPES)}); use a bf16, fp16 "
                             "or fp32 checkpoint, or re-download this one if it should be one")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            self._refuse(f"tensor {name!r} has a malformed header entry: shape {str(shape)[:100]} is not a list "
                         "of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            self._refuse(f"tensor {name!r} has a malformed header entry: data_offsets {str(offsets)[:100]} "
                         "are not [begin, end] with 0 <= begin <= end")
        begin, end = offsets
        if end - begin != math.prod(shape) * DTYPES[dtype].itemsize:
            self._refuse(f"tensor {name!r} claims shape {tuple(shape)} but {end - begin} bytes")
        return DTYPES[dtype], tuple(shape), begin, end

    def _check_offsets(self, size: int) -> None:
        """The tensors tile the data exactly, as the format requires: no overlap, no gap, nothing after."""
        spans = sorted((begin, end, name) for name, (_, _, begin, end) in self.entries.items())
        last_end = max((end for _, end, _ in spans), default=0)
        if self.data_start + last_end > size:
            name = next(name for _, end, name in spans if end == last_end)
            raise ValueError(f"{self.path} is truncated: tensor {name!r} ends at byte {self.data_start + last_end} "
                             f"but the file has {size} bytes; re-download it")
        expected, previous = 0, None
        for begin, end, name in spans:
            if begin < expected:
                self._refuse(f"tensors {previous!r} and {name!r} overlap (bytes {begin}..{expected})")
            if begin > expected:
                self._refuse(f"bytes {expected}..{begin} of the data belong to no tensor (before {name!r})")
            expected, previous = end, name
        if self.data_start + expected != size:
            self._refuse(f"{size - self.data_start - expected} bytes follow the last tensor")

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def nbytes(self, name: str) -> int:
        """Bytes of the tensor's data in the file (what reading it costs; a load's progress counts these)."""
        _, _, begin, end = self.entries[name]
        return end - begin

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
        nbytes = math.prod(shape) * dtype.itemsize
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
