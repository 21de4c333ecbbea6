"""Grouped-query attention: 32 query heads share 8 key/value heads (4 queries per KV head in 7B)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..hooks import HookPoint
from .rope import apply_rope


@dataclass(frozen=True)
class AttentionSpan:
    """Which keys each query may see, as ranges of absolute positions, plus the sliding window.

    Queries sit at q_start .. q_start + q_len - 1 and keys at k_start .. k_start + k_len - 1 (the
    KV cache always hands attention a contiguous run of positions). A query at position p sees keys
    at p - window < j <= p, or every j <= p without a window. The boolean (q, k) mask is built only
    on demand, so a 32k prefill never allocates a 32k x 32k matrix.
    """

    q_start: int
    q_len: int
    k_start: int
    k_len: int
    window: int | None = None

    @property
    def is_plain_causal(self) -> bool:
        """True when the mask is the ordinary lower triangle (queries and keys are the same tokens)."""
        return self._window_irrelevant and (self.q_start, self.q_len) == (self.k_start, self.k_len)

    @property
    def sees_everything(self) -> bool:
        """True when no key is hidden from any query (one decode step without a window)."""
        return self._window_irrelevant and self.q_len == 1 and self.k_start + self.k_len == self.q_start + 1

    @property
    def _window_irrelevant(self) -> bool:
        return self.window is None or self.window >= self.k_len

    def mask(self, device=None, rows=slice(None)) -> torch.Tensor:
        """Boolean (q, k): True where the query may attend to the key; rows picks some queries only."""
        q = torch.arange(self.q_start, self.q_start + self.q_len, device=device)[rows, None]  # (q, 1)
        k = torch.arange(self.k_start, self.k_start + self.k_len, device=device)[None, :]  # (1, k)
        allowed = k <= q                                                                   # (q, k)
        if self.window is not None:
            allowed = allowed & (k > q - self.window)
        return allowed


@dataclass(frozen=True)
class PatternSelection:
    """The heads and query rows a pattern hook sees, so a long context never builds every (q, k) matrix.

    heads: query head indices (None: all). rows: a slice or a list of query rows of the forward call
    (None: all; slice(-1, None): the last one). With a selection, the output still comes from the
    fused kernel for all heads, and the selected scores are computed on the side for hooks to read.
    """

    heads: tuple[int, ...] | None = None
    rows: slice | list[int] | None = None


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Give each query head its KV head: KV head g serves query heads g*n_rep .. g*n_rep + n_rep-1."""
    return x.repeat_interleave(n_rep, dim=2)                 # (batch, seq, n_kv_heads * n_rep, head_dim)


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE and grouped keys/values.

    Two paths give the same output: torch's fused scaled_dot_product_attention, which never stores
    the (q, k) scores, and an explicit one that does, taken only when a hook wants the scores or the
    pattern.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.n_rep = cfg.n_rep
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        for name in ("q", "k", "v", "rot_q", "rot_k", "attn_scores", "pattern", "z"):
            setattr(self, f"hook_{name}", HookPoint())
        self.pattern_selection: PatternSelection | None = None

    @property
    def wants_pattern(self) -> bool:
        """Whether a hook needs the materialised scores or pattern (forcing the explicit path)."""
        return bool(self.hook_attn_scores.fns or self.hook_pattern.fns)

    def forward(self, x, rotations, span: AttentionSpan, cache=None, layer: int = 0) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.hook_q(self.wq(x).view(batch, seq, self.n_heads, self.head_dim))     # (batch, seq, n_heads, head_dim)
        k = self.hook_k(self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim))  # (batch, seq, n_kv_heads, head_dim)
        v = self.hook_v(self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim))  # (batch, seq, n_kv_heads, head_dim)
        q = self.hook_rot_q(apply_rope(q, rotations))                                 # (batch, seq, n_heads, head_dim)
        k = self.hook_rot_k(apply_rope(k, rotations))                                 # (batch, seq, n_kv_heads, head_dim)
        if cache is not None:
            k, v = cache.update(layer, k, v)                                          # (batch, keys, n_kv_heads, head_dim)
        if self.wants_pattern and self.pattern_selection is None:
            z = self.explicit_attention(q, k, v, span)
        else:
            z = self.fused_attention(q, k, v, span)
            if self.wants_pattern:
                self.show_selected_pattern(q, k, span)
        z = self.hook_z(z)                                                            # (batch, seq, n_heads, head_dim)
        return self.wo(z.reshape(batch, seq, self.n_heads * self.head_dim))          # (batch, seq, dim)

    def explicit_attention(self, q, k, v, span: AttentionSpan) -> torch.Tensor:
        """softmax(q k^T / sqrt(head_dim) + mask) v, with every intermediate visible to hooks."""
        k = repeat_kv(k, self.n_rep)                                                  # (batch, keys, n_heads, head_dim)
        v = repeat_kv(v, self.n_rep)                                                  # (batch, keys, n_heads, head_dim)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)     # (batch, n_heads, q, keys)
        scores = scores.masked_fill(~span.mask(q.device), float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(F.softmax(scores.float(), dim=-1).type_as(q))     # (batch, n_heads, q, keys)
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)                            # (batch, q, n_heads, head_dim)

    def show_selected_pattern(self, q, k, span: AttentionSpan) -> None:
        """Scores and pattern of the selected heads and query rows only, for hooks that read them.

        Only len(heads) x len(rows) x keys numbers are built. The hooks may look but not replace:
        the output was already computed by the fused kernel.
        """
        selection = self.pattern_selection
        heads = list(range(self.n_heads)) if selection.heads is None else list(selection.heads)
        rows = slice(None) if selection.rows is None else selection.rows
        kv_heads = [h // self.n_rep for h in heads]
        q = q[:, rows][:, :, heads]                                                   # (batch, rows, n_sel, head_dim)
        k = k[:, :, kv_heads]                                                         # (batch, keys, n_sel, head_dim)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)     # (batch, n_sel, rows, keys)
        scores = scores.masked_fill(~span.mask(q.device, rows), float("-inf"))
        self._read_only(self.hook_attn_scores, scores)
        if self.hook_pattern.fns:
            pattern = F.softmax(scores.float(), dim=-1).type_as(q)                   # (batch, n_sel, rows, keys)
            self._read_only(self.hook_pattern, pattern)

    @staticmethod
    def _read_only(point: HookPoint, x: torch.Tensor) -> None:
        if point(x) is not x:
            raise ValueError(f"a hook on {point.name} returned a replacement, but with pattern_heads or "
                             "pattern_rows the pattern is read-only (the output comes from the fused kernel); "
                             "hook the full pattern, without a selection, to edit it")

    def fused_attention(self, q, k, v, span: AttentionSpan) -> torch.Tensor:
        """The same computation in one fused kernel that never stores the (q, keys) matrix."""
        if span.is_plain_causal:
            mask, causal = None, q.shape[1] > 1
        elif span.sees_everything:
            mask, causal = None, False
        else:
            mask, causal = span.mask(q.device), False
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),                  # (batch, heads, seq, head_dim)
            attn_mask=mask, is_causal=causal, enable_gqa=self.n_rep > 1)
        return z.transpose(1, 2)                                                      # (batch, q, n_heads, head_dim)
