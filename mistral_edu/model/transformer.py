"""The whole model: embed, 32 blocks, final norm, output head. Names match consolidated.safetensors."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from ..hooks import HookedRootModule, HookPoint
from .attention import AttentionSpan
from .block import TransformerBlock
from .rmsnorm import RMSNorm
from .rope import rope_rotations


@torch.no_grad()
def random_init_(model: nn.Module, seed: int = 0, std: float = 0.02, scale_residual_outputs: bool = False):
    """Fill every matrix with Normal(0, std) and every norm gain with 1, deterministically from seed,
    without touching the global RNG; so a model made with to_empty() is fully initialised too.

    scale_residual_outputs divides the std of wo and w2 (the matrices that write into the residual
    stream) by sqrt(2 * n_layers), as GPT-2 does, so the stream does not grow with depth at the start
    of training. Returns the model.
    """
    generator = torch.Generator(device=model.output.weight.device).manual_seed(seed)
    residual_std = std / math.sqrt(2 * model.cfg.n_layers) if scale_residual_outputs else std
    for name, p in model.named_parameters():
        if p.dim() == 1:
            p.fill_(1.0)
        else:
            p.normal_(0.0, residual_std if name.endswith(("wo.weight", "w2.weight")) else std, generator=generator)
    return model


class Transformer(HookedRootModule, nn.Module):
    """Mistral's decoder: state_dict() keys equal the tensor names of Mistral's own checkpoint.

    hooks(), run_with_cache() and hook_names() come from HookedRootModule (hooks/root.py).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.hook_embed = HookPoint()  # (batch, seq, dim): the token embeddings, the residual stream's start
        self.layers = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.name_hook_points()

    @property
    def device(self) -> torch.device:
        return self.output.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.output.weight.dtype

    def forward(self, tokens: torch.Tensor, cache=None, last_only: bool = False, return_hidden: bool = False,
                check_ids: bool = True) -> torch.Tensor:
        """Token ids (batch, seq) -> float32 logits (batch, seq, vocab), or (batch, 1, vocab) if last_only.

        With a KVCache the tokens continue the cached sequence; the cache advances past them.
        return_hidden: the final norm's output (batch, seq, dim) instead of the logits, for a loss
        over a part of the vocabulary. check_ids=False skips checking that every id is in the
        vocabulary, which waits for the device: generation passes it for the ids it sampled itself.
        """
        self.check_tokens(tokens, cache, check_ids)
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
        h = self.norm(h)                                                             # (batch, seq, dim)
        return h if return_hidden else self.output(h).float()                        # (batch, seq, vocab)

    def check_tokens(self, tokens, cache=None, check_ids: bool = True) -> None:
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
        if not check_ids:
            return
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.cfg.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary 0..{self.cfg.vocab_size - 1}; "
                             "was it made by a different tokenizer?")
