"""The SwiGLU feed-forward block: w2(silu(w1 x) * w3 x)."""
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..hooks import HookPoint


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up: the gate decides, per hidden unit, how much of up passes."""
    return F.silu(gate) * up                                  # (..., hidden_dim)


class FeedForward(nn.Module):
    """A gated MLP: w1 x decides how much of w3 x passes through, per hidden unit (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)  # gate
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)  # down
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)  # up
        self.hook_pre = HookPoint()         # (batch, seq, hidden_dim): w1 x, the gate before SiLU
        self.hook_pre_linear = HookPoint()  # (batch, seq, hidden_dim): w3 x
        self.hook_post = HookPoint()        # (batch, seq, hidden_dim): silu(w1 x) * w3 x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.hook_pre(self.w1(x))                      # (batch, seq, hidden_dim)
        up = self.hook_pre_linear(self.w3(x))                 # (batch, seq, hidden_dim)
        hidden = self.hook_post(swiglu(gate, up))              # (batch, seq, hidden_dim)
        return self.w2(hidden)                                # (batch, seq, dim)
