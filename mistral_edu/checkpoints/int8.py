"""Int8 weight-only quantisation in plain PyTorch: half the bytes of bf16 for the block matrices.

Each output row of a weight matrix gets its own scale, absmax / 127, and its weights are stored as
round(w / scale) in int8. The matmul converts the int8 matrix to the activations' dtype and applies
the scales to its output: x W^T * s equals x (W * s)^T because a row's scale multiplies one output.
A per-row scale suits these matrices: rows differ in size far more than weights within a row.
Embeddings and the output head stay in the compute dtype (a lookup, and the logits' precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..names import is_block_matrix

ROWS_PER_CHUNK = 1024


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weights, float32 scale per output row) of a (out, in) matrix, a chunk of rows at a time."""
    if weight.dim() != 2:
        raise ValueError(f"int8 quantisation takes a 2-D (out, in) matrix, got shape {tuple(weight.shape)}")
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)            # (out, in)
    scale = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)  # (out,)
    for start in range(0, weight.shape[0], ROWS_PER_CHUNK):
        rows = weight[start:start + ROWS_PER_CHUNK].to(torch.float32, copy=True)       # (chunk, in), ours to scale
        s = torch.linalg.vector_norm(rows, float("inf"), dim=1).clamp_min(1e-12) / 127  # (chunk,) absmax / 127
        q[start:start + ROWS_PER_CHUNK] = rows.div_(s[:, None]).round_().clamp_(-127, 127)
        scale[start:start + ROWS_PER_CHUNK] = s
    return q, scale


class Int8Linear(nn.Module):
    """A bias-free Linear whose weight is int8 with one float32 scale per output feature."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8)  # (out, in)
        self.register_buffer("scale", scale)              # (out,)

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> "Int8Linear":
        return cls(*quantize_int8(weight))

    def dequantized(self, dtype=torch.float32) -> torch.Tensor:
        """The matrix this layer multiplies by, in a float dtype."""
        return (self.weight_int8.float() * self.scale[:, None]).to(dtype)  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_int8.to(x.dtype))     # (..., out), exact int8 values in bf16
        return (y * self.scale).to(x.dtype)               # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row scales"


def set_int8(model: nn.Module, name: str, weight: torch.Tensor) -> None:
    """Replace the Linear that owns parameter `name` (e.g. "layers.0.attention.wq.weight") by Int8Linear."""
    module_name = name.removesuffix(".weight")
    parent_name, _, leaf = module_name.rpartition(".")
    setattr(model.get_submodule(parent_name), leaf, Int8Linear.from_weight(weight))


def quantize_model(model: nn.Module) -> nn.Module:
    """Quantise every block matrix (wq, wk, wv, wo, w1, w2, w3) of a loaded model in place."""
    for name, p in list(model.named_parameters()):
        if is_block_matrix(name):
            set_int8(model, name, p.detach())
    return model


@torch.no_grad()
def compare_logits(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    """Max |difference| of logits, the same relative to the reference's spread, and top-1 agreement."""
    reference, candidate = reference.float(), candidate.float()
    diff = (reference - candidate).abs()
    agree = (reference.argmax(-1) == candidate.argmax(-1)).float().mean()
    return {"max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "reference_logit_std": float(reference.std()), "top1_agreement": float(agree)}
