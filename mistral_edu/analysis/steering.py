"""Activation steering: add a difference of means to the residual stream while the model runs.

The vector is the mean residual of one class of text minus the mean of the other at one layer
(Turner et al. 2023 add the difference of two prompts' activations; averaging over many tokens is
the same idea with less noise). A hook adds `scale` times it at every position the forward pass
computes, so during cached generation each new token is steered once and nothing is recomputed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["UnigramClassifier", "mean_difference", "steered_loss", "steering_hooks"]


def mean_difference(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the rows labelled 1 minus the mean of the rows labelled 0: x (n, dim) -> (dim,)."""
    if set(labels.unique().tolist()) != {0, 1}:
        raise ValueError("mean_difference needs rows of both labels, 0 and 1")
    return x[labels == 1].float().mean(0) - x[labels == 0].float().mean(0)       # (dim,)


def steering_hooks(layer: int, vector: torch.Tensor, scale: float, point: str = "hook_resid_post") -> list:
    """[(name, fn)] for model.hooks(): adds scale * vector to layers.{layer}.{point} at every position.

    Position 0 of a sequence that starts at BOS is left alone: every text shares it, and many heads
    use it as a resting place, so moving it would disturb them without saying anything about style.
    """
    def add(x, hook):                                                              # x: (batch, seq, dim)
        shift = (scale * vector).to(x)                                             # (dim,)
        if x.shape[1] > 1:                                                         # a prompt: skip its BOS
            return torch.cat([x[:, :1], x[:, 1:] + shift], dim=1)
        return x + shift
    return [(f"layers.{layer}.{point}", add)]


@torch.no_grad()
def steered_loss(model, tokens: torch.Tensor, hooks: list = (), batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats) over tokens (windows, seq), with the hooks attached."""
    total, count = 0.0, 0
    with model.hooks(list(hooks)):
        for rows in tokens.split(batch):
            rows = rows.to(model.device)
            logits = model(rows)[:, :-1].float()                                   # (rows, seq - 1, vocab)
            total += float(F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum"))
            count += rows[:, 1:].numel()
    return total / count


@dataclass
class UnigramClassifier:
    """Which source does a text look like? Per-token log-likelihood ratio of two smoothed unigram models.

    Deliberately blind to the model: it counts tokens, so a rising score means the generated text
    uses more of the positive source's vocabulary, whatever the residual stream did.
    """

    log_ratio: torch.Tensor   # (vocab,) log p(token | label 1) - log p(token | label 0)

    @classmethod
    def fit(cls, ids: torch.Tensor, labels: torch.Tensor, vocab_size: int, alpha: float = 0.5) -> "UnigramClassifier":
        """Count ids (n,) per label (n,), add alpha to every count (unseen tokens stay finite)."""
        counts = torch.stack([torch.bincount(ids[labels == c], minlength=vocab_size).double() + alpha
                              for c in (0, 1)])                                    # (2, vocab)
        log_p = (counts / counts.sum(1, keepdim=True)).log()                       # (2, vocab)
        return cls((log_p[1] - log_p[0]).float())

    def score(self, ids: list[int]) -> float:
        """Mean log-likelihood ratio per token, in nats: > 0 looks like label 1, < 0 like label 0."""
        if not ids:
            return math.nan
        return float(self.log_ratio[torch.tensor(ids)].mean())
