"""RMSNorm: rescale each vector to unit root-mean-square, then apply a learned per-channel gain."""
import torch
from torch import nn

from ..hooks import HookPoint


def rms_scale(x32: torch.Tensor, eps: float) -> torch.Tensor:
    """The divisor sqrt(mean(x^2) + eps) of each vector, from float32 input: (..., 1)."""
    return (x32.pow(2).mean(-1, keepdim=True) + eps).sqrt()              # (..., 1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight: the statistic in float32, the gain in x's dtype.

    The module below does the same arithmetic with hook points between the steps; the fast
    generation path calls this function.
    """
    x32 = x.float()                                                      # (..., dim)
    return (x32 / rms_scale(x32, eps)).type_as(x) * weight               # (..., dim)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 as Mistral's reference does.

    bf16 has 8 bits of mantissa; squaring and averaging 4096 of them in bf16 loses the small
    components, so the statistic is taken in float32 and only the result is cast back.
    hook_scale sees the divisor (float32, one per position); hook_normalized the output, after the gain.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.hook_scale = HookPoint()       # (batch, seq, 1) float32: the divisor sqrt(mean(x^2) + eps)
        self.hook_normalized = HookPoint()  # (batch, seq, dim): the output, after the gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()                                                  # (batch, seq, dim)
        scale = self.hook_scale(rms_scale(x32, self.eps))                # (batch, seq, 1)
        return self.hook_normalized((x32 / scale).type_as(x) * self.weight)  # (batch, seq, dim)
