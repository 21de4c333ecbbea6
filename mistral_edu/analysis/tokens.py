"""One input convention for the analysis helpers: a single sequence of token ids."""
from __future__ import annotations

import torch


def as_sequence(model, tokens) -> torch.Tensor:
    """A list of ids or a (1, seq) tensor as a (1, seq) LongTensor on the model's device."""
    tokens = torch.as_tensor(tokens, dtype=torch.long, device=model.device)
    if tokens.dim() == 1:
        tokens = tokens[None]                                                    # (1, seq)
    if tokens.dim() != 2 or tokens.shape[0] != 1:
        raise ValueError(f"give one sequence: a list of ids or a (1, seq) tensor, got shape {tuple(tokens.shape)}; "
                         "loop over a batch yourself")
    return tokens
