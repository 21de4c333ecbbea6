"""Grouped-query attention: 32 query heads share 8 key/value heads (4 queries per KV head in 7B)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..hooks import HookPoint, PatternSelection, call_and_check_replaced
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
    def keys_end_with_queries(self) -> bool:
        """True when the keys run up to the last query and no window hides any: plain causal, bottom-right aligned."""
        window_irrelevant = self.window is None or self.window >= self.k_len
        return window_irrelevant and self.k_start + self.k_len == self.q_start + self.q_len

    def mask(self, device=None, rows=slice(None)) -> torch.Tensor:
        """Boolean (q, k): True where the query may attend to the key; rows picks some queries only."""
        q = torch.arange(self.q_start, self.q_start + self.q_len, device=device)[rows, None]  # (q, 1)
        k = torch.arange(self.k_start, self.k_start + self.k_len, device=device)[None, :]  # (1, k)
        allowed = k <= q                                                                   # (q, k)
        if self.window is not None:
            allowed = allowed & (k > q - self.window)
        return allowed


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Give each query head its KV head: KV head g serves query heads g*n_rep .. g*n_rep + n_rep-1."""
    return x.repeat_interleave(n_rep, dim=2)                 # (batch, seq, n_kv_heads * n_rep, head_dim)


def fused_attention(q, k, v, span: AttentionSpan) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim), masked) v in one fused kernel that never stores the (q, keys) matrix.

    Heads first, as the kernel takes them: q (batch, n_heads, q, head_dim), k and v (batch, n_kv_heads,
    keys, head_dim). The mask is given the cheapest exact way: none for one query that sees every key,
    is_causal when queries and keys are the same positions, causal_lower_right for a chunk of new queries
    after cached keys (no (q, keys) matrix, so the kernel may still be the flash one, even at 32k), and
    the explicit boolean mask only where a sliding window hides keys. The model and the fast path's
    prefill both call it.
    """
    q_len, n_heads, n_kv_heads = q.shape[2], q.shape[1], k.shape[1]
    mask, causal = None, False
    if not span.keys_end_with_queries:
        mask = span.mask(q.device)                                                     # (q, keys) bool
    elif q_len > 1 and span.q_start == span.k_start:
        causal = True
    elif q_len > 1:
        from torch.nn.attention.bias import causal_lower_right  # here, not at the top: it imports torch._dynamo (~1 s)
        mask = causal_lower_right(q_len, k.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                          enable_gqa=n_heads != n_kv_heads)           # (batch, n_heads, q, head_dim)


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE and grouped keys/values.

    The output always comes from the fused kernel (fused_attention), which never stores the (q, k)
    scores. The explicit maths (scores, pattern, mix_values) gives the same result; it runs only for
    hooks on the scores or the pattern, beside the kernel, and its result replaces the kernel's only
    when a hook replaced the scores or the pattern (attention_through_hooks).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.n_rep = cfg.n_rep
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.hook_q = HookPoint()            # (batch, seq, n_heads, head_dim)
        self.hook_k = HookPoint()            # (batch, seq, n_kv_heads, head_dim)
        self.hook_v = HookPoint()            # (batch, seq, n_kv_heads, head_dim)
        self.hook_rot_q = HookPoint()        # (batch, seq, n_heads, head_dim), after RoPE
        self.hook_rot_k = HookPoint()        # (batch, seq, n_kv_heads, head_dim), after RoPE
        self.hook_attn_scores = HookPoint()  # (batch, n_heads, q, keys), scaled and masked, before softmax
        self.hook_pattern = HookPoint()      # (batch, n_heads, q, keys)
        self.hook_z = HookPoint()            # (batch, seq, n_heads, head_dim), before wo
        # Set by model.hooks(pattern_heads=..., pattern_rows=...): the heads and rows the two hooks above see.
        self.pattern_selection: PatternSelection | None = None

    def forward(self, x, rotations, span: AttentionSpan, cache=None, layer: int = 0) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.hook_q(self.wq(x).view(batch, seq, self.n_heads, self.head_dim))     # (batch, seq, n_heads, head_dim)
        k = self.hook_k(self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim))  # (batch, seq, n_kv_heads, head_dim)
        v = self.hook_v(self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim))  # (batch, seq, n_kv_heads, head_dim)
        q = self.hook_rot_q(apply_rope(q, rotations))                                 # (batch, seq, n_heads, head_dim)
        k = self.hook_rot_k(apply_rope(k, rotations))                                 # (batch, seq, n_kv_heads, head_dim)
        if cache is not None:
            k, v = cache.update(layer, k, v)                                          # (batch, keys, n_kv_heads, head_dim)
        z = fused_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), span).transpose(1, 2)
        # z: (batch, seq, n_heads, head_dim)
        if self.hook_attn_scores.active or self.hook_pattern.active:
            z = self.attention_through_hooks(q, k, v, span, z)                        # (batch, seq, n_heads, head_dim)
        z = self.hook_z(z)                                                            # (batch, seq, n_heads, head_dim)
        return self.wo(z.reshape(batch, seq, self.n_heads * self.head_dim))          # (batch, seq, dim)

    def attention_through_hooks(self, q, k, v, span: AttentionSpan, z: torch.Tensor) -> torch.Tensor:
        """The explicit path, shown to the scores and pattern hooks; the kernel's z unless a hook replaced one.

        The pattern is computed only if a pattern hook wants it or the scores were replaced, and the
        output is recomputed from them only if a hook replaced them (returned another tensor or edited
        in place). A pattern_selection builds only its heads and rows, for reading.
        """
        selection = self.pattern_selection
        heads, rows = (None, slice(None)) if selection is None else (selection.heads, selection.row_index)
        read_only = selection is not None
        scores = self.scores(q, k, span, heads, rows)                                 # (batch, n_sel, rows, keys)
        scores, replaced = call_and_check_replaced(self.hook_attn_scores, scores, read_only)
        if not (replaced or self.hook_pattern.active):
            return z
        pattern = self.pattern(scores)                                                # (batch, n_sel, rows, keys)
        pattern, replaced_pattern = call_and_check_replaced(self.hook_pattern, pattern, read_only)
        if not (replaced or replaced_pattern):
            return z
        return self.mix_values(pattern, v)                                            # (batch, q, n_heads, head_dim)

    def scores(self, q, k, span: AttentionSpan, heads=None, rows=slice(None)) -> torch.Tensor:
        """q k^T / sqrt(head_dim), -inf where the mask hides a key; query head h reads KV head h // n_rep.

        heads and rows pick some query heads and rows only (all by default), so a hook can read a few
        heads of a long context without building every (q, k) matrix.
        """
        q = q[:, rows]                                                                # (batch, rows, n_heads, head_dim)
        if heads is None:
            k = repeat_kv(k, self.n_rep)                                              # (batch, keys, n_heads, head_dim)
        else:
            q = q[:, :, list(heads)]                                                  # (batch, rows, n_sel, head_dim)
            k = k[:, :, [h // self.n_rep for h in heads]]                             # (batch, keys, n_sel, head_dim)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)     # (batch, n_sel, rows, keys)
        return scores.masked_fill(~span.mask(q.device, rows), float("-inf"))

    @staticmethod
    def pattern(scores: torch.Tensor) -> torch.Tensor:
        """softmax over the keys, in float32 (a row of bf16 exponentials would not sum to 1), cast back."""
        return F.softmax(scores.float(), dim=-1).type_as(scores)                      # (batch, n_sel, rows, keys)

    def mix_values(self, pattern, v) -> torch.Tensor:
        """Each query's output: its pattern's weighted sum of the values, every query head."""
        v = repeat_kv(v, self.n_rep)                                                  # (batch, keys, n_heads, head_dim)
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)                            # (batch, q, n_heads, head_dim)

