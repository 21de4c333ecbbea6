"""Fusing the projections that read the same input: wq|wk|wv in attention, w1|w3 in the feed-forward.

wq, wk and wv multiply the same normalised vector, and so do w1 and w3. Stacked into one matrix
each, a decode step runs two matmuls where the model's modules run five, and on a GPU every matmul
saved is a kernel launch saved. The stacked matrix is the modules' own storage, not a copy: in the
7B these five projections hold 9.1 GB of its 14.5 GB, and a second copy would not fit beside the
first on most GPUs.

fuse_projections is therefore the one step that changes how the parameters are laid out. The fast
path needs it and `generate(fast=True)` calls it; it can also be called once, by hand, after loading.
"""
from __future__ import annotations

import torch
from torch import nn


def projection_groups(block) -> list[list[nn.Linear]]:
    """The linears of one block that read the same input, in the order their rows are stacked."""
    attn, ffn = block.attention, block.feed_forward
    return [[attn.wq, attn.wk, attn.wv], [ffn.w1, ffn.w3]]


@torch.no_grad()
def fuse_projections(model):
    """Make wq|wk|wv and w1|w3 of every block consecutive rows of one matrix each; returns the model.

    What it does to the parameters: each group is concatenated into a new matrix, and each weight's
    .data becomes its rows of it. The Parameter objects, their names, shapes and values stay; an
    in-place edit of wk.weight is an edit of the fused matrix, and the state dict and checkpoint
    writers see the same tensors as before. One group is copied at a time, so the extra memory is
    one block's wq|wk|wv, never a second model.

    Idempotent: a group that is already fused is left alone. A weight replaced since (model.to(),
    assigning a new Parameter) breaks its group's fusion; calling again restores it.
    """
    for block in model.layers:
        for linears in projection_groups(block):
            if not all(isinstance(m, nn.Linear) and not m.weight.is_meta for m in linears):
                raise ValueError("fuse_projections needs the weights in memory as nn.Linear; streamed and int8 "
                                 "models cannot be fused (generate takes the plain path for them)")
            if not is_fused(linears):
                _fuse(linears)
    return model


def is_fused(linears: list[nn.Linear]) -> bool:
    """Whether the weights are consecutive rows of one storage, as fuse_projections leaves them."""
    weights = [m.weight for m in linears]
    if not all(w.is_contiguous() for w in weights):
        return False
    storage = weights[0].untyped_storage()
    offset = weights[0].storage_offset()
    for w in weights:
        if w.untyped_storage().data_ptr() != storage.data_ptr() or w.storage_offset() != offset:
            return False
        offset += w.numel()
    return storage.nbytes() >= offset * weights[0].element_size()


def fused_weight(linears: list[nn.Linear]) -> torch.Tensor:
    """The (sum of outputs, inputs) matrix whose rows the fused weights are: a view, never a copy."""
    if not is_fused(linears):
        raise ValueError("the projections are not fused (or a weight was replaced since); call "
                         "mistral_edu.generation.fuse_projections(model) first")
    first = linears[0].weight.detach()
    rows = sum(m.weight.shape[0] for m in linears)
    return torch.as_strided(first, (rows, first.shape[1]), first.stride(), first.storage_offset())


def _fuse(linears: list[nn.Linear]) -> None:
    fused = torch.cat([m.weight.detach() for m in linears])                   # (sum of outputs, inputs)
    start = 0
    for m in linears:
        rows = m.weight.shape[0]
        m.weight.data = fused[start:start + rows]                              # (outputs, inputs), a view
        start += rows
