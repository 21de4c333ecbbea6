"""The whole model: embed, 32 blocks, final norm, output head. Names match consolidated.safetensors."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from ..config import ModelConfig
from ..hooks import ActivationCache, HookPoint, attached, check_index, hook_points, resolve_names
from .attention import AttentionSpan, PatternSelection
from .block import TransformerBlock
from .rmsnorm import RMSNorm
from .rope import rope_rotations


@torch.no_grad()
def random_init_(model: nn.Module, seed: int = 0, std: float = 0.02, scale_residual_outputs: bool = False):
    """Fill every matrix with Normal(0, std), deterministically from seed, without touching the global RNG.

    scale_residual_outputs divides the std of wo and w2 (the matrices that write into the residual
    stream) by sqrt(2 * n_layers), as GPT-2 does, so the stream does not grow with depth at the start
    of training. Norm gains keep their ones. Returns the model.
    """
    generator = torch.Generator(device=model.output.weight.device).manual_seed(seed)
    residual_std = std / math.sqrt(2 * model.cfg.n_layers) if scale_residual_outputs else std
    for name, p in model.named_parameters():
        if p.dim() == 2:
            p.normal_(0.0, residual_std if name.endswith(("wo.weight", "w2.weight")) else std, generator=generator)
    return model


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

    @contextmanager
    def hooks(self, pairs, pattern_heads: dict | None = None, pattern_rows=None):
        """Context manager: attach [(name_or_predicate, fn)]; fn(tensor, hook) returns a tensor or None.

        pattern_heads ({layer: [heads]}) and pattern_rows (a slice or list of query rows) make the
        scores and pattern hooks see only those heads and rows, computed beside the fused kernel, so
        reading a few heads of a 32k context never builds 32 heads x 32k x 32k numbers. Such hooks are
        read-only; a scores or pattern hook on a layer that pattern_heads leaves out is an error.
        """
        selections = self.pattern_selections(pattern_heads, pattern_rows)
        with attached(self, pairs):
            try:
                for layer, selection in selections.items():
                    self.layers[layer].attention.pattern_selection = selection
                if pattern_heads is not None:
                    self._check_unselected_layers_unhooked(selections)
                yield self
            finally:
                for layer in selections:
                    self.layers[layer].attention.pattern_selection = None

    def pattern_selections(self, pattern_heads: dict | None, pattern_rows) -> dict[int, PatternSelection]:
        """Validate pattern_heads / pattern_rows and turn them into one PatternSelection per layer."""
        if pattern_heads is None and pattern_rows is None:
            return {}
        rows = _check_rows(pattern_rows)
        if pattern_heads is None:
            return {layer: PatternSelection(None, rows) for layer in range(self.cfg.n_layers)}
        if not isinstance(pattern_heads, dict):
            raise TypeError(f"pattern_heads must be a dict {{layer: [heads]}}, e.g. {{3: [0, 5]}}; got {pattern_heads!r}")
        selections = {}
        for layer, heads in pattern_heads.items():
            layer = check_index(layer, self.cfg.n_layers, "layer")
            heads = [heads] if isinstance(heads, int) else list(heads)
            if not heads:
                raise ValueError(f"pattern_heads[{layer}] is empty; leave the layer out instead")
            heads = tuple(check_index(h, self.cfg.n_heads, "head") for h in heads)
            selections[layer] = PatternSelection(heads, rows)
        return selections

    def _check_unselected_layers_unhooked(self, selections: dict[int, PatternSelection]) -> None:
        for i, layer in enumerate(self.layers):
            if i not in selections and layer.attention.wants_pattern:
                raise ValueError(f"layer {i} has a scores or pattern hook, but pattern_heads does not list it; "
                                 f"add it (e.g. pattern_heads={{{i}: [0]}}) or hook only the listed layers")

    def run_with_cache(self, tokens: torch.Tensor, names=None, pattern_heads: dict | None = None,
                       pattern_rows=None, device=None, **forward_kwargs):
        """Run forward and keep the activations named (a list, a predicate, or None for all).

        pattern_heads / pattern_rows: keep the scores and pattern of those heads and query rows only
        (see hooks()); with pattern_heads, layers it leaves out keep no pattern. The cache's
        pattern(layer, head) finds a head in either case. device: where to keep the captured
        tensors (e.g. "cpu" to spare GPU memory).
        """
        store: dict[str, torch.Tensor] = {}

        def keep(tensor, hook):
            store[hook.name] = tensor.detach().to(device) if device is not None else tensor.detach()

        selections = self.pattern_selections(pattern_heads, pattern_rows)
        selected = resolve_names(hook_points(self), names)
        if pattern_heads is not None and (names is None or callable(names)):
            selected = [n for n in selected if not _is_pattern_name(n) or _layer_of(n) in selections]
        head_index = {n: selections[_layer_of(n)].heads for n in selected
                      if _is_pattern_name(n) and _layer_of(n) in selections
                      and selections[_layer_of(n)].heads is not None}
        with self.hooks([(name, keep) for name in selected], pattern_heads, pattern_rows):
            logits = self(tokens, **forward_kwargs)
        return logits, ActivationCache(store, self.cfg.n_layers, head_index)


def _is_pattern_name(name: str) -> bool:
    return name.endswith(("attention.hook_pattern", "attention.hook_attn_scores"))


def _layer_of(name: str) -> int:
    return int(name.split(".")[1])


def _check_rows(rows):
    """pattern_rows as a slice or a list of ints (an int keeps its row as a length-1 axis)."""
    if rows is None or isinstance(rows, slice):
        return rows
    if isinstance(rows, int):
        return slice(rows, rows + 1 if rows != -1 else None)
    if isinstance(rows, (list, tuple, range)) and rows and all(isinstance(r, int) for r in rows):
        return list(rows)
    raise TypeError(f"pattern_rows must be a slice (e.g. slice(-1, None) for the last query), an int or a "
                    f"non-empty list of ints; got {rows!r}")
