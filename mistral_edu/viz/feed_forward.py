"""The feed-forward layer's non-linearity: SiLU beside ReLU and GELU, and the SwiGLU gate."""
from __future__ import annotations

import torch

from .figure import finish, new_figure, tidy


def activations_figure(save=None):
    """SiLU next to ReLU and GELU, and the SwiGLU gate silu(a) * b as a surface of its two inputs."""
    x = torch.linspace(-5, 5, 201)                                                   # (201,)
    fig = new_figure(8.5, 3.3)
    ax1, ax2 = fig.subplots(1, 2)
    tidy(ax1)
    ax1.plot(x, torch.relu(x), label="ReLU", linestyle="--")
    ax1.plot(x, torch.nn.functional.gelu(x), label="GELU", linestyle=":")
    ax1.plot(x, torch.nn.functional.silu(x), label="SiLU = x sigmoid(x)", linewidth=2)
    ax1.set_xlabel("x")
    ax1.set_title("Activation functions")
    ax1.legend(fontsize=8)
    a, b = torch.meshgrid(torch.linspace(-4, 4, 81), torch.linspace(-4, 4, 81), indexing="ij")   # (81, 81) each
    gate = torch.nn.functional.silu(a) * b                                           # (81, 81)
    limit = float(gate.abs().max())
    image = ax2.imshow(gate.T.numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax2.set_xlabel("gate: w1 x")
    ax2.set_ylabel("up: w3 x")
    ax2.set_title("SwiGLU unit: silu(w1 x) * (w3 x)")
    fig.colorbar(image, ax=ax2, fraction=0.046, label="output")
    return finish(fig, save)
