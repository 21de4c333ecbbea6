"""Writing checkpoints in Mistral's layout or Hugging Face's, one tensor in memory at a time.

The writers take our tensor names; tensors may be LazyTensors, made only when written, so a 14 GB
checkpoint needs one tensor of memory. The Hugging Face writer renames them and reorders the wq/wk
rows (layouts.py) as Hugging Face's own conversion does.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model.transformer import Transformer
from .layouts import mistral_to_hf_name, to_hf_rows
from .safetensors_io import LazyTensor, write_safetensors


def _nbytes(t) -> int:
    return math.prod(t.shape) * t.dtype.itemsize                       # a LazyTensor has no .nbytes


def write_consolidated(tensors: dict, cfg: ModelConfig, folder: str | Path) -> Path:
    """params.json + consolidated.safetensors, as Mistral ships them, from our-named tensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(cfg.to_params_json(), indent=2) + "\n")
    write_safetensors(folder / "consolidated.safetensors", tensors, {"format": "pt"})
    return folder


def save_consolidated(model: Transformer, folder: str | Path, dtype=torch.bfloat16) -> Path:
    """Write a model as params.json + consolidated.safetensors, exactly as Mistral ships them.

    Each tensor is cast when it is written, so saving in another dtype costs one tensor, not a copy.
    """
    tensors = {name: LazyTensor(dtype, tuple(t.shape), lambda t=t: t.detach().to(dtype))
               for name, t in model.state_dict().items()}
    return write_consolidated(tensors, model.cfg, folder)


def write_hf(tensors: dict, cfg: ModelConfig, folder: str | Path, shards: int = 3) -> Path:
    """config.json, model-0000i-of-0000n.safetensors and their index, as Hugging Face ships them.

    Tensors are given under our names, in our row order; shards are filled in order, each about
    1/shards of the bytes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_hf_config(), indent=2) + "\n")
    total = sum(_nbytes(t) for t in tensors.values())
    groups: list[dict] = [{} for _ in range(shards)]
    written = 0
    for name, t in tensors.items():
        if isinstance(t, LazyTensor):
            hf = LazyTensor(t.dtype, tuple(t.shape), lambda name=name, make=t.make: to_hf_rows(name, make(), cfg))
        else:
            hf = to_hf_rows(name, t, cfg).contiguous()
        groups[min(shards - 1, shards * written // total)][mistral_to_hf_name(name)] = hf
        written += _nbytes(t)
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        file_name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / file_name, group, {"format": "pt"})
        weight_map.update(dict.fromkeys(group, file_name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder
