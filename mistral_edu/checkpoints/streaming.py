"""Layer streaming: run a model larger than memory by holding one block's weights at a time.

The weights stay in the checkpoint's files. Each module that owns weights (the embedding, every
block, the final norm, the output head) maps its tensors from disk just before it runs and lets go
of them after, so the device holds about one block (436 MB for Mistral 7B in bf16) plus the
activations. The same arithmetic runs as in the loaded model, so the logits are the same; the price
is reading all the weights once per forward pass (for generation: once per token). A forward pass that
takes a while shows a bar of the units done (progress.py), unless verbose=False.
"""
from __future__ import annotations

import math
import mmap
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model.transformer import Transformer
from ..progress import progress
from .layouts import from_hf_rows
from .safetensors_io import SafetensorsFile
from .skeleton import set_parameter, shapes_only


@dataclass(frozen=True)
class TensorOnDisk:
    """Where one tensor's bytes lie in a safetensors file, and how to turn them into our layout."""

    path: Path
    offset: int
    stored_dtype: torch.dtype
    shape: tuple[int, ...]
    name: str                           # ours, e.g. "layers.0.attention.wq.weight"
    hf_cfg: ModelConfig | None = None   # a Hugging Face file's config: its wq/wk rows need reordering

    def load(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Map the bytes (no read until used) and move or cast them to device and dtype."""
        nbytes = math.prod(self.shape) * self.stored_dtype.itemsize
        start = self.offset - self.offset % mmap.ALLOCATIONGRANULARITY  # mappings start on a page boundary
        with open(self.path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), self.offset - start + nbytes, offset=start, access=mmap.ACCESS_COPY)
        raw = torch.frombuffer(mapped, dtype=torch.uint8, offset=self.offset - start, count=nbytes)
        tensor = raw.view(self.stored_dtype).reshape(self.shape)  # unmapped when the last view is freed
        if self.hf_cfg is not None:
            tensor = from_hf_rows(self.name, tensor, self.hf_cfg)
        return tensor.to(device=device, dtype=dtype)


def streamed_units(cfg: ModelConfig) -> list[str]:
    """The modules whose weights come and go together, in the order a forward pass reaches them."""
    return ["tok_embeddings"] + [f"layers.{i}" for i in range(cfg.n_layers)] + ["norm", "output"]


class StreamedTransformer(Transformer):
    """A Transformer whose weights stay on disk, each unit loaded to the device for its turn only."""

    def __init__(self, cfg: ModelConfig, tensors: dict[str, TensorOnDisk], device: torch.device,
                 dtype: torch.dtype, verbose: bool = True):
        with shapes_only():
            super().__init__(cfg)
        self.requires_grad_(False).eval()
        self._device, self._dtype = device, dtype
        self._tensors = tensors
        self.verbose = verbose
        self._bar = None
        for unit in streamed_units(cfg):
            module = self.get_submodule(unit)
            module.register_forward_pre_hook(self._loader(unit))
            module.register_forward_hook(self._releaser(unit), always_call=True)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """Transformer.forward, with a bar of the units streamed so far when it takes a while."""
        with progress(len(streamed_units(self.cfg)), "streamed forward", unit="unit", verbose=self.verbose) as bar:
            self._bar = bar
            try:
                return super().forward(*args, **kwargs)
            finally:
                self._bar = None

    def _unit_names(self, unit: str) -> list[str]:
        return [name for name in self._tensors if name.startswith(unit + ".")]

    def _loader(self, unit: str):
        def load(module, args):
            for name in self._unit_names(unit):
                set_parameter(self, name, self._tensors[name].load(self._device, self._dtype))
        return load

    def _releaser(self, unit: str):
        def release(module, args, output):
            for name in self._unit_names(unit):
                set_parameter(self, name, torch.empty(self._tensors[name].shape, device="meta", dtype=self._dtype))
            if self._bar is not None:
                self._bar.update(1)
        return release

    def resident_bytes(self) -> int:
        """Bytes of weights held on the device right now (0 between forward passes)."""
        return sum(p.nbytes for p in self.parameters() if p.device.type != "meta")


def tensors_on_disk(plan: list[tuple[str, SafetensorsFile, str]], layout: str,
                    cfg: ModelConfig) -> dict[str, TensorOnDisk]:
    """TensorOnDisk for each (our name, SafetensorsFile, stored name) of load.tensor_plan."""
    tensors = {}
    for ours, st, stored in plan:
        stored_dtype, shape, begin, _ = st.entries[stored]
        tensors[ours] = TensorOnDisk(st.path, st.data_start + begin, stored_dtype, shape, ours,
                                     cfg if layout == "hf" else None)
    return tensors
