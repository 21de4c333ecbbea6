"""int8 in forward passes: the int8 bytes are multiplied directly, no float copy of a matrix is built,
and int8 models take generate's fast path with the plain path's tokens."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import mistral_edu as me
from mistral_edu.int8 import INT8_KERNEL_MAX_ROWS, Int8Linear, int8_linear, quantize_model, uses_int8_kernel
from mistral_edu.generation import FastDecoder, fast_path_applies, fuse_projections
from mistral_edu.generation.fusion import fused_weight, is_fused
from mistral_edu.model import projection_groups

from conftest import randomize_, small_config


class LargestFloatTensor(TorchDispatchMode):
    """Records the most elements of any floating-point tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        return out


def int8_model(dtype: torch.dtype) -> me.Transformer:
    model = randomize_(me.Transformer(small_config()), seed=3).to(dtype).eval().requires_grad_(False)
    return quantize_model(model)


def quantized(out_features: int, in_features: int, seed: int = 0) -> tuple[torch.Tensor, Int8Linear]:
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed)) * 0.02
    return w, Int8Linear.from_weight(w)


@pytest.mark.parametrize("rows", [1, INT8_KERNEL_MAX_ROWS, INT8_KERNEL_MAX_ROWS + 3, 40])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int8_linear_is_the_matmul_with_the_dequantised_weight(rows, dtype):
    _, layer = quantized(2500, 256)           # more output rows than one conversion block
    x = torch.randn(rows, 256, generator=torch.Generator().manual_seed(1)).to(dtype)
    expected = F.linear(x.float(), layer.dequantized())
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2 * float(expected.abs().max())
    assert torch.allclose(layer(x).float(), expected, atol=tolerance)
    assert layer(x).dtype == dtype


def test_the_cpu_kernel_serves_bf16_decode_steps_only():
    one_row = torch.zeros(1, 1, 8, dtype=torch.bfloat16)
    assert uses_int8_kernel(one_row, 1)
    assert not uses_int8_kernel(one_row, INT8_KERNEL_MAX_ROWS + 1)      # a prompt: block by block
    assert not uses_int8_kernel(one_row.float(), 1)                      # fp32: the kernel is slow there


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rows", [1, 64])
def test_no_forward_builds_a_float_copy_of_a_matrix(dtype, rows):
    _, layer = quantized(4096, 512)
    x = torch.randn(rows, 512).to(dtype)
    with LargestFloatTensor() as seen:
        layer(x)
    assert seen.largest < layer.weight_int8.numel() // 2, "a float copy of (most of) the int8 matrix was built"


def test_a_whole_int8_model_never_holds_a_float_block_matrix():
    """The plain path's prompt and decode steps, and the fast path's decode steps (its prefill's causal
    mask is a tensor subclass that a dispatch mode cannot watch; its matmuls are the same int8_linear)."""
    model = int8_model(torch.bfloat16)
    largest_matrix = max(m.weight_int8.numel() for m in model.modules() if isinstance(m, Int8Linear))
    allowed = max(model.cfg.vocab_size * model.cfg.dim, largest_matrix // 4)   # the head stays float by design
    with LargestFloatTensor() as seen:
        me.generate(model, [1, 5, 9, 11], max_new_tokens=3, fast=False)
    assert seen.largest <= allowed
    decoder = FastDecoder.sized_for(fuse_projections(model), 8)
    decoder.prefill([1, 5, 9, 11])
    with LargestFloatTensor() as seen:
        decoder.decode(7)
        decoder.decode(8)
    assert seen.largest <= allowed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int8_models_take_the_fast_path_with_the_plain_paths_tokens(dtype):
    model = int8_model(dtype)
    prompt = [1, 17, 42, 7, 99, 3]
    assert fast_path_applies(model, len(prompt) + 10)
    plain = me.generate(model, prompt, max_new_tokens=10, fast=False)
    assert me.generate(model, prompt, max_new_tokens=10) == plain
    assert all(is_fused(group) for block in model.layers for group in projection_groups(block))


def test_fusing_int8_stacks_the_matrices_and_their_scales_in_place():
    model = int8_model(torch.bfloat16)
    ids = torch.tensor([[1, 17, 42, 7, 99]])
    before = model(ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_projections(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(model(ids), before)
    attn = model.layers[0].attention
    q, scale = fused_weight([attn.wq, attn.wk, attn.wv])
    assert q.dtype == torch.int8 and q.shape == (attn.wq.out_features + 2 * attn.wk.out_features, attn.wq.in_features)
    assert q.data_ptr() == attn.wq.weight_int8.data_ptr() and scale.data_ptr() == attn.wq.scale.data_ptr()
    assert torch.equal(scale[-attn.wv.out_features:], attn.wv.scale)


def test_a_group_mixing_int8_and_float_cannot_be_fused():
    model = randomize_(me.Transformer(small_config()), seed=3).eval()
    attn = model.layers[0].attention
    attn.wk = Int8Linear.from_weight(attn.wk.weight.detach())
    with pytest.raises(ValueError, match="all of one kind"):
        fuse_projections(model)


def test_int8_linear_keeps_leading_dimensions():
    _, layer = quantized(64, 32)
    x = torch.randn(2, 3, 32, dtype=torch.bfloat16)
    assert int8_linear(x, layer.weight_int8, layer.scale).shape == (2, 3, 64)


def test_int8_loading_fills_storage_allocated_up_front_in_the_fused_layout(tmp_path):
    """load_model allocates every int8 matrix before reading (int8.empty_int8_group: the C heap stays
    compact), already laid out as fuse_projections would; the numbers are quantize_model's."""
    folder = me.save_consolidated(me.load_model(device="cpu", verbose=False), tmp_path, dtype=torch.float32)
    loaded = me.load_model(folder, device="cpu", strategy="int8", verbose=False)
    assert all(is_fused(group) for block in loaded.layers for group in projection_groups(block))
    in_place = quantize_model(me.load_model(folder, device="cpu", verbose=False), verbose=False)
    ids = torch.tensor([[1, 5, 9, 300, 42]])
    assert torch.equal(loaded(ids), in_place(ids))
    assert loaded.state_dict().keys() == in_place.state_dict().keys()
