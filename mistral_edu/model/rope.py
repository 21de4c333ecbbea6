"""Rotary position embeddings in Mistral's pairing: dimensions (2i, 2i+1) form one complex number.

Each pair is rotated by the angle position * theta^(-2i/head_dim). A rotation keeps lengths, and the
dot product of two rotated vectors depends only on the difference of their angles, so q.k sees the
distance between two tokens and not where they stand.
"""
import torch


def rope_inverse_frequencies(head_dim: int, theta: float, device=None) -> torch.Tensor:
    """theta^(-2i/head_dim) for i = 0 .. head_dim/2 - 1: radians per position of each pair."""
    exponents = torch.arange(0, head_dim, 2, device=device).float() / head_dim  # (head_dim/2,)
    return 1.0 / (theta ** exponents)                                           # (head_dim/2,)


def rope_rotations(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Unit complex numbers e^(i * position * freq), one per position and pair (complex64)."""
    inv_freq = rope_inverse_frequencies(head_dim, theta, positions.device)   # (head_dim/2,)
    angles = torch.outer(positions.float(), inv_freq)                       # (seq, head_dim/2)
    return torch.polar(torch.ones_like(angles), angles)                      # (seq, head_dim/2)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate q or k by complex multiplication; x is (batch, seq, heads, head_dim)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (batch, seq, heads, head_dim/2)
    rotated = pairs * rotations[None, :, None, :]                          # (batch, seq, heads, head_dim/2)
    return torch.view_as_real(rotated).flatten(-2).type_as(x)             # (batch, seq, heads, head_dim)
