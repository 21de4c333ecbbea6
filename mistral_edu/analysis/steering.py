"""Activation steering: add a difference of means to the residual stream while the model runs.

The vector is the mean residual of one class of text minus the mean of the other at one layer, added
at every position: the mass-mean shift of Li et al. (2023, Inference-Time Intervention) and the
Contrastive Activation Addition family (Rimsky et al. 2023). Turner et al.'s ActAdd (2023) differs: it
takes the difference of one prompt pair position by position and adds it at the front positions only.
A hook adds `scale` times the vector at every position the forward pass computes, so during cached
generation each new token is steered once and nothing is recomputed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .next_token import token_losses

__all__ = ["UnigramClassifier", "mean_difference", "predicted_scores", "random_directions", "repetition_share",
           "steered_loss", "steering_hooks", "word_tokens"]


def mean_difference(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the rows labelled 1 minus the mean of the rows labelled 0: x (n, dim) -> (dim,)."""
    if set(labels.unique().tolist()) != {0, 1}:
        raise ValueError("mean_difference needs rows of both labels, 0 and 1")
    return x[labels == 1].float().mean(0) - x[labels == 0].float().mean(0)       # (dim,)


def steering_hooks(layer: int, vector: torch.Tensor, scale: float, point: str = "hook_resid_post") -> list:
    """[(name, fn)] for model.hooks(): adds scale * vector to layers.{layer}.{point} at every position.

    vector is (dim,), or (batch, 1, dim) to steer each row of the batch with its own vector (a random
    control per prompt, in the same forward pass). A call that sees several positions is a whole
    sequence from its start (a prompt, or windows), so its first position, BOS, is left alone: every
    text shares it, and many heads use it as a resting place, so moving it would disturb them without
    saying anything about style. A call that sees one position is a decoding step, always past BOS.
    (Feeding a prompt in chunks would break this rule.)
    """
    def add(x, hook):                                                              # x: (batch, seq, dim)
        shift = (scale * vector).to(x)                                             # (dim,) or (batch, 1, dim)
        if x.shape[1] > 1:                                                         # a prompt: skip its BOS
            return torch.cat([x[:, :1], x[:, 1:] + shift], dim=1)
        return x + shift
    return [(f"layers.{layer}.{point}", add)]


def random_directions(n: int, like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """n random directions with the norm of `like` (dim,), (n, dim): the control every steering vector needs.

    Adding any vector that large moves the stream; only what the real vector does beyond same-norm
    random ones is evidence that its direction, not its size, matters.
    """
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(n, like.shape[-1], generator=generator)                   # (n, dim)
    return random / random.norm(dim=1, keepdim=True) * like.float().norm()         # (n, dim)


@torch.no_grad()
def steered_loss(model, tokens: torch.Tensor, hooks: list = (), batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats) over tokens (windows, seq), with the hooks attached."""
    with model.hooks(list(hooks)):
        return token_losses(model, tokens, batch).double().mean().item()


@torch.no_grad()
def predicted_scores(model, tokens: torch.Tensor, log_ratio: torch.Tensor, hooks: list = (),
                     batch: int = 64) -> torch.Tensor:
    """(windows, seq) -> (windows,): the expected log_ratio (vocab,) of the model's next-token distribution,
    averaged over positions 1.. of each window, with the hooks attached.

    With a UnigramClassifier's log_ratio it asks which source the model's own predictions lean to, so an
    intervention's effect on the task is measured on the model's output, not on a probe.
    """
    scores = []
    with model.hooks(list(hooks)):
        for rows in tokens.split(batch):
            probs = model(rows.to(model.device))[:, 1:].float().softmax(-1)        # (rows, seq - 1, vocab)
            scores.append((probs @ log_ratio.to(probs)).mean(1).cpu())             # (rows,)
    return torch.cat(scores)                                                       # (windows,)


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

    def score(self, ids: list[int], keep: torch.Tensor | None = None) -> float:
        """Mean log-likelihood ratio per token, in nats: > 0 looks like label 1, < 0 like label 0.

        keep, a (vocab,) bool mask, scores only the ids it marks (e.g. word_tokens, so that a run of
        digits is not read as style); nan when no id is left.
        """
        ids = torch.tensor(ids, dtype=torch.long)
        if keep is not None:
            ids = ids[keep[ids]]
        if not len(ids):
            return math.nan
        return float(self.log_ratio[ids].mean())

    def prefix_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """(windows, seq) -> (windows, seq): at position t the mean score of tokens 1..t (BOS left out; 0 at t = 0).

        A bag of the words read so far, the context a residual after block 0 could carry at most if it
        only summed what attention brought it.
        """
        ratios = self.log_ratio[tokens[:, 1:]].cumsum(dim=1)                       # (windows, seq - 1)
        counts = torch.arange(1, tokens.shape[1], dtype=ratios.dtype)              # (seq - 1,)
        return torch.cat([torch.zeros(len(tokens), 1), ratios / counts], dim=1)    # (windows, seq)


def word_tokens(tok, vocab_size: int) -> torch.Tensor:
    """(vocab,) True for pieces that hold a letter: digits, punctuation, control and byte pieces are False."""
    pieces = [tok.id_to_piece(i) for i in range(vocab_size)]
    return torch.tensor([not p.startswith("<") and any(ch.isalpha() for ch in p) for p in pieces])


def repetition_share(ids: list[int], window: int = 4) -> float:
    """Share of tokens that repeat one of the `window` tokens before them: 0 for varied text, near 1 for a loop."""
    if len(ids) < 2:
        return 0.0
    return sum(ids[i] in ids[max(0, i - window):i] for i in range(1, len(ids))) / (len(ids) - 1)
