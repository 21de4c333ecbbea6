"""One pre-norm transformer block: x + attention(norm(x)), then + feed_forward(norm(.))."""
import torch
from torch import nn

from ..config import ModelConfig
from ..hooks import HookPoint
from .attention import Attention
from .feed_forward import FeedForward
from .rmsnorm import RMSNorm


class TransformerBlock(nn.Module):
    """Each sub-layer reads a normalised copy of the residual stream and adds its output back."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.hook_resid_pre = HookPoint()   # (batch, seq, dim): the residual stream entering the block
        self.hook_attn_out = HookPoint()    # (batch, seq, dim): what attention adds to it
        self.hook_resid_mid = HookPoint()   # (batch, seq, dim): the stream between the two sub-layers
        self.hook_mlp_out = HookPoint()     # (batch, seq, dim): what the feed-forward adds
        self.hook_resid_post = HookPoint()  # (batch, seq, dim): the stream leaving the block

    def forward(self, x, rotations, span, cache=None) -> torch.Tensor:
        x = self.hook_resid_pre(x)                                                    # (batch, seq, dim)
        attn_out = self.attention(self.attention_norm(x), rotations, span, cache, self.layer)
        x = self.hook_resid_mid(x + self.hook_attn_out(attn_out))                    # (batch, seq, dim)
        mlp_out = self.hook_mlp_out(self.feed_forward(self.ffn_norm(x)))              # (batch, seq, dim)
        return self.hook_resid_post(x + mlp_out)                                      # (batch, seq, dim)


def projection_groups(block: TransformerBlock) -> list[list[nn.Module]]:
    """The linears of one block that read the same input, in the order a fused matrix stacks their rows:
    wq|wk|wv and w1|w3. Loading (int8 groups) and the fast path (fused matmuls) both group by it."""
    attn, ffn = block.attention, block.feed_forward
    return [[attn.wq, attn.wk, attn.wv], [ffn.w1, ffn.w3]]
