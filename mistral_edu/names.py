"""Parameter and hook-point names: which block a name lives in, and which weights are block matrices.

Checkpoint tensors (`layers.3.attention.wq.weight`) and hook points (`layers.3.hook_resid_pre`) share
the `layers.N.` prefix, so one parser serves the loader, the memory arithmetic and the hooks.
"""
from __future__ import annotations

import re

_LAYER = re.compile(r"layers\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The block index in a name ("layers.3.attention.wq.weight" -> 3), or None outside the blocks."""
    match = _LAYER.match(name)
    return int(match.group(1)) if match else None


def is_block_matrix(name: str) -> bool:
    """A 2-D weight inside a block (wq..wo, w1..w3): what GPTQ/AWQ/bitsandbytes/our int8 quantise."""
    return layer_of(name) is not None and not name.endswith("norm.weight")
