"""Int8 weight-only quantisation in plain PyTorch: half the bytes of bf16 for the block matrices.

Each output row of a weight matrix gets its own scale, absmax / 127, and its weights are stored as
round(w / scale) in int8. The matmul multiplies by the int8 matrix and applies the scales to its
output: x W^T * s equals x (W * s)^T because a row's scale multiplies one output. A per-row scale
suits these matrices: rows differ in size far more than weights within a row. Embeddings and the
output head stay in the compute dtype (a lookup, and the logits' precision).

No forward pass builds a float copy of a whole int8 matrix (that copy would cost more memory and
time than the int8 saves). int8_linear picks one of two ways to multiply:

- on the CPU, in bf16, for a few rows (decoding one token): PyTorch's weight-only int8 kernel
  `torch.ops.aten._weight_int8pack_mm`, which reads the int8 bytes directly. It is a matrix-vector
  kernel: fast for one row, its time grows with every row, and in fp32 or fp16 it is slower than the
  alternative (benchmarks/cpu_laptop.py measures it).
- everywhere else (many rows, fp32, a GPU): a block of ROWS_PER_CHUNK output rows at a time is
  converted to the activations' dtype and multiplied, so the float copy that exists is one block
  (29 MB for the 7B's largest matrix in bf16), never the matrix. On a GPU this is the only path:
  PyTorch has no weight-only int8 matmul there that takes this layout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .names import is_block_matrix
from .progress import progress

ROWS_PER_CHUNK = 1024
# Up to this many activation rows, the CPU's int8 kernel beats converting the matrix block by block.
INT8_KERNEL_MAX_ROWS = 4


def quantize_int8(weight: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weights, float32 scale per output row) of a (out, in) matrix, a chunk of rows at a time.

    out: an (int8 matrix, scales) pair to fill instead of allocating one (see empty_int8_group).
    """
    if weight.dim() != 2:
        raise ValueError(f"int8 quantisation takes a 2-D (out, in) matrix, got shape {tuple(weight.shape)}")
    if out is None:
        out = (torch.empty(weight.shape, dtype=torch.int8, device=weight.device),     # (out, in)
               torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device))  # (out,)
    q, scale = out
    for start in range(0, weight.shape[0], ROWS_PER_CHUNK):
        rows = weight[start:start + ROWS_PER_CHUNK].to(torch.float32, copy=True)       # (chunk, in), ours to scale
        s = torch.linalg.vector_norm(rows, float("inf"), dim=1).clamp_min(1e-12) / 127  # (chunk,) absmax / 127
        q[start:start + ROWS_PER_CHUNK] = rows.div_(s[:, None]).round_().clamp_(-127, 127)
        scale[start:start + ROWS_PER_CHUNK] = s
    return q, scale


def uses_int8_kernel(x: torch.Tensor, n_rows: int) -> bool:
    """Whether int8_linear multiplies with the CPU's int8 kernel: bf16 activations of a few rows on the CPU."""
    return x.device.type == "cpu" and x.dtype == torch.bfloat16 and n_rows <= INT8_KERNEL_MAX_ROWS


def int8_linear(x: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x W^T for W = weight_int8 * scale[:, None], without ever holding W in a float dtype.

    Both ways round x W_int8^T to x's dtype before scaling by the float32 scales, the arithmetic the
    int8 error bound in the tests was set for.
    """
    rows = x.reshape(-1, x.shape[-1])                                       # (tokens, in)
    out_features = weight_int8.shape[0]
    if uses_int8_kernel(x, rows.shape[0]):
        unit = torch.ones(out_features, dtype=x.dtype, device=x.device)     # (out,) scales applied below, in fp32
        y = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), weight_int8, unit)  # (tokens, out)
    else:
        y = torch.empty(rows.shape[0], out_features, dtype=x.dtype, device=x.device)  # (tokens, out)
        for start in range(0, out_features, ROWS_PER_CHUNK):
            block = weight_int8[start:start + ROWS_PER_CHUNK].to(x.dtype)   # (chunk, in): one block in float
            y[:, start:start + ROWS_PER_CHUNK] = F.linear(rows, block)      # (tokens, chunk)
    return (y * scale).to(x.dtype).reshape(*x.shape[:-1], out_features)    # (..., out)


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
        """The matrix this layer multiplies by, in a float dtype (a full copy: for inspection, not for forward)."""
        return (self.weight_int8.float() * self.scale[:, None]).to(dtype)  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.weight_int8, self.scale)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row scales"


def empty_int8_group(linears: list[nn.Module], device) -> list[Int8Linear]:
    """Unfilled Int8Linear layers for linears that read the same input, stored as fuse_projections lays them out.

    Their int8 rows are consecutive rows of one tensor, and so are their scales. Why load_model
    allocates them all before reading a byte: the C allocator keeps mid-sized blocks (up to 32 MB) in
    one heap that only shrinks from its top. Allocated one by one between the transient tensors of
    reading and quantising, the persistent int8 matrices and scales land in the holes those leave,
    split them, and the heap grows by the pieces: on the 7B shape it held 6.4 GB for 1.3 GB of such
    tensors, a 12.9 GB peak instead of 7.8 (a first run of benchmarks/cpu_laptop.py, before this), and how much
    varied from run to run with the allocator's state. Allocated first, they sit below every
    transient, whose memory is then returned as the heap's top shrinks.
    """
    rows = sum(m.out_features for m in linears)
    q = torch.empty(rows, linears[0].in_features, dtype=torch.int8, device=device)  # (sum of outputs, in)
    scale = torch.empty(rows, dtype=torch.float32, device=device)                  # (sum of outputs,)
    layers, start = [], 0
    for m in linears:
        layers.append(Int8Linear(q[start:start + m.out_features], scale[start:start + m.out_features]))
        start += m.out_features
    return layers


def set_int8(model: nn.Module, name: str, weight: torch.Tensor) -> None:
    """Quantise the weight of parameter `name` (e.g. "layers.0.attention.wq.weight") into its module.

    An Int8Linear already there (allocated by empty_int8_group) is filled; a Linear is replaced.
    """
    module_name = name.removesuffix(".weight")
    current = model.get_submodule(module_name)
    if isinstance(current, Int8Linear):
        quantize_int8(weight, out=(current.weight_int8, current.scale))
        return
    parent_name, _, leaf = module_name.rpartition(".")
    setattr(model.get_submodule(parent_name), leaf, Int8Linear.from_weight(weight))


def quantize_model(model: nn.Module, verbose: bool = True) -> nn.Module:
    """Quantise every block matrix (wq, wk, wv, wo, w1, w2, w3) of a loaded model in place.

    A bar counts the matrices when it takes a while (a 7B: about a minute on two cores); verbose=False hides it.
    """
    matrices = [(name, p) for name, p in model.named_parameters() if is_block_matrix(name)]
    with progress(len(matrices), "quantising to int8", unit="matrix", verbose=verbose) as bar:
        for name, p in matrices:
            set_int8(model, name, p.detach())
            bar.update(1)
    return model


@torch.no_grad()
def compare_logits(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    """Max |difference| of logits, the same relative to the reference's spread, and top-1 agreement."""
    reference, candidate = reference.float(), candidate.float()
    diff = (reference - candidate).abs()
    agree = (reference.argmax(-1) == candidate.argmax(-1)).float().mean()
    return {"max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "reference_logit_std": float(reference.std()), "top1_agreement": float(agree)}
