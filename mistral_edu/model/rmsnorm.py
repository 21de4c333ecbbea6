"""RMSNorm: rescale each vector to unit root-mean-square, then apply a learned per-channel gain."""
import torch
from torch import nn

from ..hooks import HookPoint


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight: the statistic in float32, the gain in x's dtype.

    The module below and the fast generation path both call this one function.
    """
    x32 = x.float()                                                      # (..., dim)
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)  # (..., dim)
    return normed.type_as(x) * weight                                    # (..., dim)


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
        return self.hook_normalized(rms_norm(x, self.weight, self.eps))  # (batch, seq, dim)
