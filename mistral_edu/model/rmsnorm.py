"""RMSNorm: rescale each vector to unit root-mean-square, then apply a learned per-channel gain."""
import torch
from torch import nn

from ..hooks import HookPoint


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 as Mistral's reference does.

    bf16 has 8 bits of mantissa; squaring and averaging 4096 of them in bf16 loses the small
    components, so the statistic is taken in float32 and only the result is cast back.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()                                                  # (batch, seq, dim)
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.hook_normalized(normed.type_as(x) * self.weight)    # (batch, seq, dim)
