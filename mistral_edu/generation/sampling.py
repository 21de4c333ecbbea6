"""Choosing the next token from logits: greedy, temperature, and nucleus (top-p) sampling."""
from __future__ import annotations

import torch


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs (..., vocab) with only the nucleus kept, renormalised to sum to 1.

    The nucleus is the smallest set of most likely tokens whose probabilities add up to top_p: a
    token is kept while the mass of the tokens ranked above it is still below top_p, so the token
    that crosses top_p is kept. The long tail (each token rare, together not rare) is never drawn.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)                    # (..., vocab)
    before = sorted_probs.cumsum(-1) - sorted_probs                              # mass of the better tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)                # (..., vocab)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)              # (..., vocab)
    return kept / kept.sum(-1, keepdim=True)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> torch.Tensor:
    """Pick the next token from (batch, vocab) logits: argmax at temperature 0, else nucleus sampling."""
    if temperature == 0:
        return logits.argmax(-1)                                                 # (batch,)
    probs = torch.softmax(logits.float() / temperature, dim=-1)                  # (batch, vocab)
    if top_p < 1.0:
        probs = top_p_filter(probs, top_p)                                       # (batch, vocab)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)          # (batch,)
