"""The meta-device skeleton a loader fills: modules with shapes and no memory, then one tensor at a time."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def shapes_only():
    """Build modules on the meta device, as shapes without memory, for a loader to fill.

    Initialising such a skeleton is wasted work, and for nn.Embedding worse than wasted: torch runs
    normal_ on meta tensors through a decomposition that imports torch._dynamo (about 1 s and
    100 MB of resident memory), so the embedding's initialiser is switched off while building.
    """
    reset = nn.Embedding.reset_parameters
    nn.Embedding.reset_parameters = lambda self: None
    try:
        with torch.device("meta"):
            yield
    finally:
        nn.Embedding.reset_parameters = reset


def set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Put value in place of parameter `name` (e.g. "layers.0.attention.wq.weight"), without gradients.

    Assigning a new Parameter, rather than copying into the old one, is what lets a meta skeleton
    take real tensors: the meta placeholder has no storage to copy into.
    """
    module_name, _, leaf = name.rpartition(".")
    model.get_submodule(module_name)._parameters[leaf] = nn.Parameter(value, requires_grad=False)
