"""The logit lens: read the residual stream after each layer as if it were the last one.

Each layer's residual stream goes through the model's own final RMSNorm and output head (nostalgebraist
2020). Where the prediction becomes right, and what the model "thought" before, shows which layers do
the work. The last row is exactly the model's own output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hooks import check_index
from .tokens import as_sequence


@dataclass
class LogitLens:
    """Logits of every residual stream read through the final norm and head.

    rows: "embed", then "layer 0" .. "layer N-1" (the stream after each block); logits is
    (rows, positions, vocab) in float32; target is the token whose probability target_probs follows.
    """

    rows: list[str]
    positions: list[int]
    logits: torch.Tensor
    target: int | None = None

    @property
    def probs(self) -> torch.Tensor:
        """(rows, positions, vocab) softmax of the logits."""
        return self.logits.softmax(-1)

    def top(self, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """(probs, ids), each (rows, positions, k): the k likeliest tokens of every row and position."""
        return self.probs.topk(k, dim=-1)

    @property
    def target_probs(self) -> torch.Tensor:
        """(rows, positions): the probability of the target token at every row and position."""
        if self.target is None:
            raise ValueError("no target was given: call logit_lens(..., target=token_id)")
        return self.probs[..., self.target]


@torch.no_grad()
def logit_lens(model, tokens, positions=None, target: int | None = None) -> LogitLens:
    """Read hook_embed and every layer's hook_resid_post through model.norm and model.output.

    tokens: one sequence (list of ids or (1, seq)); positions: an int, a list, or None for all.
    """
    tokens = as_sequence(model, tokens)
    seq = tokens.shape[1]
    if positions is None:
        positions = list(range(seq))
    elif isinstance(positions, int):
        positions = [positions]
    positions = [check_index(p, seq, "position", "the sequence") for p in positions]
    if target is not None and not 0 <= target < model.cfg.vocab_size:
        raise ValueError(f"target {target} is not a token id (0..{model.cfg.vocab_size - 1})")
    names = ["hook_embed"] + [f"layers.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names=names)
    streams = torch.stack([cache[name][0, positions] for name in names])          # (rows, positions, dim)
    logits = model.output(model.norm(streams)).float()                            # (rows, positions, vocab)
    rows = ["embed"] + [f"layer {i}" for i in range(model.cfg.n_layers)]
    return LogitLens(rows, positions, logits, target)
