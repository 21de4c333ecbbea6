"""Fusing the projections that read the same input: wq|wk|wv in attention, w1|w3 in the feed-forward.

wq, wk and wv multiply the same normalised vector, and so do w1 and w3. Stacked into one matrix
each, a decode step runs two matmuls where the model's modules run five, and on a GPU every matmul
saved is a kernel launch saved. The stacked matrix is the modules' own storage, not a copy: in the
7B these five projections hold 9.1 GB of its 14.5 GB, and a second copy would not fit beside the
first on most GPUs.

An int8 model (mistral_edu/int8.py) is fused the same way: its int8 matrices are stacked, and so
are their per-row scales, so the fused projection is one int8 matrix with one scale per output row.

fuse_projections is therefore the one step that changes how the weights are laid out. The fast
path needs it and `generate(fast=True)` calls it; it can also be called once, by hand, after loading.
"""
from __future__ import annotations

import torch
from torch import nn

from ..int8 import Int8Linear
from ..model import projection_groups


def weight_names(linear: nn.Module) -> tuple[str, ...]:
    """The attributes holding a linear's weights, one row per output: the matrix (and an int8 one's scales)."""
    return ("weight_int8", "scale") if isinstance(linear, Int8Linear) else ("weight",)


@torch.no_grad()
def fuse_projections(model):
    """Make wq|wk|wv and w1|w3 of every block consecutive rows of one matrix each; returns the model.

    What it does to the weights: each group is concatenated into a new matrix, and each weight's
    .data becomes its rows of it (an int8 layer's matrix and scales likewise). The Parameter objects,
    their names, shapes and values stay; an in-place edit of wk.weight is an edit of the fused
    matrix, and the state dict and checkpoint writers see the same tensors as before. One group is
    copied at a time, so the extra memory is one block's wq|wk|wv, never a second model.

    Idempotent: a group that is already fused is left alone. A weight replaced since (model.to(),
    assigning a new Parameter) breaks its group's fusion; calling again restores it.
    """
    for block in model.layers:
        for linears in projection_groups(block):
            if not in_memory(linears):
                raise ValueError("fuse_projections needs the weights in memory, as nn.Linear or Int8Linear all of "
                                 "one kind; streamed models cannot be fused (generate takes the plain path for them)")
            if not is_fused(linears):
                _fuse(linears)
    return model


def in_memory(linears: list[nn.Module]) -> bool:
    """Whether a group is all nn.Linear or all Int8Linear, with no weight on the meta device."""
    kinds = {type(m) for m in linears}
    if kinds not in ({nn.Linear}, {Int8Linear}):
        return False
    return not any(getattr(m, name).is_meta for m in linears for name in weight_names(m))


def is_fused(linears: list[nn.Module]) -> bool:
    """Whether each of the group's weights (an int8 layer's scales too) are consecutive rows of one storage."""
    return all(_consecutive([getattr(m, name) for m in linears]) for name in weight_names(linears[0]))


def _consecutive(weights: list[torch.Tensor]) -> bool:
    if not all(w.is_contiguous() for w in weights):
        return False
    storage = weights[0].untyped_storage()
    offset = weights[0].storage_offset()
    for w in weights:
        if w.untyped_storage().data_ptr() != storage.data_ptr() or w.storage_offset() != offset:
            return False
        offset += w.numel()
    return storage.nbytes() >= offset * weights[0].element_size()


def fused_weight(linears: list[nn.Module]):
    """The (sum of outputs, inputs) matrix whose rows the fused weights are: a view, never a copy.

    For Int8Linear layers: (the int8 matrix, its (sum of outputs,) scales), both views.
    """
    if not is_fused(linears):
        raise ValueError("the projections are not fused (or a weight was replaced since); call "
                         "mistral_edu.generation.fuse_projections(model) first")
    rows = sum(m.out_features for m in linears)
    views = []
    for name in weight_names(linears[0]):
        first = getattr(linears[0], name).detach()
        views.append(torch.as_strided(first, (rows, *first.shape[1:]), first.stride(), first.storage_offset()))
    return tuple(views) if len(views) > 1 else views[0]


def _fuse(linears: list[nn.Module]) -> None:
    for name in weight_names(linears[0]):
        fused = torch.cat([getattr(m, name).detach() for m in linears])     # (sum of outputs, inputs) or (sum,)
        start = 0
        for m in linears:
            rows = m.out_features
            if isinstance(m, Int8Linear):
                setattr(m, name, fused[start:start + rows])                  # a buffer: replaced by its view
            else:
                m.weight.data = fused[start:start + rows]                    # (outputs, inputs), a view
            start += rows
