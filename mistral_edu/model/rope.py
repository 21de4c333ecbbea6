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


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rope in real arithmetic: (a + ib)(cos + i sin) written out for each pair (2i, 2i+1).

    torch.compile does not fuse complex tensors, so the fast generation path uses this form; cos and
    sin are rope_rotations(...).real and .imag, already shaped to broadcast against x's pairs. A test
    checks that both forms agree.
    """
    pairs = x.float().unflatten(-1, (-1, 2))                                   # (..., head_dim/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]                                        # (..., head_dim/2)
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)      # (..., head_dim/2, 2)
    return rotated.flatten(-2).type_as(x)                                      # (..., head_dim)
