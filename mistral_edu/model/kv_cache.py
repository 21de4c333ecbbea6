"""The KV cache: keys and values of past tokens, kept so each new token costs one position, not all.

Keys and values of a token never change once computed (attention is causal), so generation stores
them and feeds only the newest token through the model. The cache is allocated once for the whole
run: (layers, batch, slots, n_kv_heads, head_dim), 128 KiB per token for Mistral 7B in bf16.

With a sliding window W (v0.1) no query looks further back than W tokens, so W slots suffice: the
rolling buffer writes position p into slot p mod W, overwriting what fell out of the window.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .attention import AttentionSpan


class KVCache:
    """Preallocated per-layer keys and values; a rolling buffer when the config has a sliding window."""

    def __init__(self, cfg: ModelConfig, batch: int = 1, max_seq_len: int | None = None,
                 device=None, dtype=torch.float32):
        max_seq_len = max_seq_len or cfg.max_seq_len
        if not 0 < max_seq_len <= cfg.max_seq_len:
            raise ValueError(f"max_seq_len must be in 1..{cfg.max_seq_len} (the model's context), got {max_seq_len}")
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        self.window = cfg.sliding_window
        self.capacity = max_seq_len
        self.rolling = self.window is not None and self.window < max_seq_len
        self.slots = self.window if self.rolling else max_seq_len
        shape = (cfg.n_layers, batch, self.slots, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (layers, batch, slots, n_kv_heads, head_dim)
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (layers, batch, slots, n_kv_heads, head_dim)
        self.pos = 0

    @classmethod
    def for_model(cls, model, batch: int = 1, max_seq_len: int | None = None) -> "KVCache":
        """A cache on the model's device, in its dtype."""
        return cls(model.cfg, batch, max_seq_len, device=model.device, dtype=model.dtype)

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def nbytes(self) -> int:
        """Bytes held by keys and values together."""
        return self.k.nbytes + self.v.nbytes

    def _kept(self) -> int:
        """How many past positions attention can still read."""
        return min(self.pos, self.slots) if self.rolling else self.pos

    def span(self, n_new: int) -> AttentionSpan:
        """Positions of the next n_new queries and of the keys update() will hand them."""
        if self.pos + n_new > self.capacity:
            raise ValueError(
                f"the cache holds {self.capacity} positions; {self.pos} are used and {n_new} more were "
                f"given. Start a new cache with a larger max_seq_len (at most the model's context)")
        kept = self._kept()
        return AttentionSpan(q_start=self.pos, q_len=n_new, k_start=self.pos - kept,
                             k_len=kept + n_new, window=self.window)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new keys/values of one layer; return every key/value attention should read."""
        if k.shape[0] != self.batch:
            raise ValueError(f"the cache was made for batch {self.batch}, got a batch of {k.shape[0]}")
        n_new = k.shape[1]
        if not self.rolling:
            self.k[layer, :, self.pos:self.pos + n_new] = k
            self.v[layer, :, self.pos:self.pos + n_new] = v
            end = self.pos + n_new
            return self.k[layer, :, :end], self.v[layer, :, :end]  # (batch, end, n_kv_heads, head_dim)
        past = torch.arange(self.pos - self._kept(), self.pos, device=k.device) % self.slots
        keys = torch.cat([self.k[layer][:, past], k], dim=1)          # (batch, kept + n_new, n_kv_heads, head_dim)
        values = torch.cat([self.v[layer][:, past], v], dim=1)        # (batch, kept + n_new, n_kv_heads, head_dim)
        last = min(n_new, self.slots)
        slots = torch.arange(self.pos + n_new - last, self.pos + n_new, device=k.device) % self.slots
        self.k[layer][:, slots] = k[:, n_new - last:]
        self.v[layer][:, slots] = v[:, n_new - last:]
        return keys, values

    def advance(self, n_new: int) -> None:
        """Move past the tokens just processed (called once per forward, after every layer)."""
        self.pos += n_new
