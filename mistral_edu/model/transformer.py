"""The whole model: embed, 32 blocks, final norm, output head. Names match consolidated.safetensors."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..hooks import ActivationCache, HookPoint, attached, hook_points, resolve_names
from .attention import AttentionSpan
from .block import TransformerBlock
from .rmsnorm import RMSNorm
from .rope import rope_rotations


class Transformer(nn.Module):
    """Mistral's decoder: state_dict() keys equal the tensor names of Mistral's own checkpoint."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.hook_embed = HookPoint()
        self.layers = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        for name, point in hook_points(self).items():
            point.name = name

    @property
    def device(self) -> torch.device:
        return self.output.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.output.weight.dtype

    def forward(self, tokens: torch.Tensor, cache=None, last_only: bool = False) -> torch.Tensor:
        """Token ids (batch, seq) -> float32 logits (batch, seq, vocab), or (batch, 1, vocab) if last_only.

        With a KVCache the tokens continue the cached sequence; the cache advances past them.
        """
        self.check_tokens(tokens, cache)
        seq = tokens.shape[1]
        if cache is None:
            span = AttentionSpan(0, seq, 0, seq, self.cfg.sliding_window)
        else:
            span = cache.span(seq)
        positions = torch.arange(span.q_start, span.q_start + seq, device=tokens.device)
        rotations = rope_rotations(positions, self.cfg.head_dim, self.cfg.rope_theta)  # (seq, head_dim/2)
        h = self.hook_embed(self.tok_embeddings(tokens))                             # (batch, seq, dim)
        for layer in self.layers:
            h = layer(h, rotations, span, cache)                                     # (batch, seq, dim)
        if cache is not None:
            cache.advance(seq)
        if last_only:
            h = h[:, -1:]                                                            # (batch, 1, dim)
        return self.output(self.norm(h)).float()                                     # (batch, seq, vocab)

    def check_tokens(self, tokens, cache=None) -> None:
        """Reject what would otherwise fail deep inside, or silently compute nonsense."""
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError("tokens must be an integer torch.Tensor of shape (batch, seq), e.g. "
                            "torch.tensor([ids]); got " + (str(tokens.dtype) if isinstance(tokens, torch.Tensor)
                                                            else type(tokens).__name__))
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, seq), got {tuple(tokens.shape)}; "
                             "for one sequence use tokens[None] or torch.tensor([ids])")
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(f"tokens is empty {tuple(tokens.shape)}: give at least one token (start with BOS=1)")
        start = cache.pos if cache is not None else 0
        if start + tokens.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"{start + tokens.shape[1]} positions exceed the model's context of "
                             f"{self.cfg.max_seq_len} tokens; shorten the prompt")
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.cfg.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary 0..{self.cfg.vocab_size - 1}; "
                             "was it made by a different tokenizer?")

    def hook_names(self) -> list[str]:
        """Every hook point name, in the order the forward pass reaches them."""
        return list(hook_points(self))

    def hooks(self, pairs):
        """Context manager: attach [(name_or_predicate, fn)]; fn(tensor, hook) returns a tensor or None."""
        return attached(self, pairs)

    def run_with_cache(self, tokens: torch.Tensor, names=None, **forward_kwargs):
        """Run forward and keep the activations named (a list, a predicate, or None for all)."""
        store: dict[str, torch.Tensor] = {}

        def keep(tensor, hook):
            store[hook.name] = tensor.detach()

        selected = resolve_names(hook_points(self), names)
        with self.hooks([(name, keep) for name in selected]):
            logits = self(tokens, **forward_kwargs)
        return logits, ActivationCache(store, self.cfg.n_layers)
