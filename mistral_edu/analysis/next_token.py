"""The next-token distribution on held-out text, with fixed definitions: loss, reach, and where the mass goes.

A small model's card should say how far into a sequence it stays a language model (loss by position),
how good it is (loss over every window of the held-out stream, full softmax), and whether it puts
probability on token types it never saw in training: such types have untrained output rows, and
sampling at T = 1 or with top-p draws them in proportion to that mass.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..generation.sampling import top_p_filter

POSITION_BUCKETS = ((0, 64), (64, 128), (128, 256), (256, 511))
LONG_DOCUMENT = 512
WINDOW = 128


def heldout_windows(stream, seq: int = WINDOW, bos_id: int = 1) -> torch.Tensor:
    """(n, 1 + seq): every non-overlapping window of seq tokens of stream, in order, each after a BOS."""
    stream = np.asarray(stream)
    n = len(stream) // seq
    if stream.ndim != 1 or n == 0:
        raise ValueError(f"stream must be a 1-D id array of at least seq = {seq} tokens, got shape {stream.shape}")
    body = stream[:n * seq].reshape(n, seq).astype(np.int64)                     # (n, seq)
    return torch.from_numpy(np.concatenate([np.full((n, 1), bos_id, np.int64), body], axis=1))


def long_documents(stream, length: int = LONG_DOCUMENT, bos_id: int = 1) -> torch.Tensor:
    """(n, length): the first `length` tokens (from its BOS) of every document of stream at least that long."""
    stream = np.asarray(stream)
    starts = np.flatnonzero(stream == bos_id)
    ends = np.append(starts[1:], len(stream))
    rows = [stream[s:s + length] for s, e in zip(starts, ends) if e - s >= length]
    if not rows:
        raise ValueError(f"no document of the stream reaches {length} tokens; pass a smaller length")
    return torch.from_numpy(np.stack(rows).astype(np.int64))


@torch.no_grad()
def token_losses(model, rows: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """(n, seq - 1): full-softmax cross-entropy of each next token of rows (n, seq), in batches of rows."""
    out = []
    for chunk in rows.split(batch):
        chunk = chunk.to(model.device)
        logits = model(chunk[:, :-1]).float()                                     # (b, seq - 1, vocab)
        flat = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="none")  # (b * (seq - 1),)
        out.append(flat.view(chunk.shape[0], -1).cpu())
    return torch.cat(out)


def window_loss(model, stream, seq: int = WINDOW) -> float:
    """Mean full-softmax loss (nats/token) over every non-overlapping seq-token window of the stream."""
    return token_losses(model, heldout_windows(stream, seq)).mean().item()


def position_bucket_losses(model, stream, buckets=POSITION_BUCKETS, length: int = LONG_DOCUMENT) -> dict[str, float]:
    """Mean loss of the prediction made at positions [lo, hi) of the documents that reach `length` tokens.

    Position p predicts token p + 1 from tokens 0..p (0 is BOS). A model trained on short rows is
    fine up to their length and worse after: the buckets past it show how far it holds.
    """
    losses = token_losses(model, long_documents(stream, length))                  # (n, length - 1)
    if max(hi for _, hi in buckets) > losses.shape[1]:
        raise ValueError(f"a bucket ends past position {losses.shape[1]}: the documents give {length - 1} predictions")
    return {f"{lo}-{hi}": losses[:, lo:hi].mean().item() for lo, hi in buckets}


@torch.no_grad()
def type_mass(model, rows: torch.Tensor, type_ids, temperature: float = 1.0, batch: int = 16) -> torch.Tensor:
    """(n, seq): the probability that the softmax at `temperature` gives to the tokens type_ids, together, at each position."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}; at T = 0 the model is greedy")
    ids = torch.as_tensor(type_ids, dtype=torch.long)
    out = []
    for chunk in rows.split(batch):
        logits = model(chunk.to(model.device)).float() / temperature              # (b, seq, vocab)
        log_mass = logits[..., ids.to(logits.device)].logsumexp(-1) - logits.logsumexp(-1)  # (b, seq)
        out.append(log_mass.exp().cpu())
    return torch.cat(out)


def never_trained_types(train_types, vocab_size: int) -> torch.Tensor:
    """The ids of every token type that is not in train_types (the types of the training stream)."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    seen[torch.as_tensor(train_types, dtype=torch.long)] = True
    return (~seen).nonzero().flatten()


@torch.no_grad()
def nucleus_sizes(model, rows: torch.Tensor, top_p: float = 0.9, batch: int = 16) -> torch.Tensor:
    """(n, seq): how many tokens top-p sampling keeps at each position (generation.top_p_filter's nucleus)."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    out = []
    for chunk in rows.split(batch):
        probs = torch.softmax(model(chunk.to(model.device)).float(), -1)          # (b, seq, vocab)
        out.append((top_p_filter(probs, top_p) > 0).sum(-1).cpu())                # (b, seq)
    return torch.cat(out)


@torch.no_grad()
def min_logit(model, rows: torch.Tensor, batch: int = 16) -> float:
    """The smallest logit over every position of rows and every type: -inf means an impossible token."""
    return min(model(chunk.to(model.device)).min().item() for chunk in rows.split(batch))
