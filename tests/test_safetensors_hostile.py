"""Hostile safetensors headers: each is a ValueError naming the file and saying what to do, never a crash.

Every file here is built byte by byte (8-byte length, JSON header, data), so each test says exactly
which promise of the format it breaks. A well-formed file must still load, with header keys in any order.
"""
from __future__ import annotations

import json
import os
import re
import struct

import pytest
import torch

from conftest import small_config
from mistral_edu.checkpoints import SafetensorsFile, load_model, write_safetensors
from mistral_edu.checkpoints.safetensors_io import MAX_HEADER_BYTES


def write_raw(path, header, data: bytes = b"") -> None:
    """A safetensors file with a header given as JSON-able object, or as raw bytes."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def refused(path, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": .*" + message + r".*re-download"):
        SafetensorsFile(path)


def entry(dtype="F32", shape=(2,), offsets=(0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_a_well_formed_file_in_any_header_order_loads(tmp_path):
    path = tmp_path / "ok.safetensors"
    write_raw(path, {"b": entry(offsets=(8, 16)), "__metadata__": {"format": "pt"}, "a": entry()},
              struct.pack("<4f", 1, 2, 3, 4))
    st = SafetensorsFile(path)
    assert torch.equal(st.read("a"), torch.tensor([1.0, 2.0])) and torch.equal(st.read("b"), torch.tensor([3.0, 4.0]))
    assert st.metadata == {"format": "pt"}


@pytest.mark.parametrize("header", [b"[" * 100_000, b"[" * 50_000 + b"]" * 50_000,
                                    b'{"a": ' + b"{" * 100_000])
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path, header):
    path = tmp_path / "deep.safetensors"
    write_raw(path, header)
    refused(path, "nests JSON too deeply|not valid JSON")


def test_deep_nesting_that_json_accepts_is_refused_as_not_a_table(tmp_path):
    path = tmp_path / "nested.safetensors"
    write_raw(path, b"[" * 500 + b"]" * 500)
    refused(path, r"not a name -> tensor table \(a list\)")


@pytest.mark.parametrize("info", [5, "F32", [0, 8], None, {"dtype": "F32", "shape": [2]}])
def test_an_entry_that_is_not_a_tensor_table(tmp_path, info):
    path = tmp_path / "entry.safetensors"
    write_raw(path, {"a": info}, bytes(8))
    refused(path, r"tensor 'a' has a malformed header entry .*not a dict of dtype, shape and data_offsets")


@pytest.mark.parametrize("dtype", ["FP32", "f32", "F8_E9", 4, None, ["F32"]])
def test_a_wrong_dtype_string(tmp_path, dtype):
    path = tmp_path / "dtype.safetensors"
    write_raw(path, {"a": entry(dtype=dtype)}, bytes(8))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": tensor 'a' has a malformed header entry: dtype "
                                         r".* which mistral_edu does not read \(it reads BF16, F16, F32.*\); use a "
                                         r"bf16, fp16 or fp32 checkpoint"):
        SafetensorsFile(path)


@pytest.mark.parametrize("shape", [[-2, -1], [-8], [2.0], ["2"], [True, 2], 2, None])
def test_a_shape_that_is_not_non_negative_integers(tmp_path, shape):
    """(-2, -1) has 2 elements, as many as the bytes say: only the sign check catches it."""
    path = tmp_path / "shape.safetensors"
    write_raw(path, {"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 8]}}, bytes(8))
    refused(path, r"shape .* is not a list of non-negative integers")


@pytest.mark.parametrize("offsets", [[-8, 0], [8, 0], [0], [0, 8, 16], [0.0, 8.0], ["0", "8"], [False, 8], None])
def test_offsets_that_are_not_an_ordered_pair(tmp_path, offsets):
    path = tmp_path / "offsets.safetensors"
    write_raw(path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": offsets}}, bytes(16))
    refused(path, r"data_offsets .* are not \[begin, end\] with 0 <= begin <= end")


def test_offsets_that_disagree_with_the_shape(tmp_path):
    path = tmp_path / "size.safetensors"
    write_raw(path, {"a": entry(shape=(3,), offsets=(0, 8))}, bytes(8))
    refused(path, r"tensor 'a' claims shape \(3,\) but 8 bytes")


def test_overlapping_tensors(tmp_path):
    path = tmp_path / "overlap.safetensors"
    write_raw(path, {"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))}, bytes(12))
    refused(path, r"tensors 'a' and 'b' overlap")


def test_the_same_bytes_for_two_tensors(tmp_path):
    path = tmp_path / "alias.safetensors"
    write_raw(path, {"a": entry(), "b": entry()}, bytes(8))
    refused(path, r"tensors 'a' and 'b' overlap")


def test_a_gap_between_tensors(tmp_path):
    path = tmp_path / "gap.safetensors"
    write_raw(path, {"a": entry(offsets=(0, 8)), "b": entry(offsets=(16, 24))}, bytes(24))
    refused(path, r"bytes 8\.\.16 of the data belong to no tensor")


def test_bytes_after_the_last_tensor(tmp_path):
    path = tmp_path / "tail.safetensors"
    write_raw(path, {"a": entry()}, bytes(12))
    refused(path, r"4 bytes follow the last tensor")


def test_a_repeated_tensor_name(tmp_path):
    path = tmp_path / "twice.safetensors"
    write_raw(path, b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                    b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', bytes(8))
    refused(path, r"not valid JSON \(repeated key\(s\) \['a'\]\)")


@pytest.mark.parametrize("metadata", [{"step": 3}, ["pt"], "pt"])
def test_metadata_that_is_not_strings(tmp_path, metadata):
    path = tmp_path / "meta.safetensors"
    write_raw(path, {"__metadata__": metadata, "a": entry()}, bytes(8))
    refused(path, r"__metadata__ must map strings to strings")


def test_a_header_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.safetensors"
    write_raw(path, b'{"\xe9": 1}')
    refused(path, r"not valid JSON")


def test_a_huge_header_length_in_a_file_that_large(tmp_path):
    """A sparse file as large as the claim: the length fits the file but no real header is that big."""
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1))
    os.truncate(path, MAX_HEADER_BYTES + 16)
    refused(path, r"claims a header of 100,000,001 bytes")


def test_a_header_length_of_2_to_the_64_minus_1(tmp_path):
    path = tmp_path / "max.safetensors"
    path.write_bytes(struct.pack("<Q", 2**64 - 1) + b"{}")
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": header length 18446744073709551615 does not fit "
                                         r"in a 10-byte file; .*re-download it"):
        SafetensorsFile(path)


def test_load_model_reports_a_hostile_header_before_reading_anything(make_consolidated_checkpoint):
    _, folder = make_consolidated_checkpoint(small_config())
    path = folder / "consolidated.safetensors"
    write_raw(path, b"[" * 100_000)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": the header nests JSON too deeply"):
        load_model(folder, device="cpu", verbose=False)


def test_what_the_writer_writes_passes_every_check(tmp_path):
    tensors = {"b": torch.ones(3, dtype=torch.bfloat16), "a": torch.zeros(2, 2), "empty": torch.zeros(0)}
    write_safetensors(tmp_path / "w.safetensors", tensors, {"step": 7})
    st = SafetensorsFile(tmp_path / "w.safetensors")
    assert st.metadata == {"step": "7"} and all(torch.equal(st.read(n), t) for n, t in tensors.items())
