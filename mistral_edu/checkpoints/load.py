"""load_model and load_tokenizer: a checkpoint in either layout into a Transformer, one tensor at a time.

The model is built on the meta device (shapes, no memory), every file's header is checked before a
byte of weights is read, and each tensor is read, converted and placed on the device on its own:
peak memory is one copy of the weights plus one tensor. Before that, the dtype and the strategy
(full, int8 or stream) are chosen and checked against the free memory (plan_load).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..default import DEFAULT_DIR
from ..dtypes import parse_dtype
from ..int8 import empty_int8_group, quantize_model, set_int8
from ..memory import choose_strategy, compute_dtype, free_memory, parameter_count, strategy_reason
from ..model import Transformer, projection_groups, random_init_
from ..names import is_block_matrix
from ..progress import progress
from ..tokenizer import Tokenizer, mistral_common_v1_path
from .find import Checkpoint, find_checkpoint, read_config, weight_files
from .layouts import from_hf_rows, hf_to_mistral_name
from .safetensors_io import SafetensorsFile
from .skeleton import set_parameter, shapes_only
from .streaming import StreamedTransformer, tensors_on_disk


# ----------------------------------------------------------------------------- the tensor plan

def tensor_plan(checkpoint: Checkpoint, cfg: ModelConfig, model: nn.Module) -> list[tuple[str, SafetensorsFile, str]]:
    """(our name, file, name in file) for every parameter, after checking names and shapes."""
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    plan, unexpected = {}, []
    for path in weight_files(checkpoint):
        st = SafetensorsFile(path)
        for stored in st.entries:
            ours = stored if checkpoint.layout == "mistral" else hf_to_mistral_name(stored)
            if ours is None and stored.endswith("rotary_emb.inv_freq"):
                continue  # recomputed from rope_theta; old HF exports stored it
            if ours not in expected:
                unexpected.append(f"{path.name}:{stored}")
                continue
            if st.shape(stored) != expected[ours]:
                raise ValueError(
                    f"{path.name}: tensor {stored!r} has shape {st.shape(stored)} but the config "
                    f"({'params.json' if checkpoint.layout == 'mistral' else 'config.json'}) implies "
                    f"{expected[ours]}; the config and the weights come from different models")
            plan[ours] = (ours, st, stored)
    if unexpected:
        raise ValueError(f"{checkpoint.folder}: unexpected tensors {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}; this is not a Mistral-architecture checkpoint")
    missing = [name for name in expected if name not in plan]
    if missing:
        raise ValueError(f"{checkpoint.folder}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                         f"({len(missing)} in all); the download is incomplete")
    return [plan[name] for name in expected]


# ----------------------------------------------------------------------------- device, dtype, strategy

def parse_device(device) -> torch.device:
    """A usable torch.device from None (cuda if available), a string or a device; an error otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but this PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device='cpu' or install a CUDA build")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available here; use 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device} is not supported; use 'cpu', 'cuda' or 'mps'")
    return device


def default_dtype(cfg: ModelConfig, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype a model computes in on device, and why (memory.compute_dtype's rule, for this device).

    A GPU's compute capability decides, not torch.cuda.is_bf16_supported(): that also says yes
    where bf16 is only emulated (a T4, capability 7.5), which is slow and not what the message promises.
    """
    return compute_dtype(cfg, torch.cuda.get_device_capability(device) if device.type == "cuda" else None)


@dataclass(frozen=True)
class LoadPlan:
    """What load_model will do, decided before a byte of weights is read: dtype and strategy, each with why."""

    dtype: torch.dtype
    why: str
    strategy: str
    strategy_why: str


def plan_load(cfg: ModelConfig, device: torch.device, dtype=None, strategy: str = "auto",
              verbose: bool = True, free: int | None = None, context: int | None = None) -> LoadPlan:
    """The dtype (asked for, else default_dtype) and the strategy that fits it (memory.choose_strategy).

    free: bytes available, when already known; else the device is asked. context: the prompt length
    to plan for (memory.PLAN_CONTEXT tokens by default). A model that does not fit
    in its dtype falls back to int8, then streaming, or is refused with the arithmetic (MemoryError).
    """
    requested = parse_dtype(dtype)
    dtype, why = (requested, "as requested") if requested else default_dtype(cfg, device)
    chosen = choose_strategy(cfg, device, dtype, strategy, verbose, free=free, context=context)
    if strategy != "auto":
        return LoadPlan(dtype, why, chosen, "as requested")
    free = free_memory(device)[0] if free is None else free  # asked again: nothing was allocated since
    return LoadPlan(dtype, why, chosen, strategy_reason(cfg, chosen, dtype, free, context))


# ----------------------------------------------------------------------------- loading

def allocate_int8(model: Transformer, device: torch.device) -> None:
    """Every block matrix's int8 storage, allocated before a byte is read (int8.empty_int8_group says why).

    wq|wk|wv and w1|w3 come out already fused, so generate's fast path has nothing left to copy.
    """
    names = {module: name for name, module in model.named_modules()}
    for block in model.layers:
        for group in [*projection_groups(block), [block.attention.wo], [block.feed_forward.w2]]:
            for linear, layer in zip(group, empty_int8_group(group, device)):
                parent, _, leaf = names[linear].rpartition(".")
                setattr(model.get_submodule(parent), leaf, layer)


def _init_default(cfg: ModelConfig, dtype, device) -> Transformer:
    """A deterministically initialised embedded default, for when no trained checkpoint is shipped."""
    model = random_init_(Transformer(cfg), seed=0)
    return model.to(device=device, dtype=dtype).requires_grad_(False).eval()


def _load_untrained_default(checkpoint: Checkpoint, device: torch.device, dtype, strategy: str,
                            verbose: bool) -> Transformer:
    """The embedded default's shape, randomly initialised (seed 0): there is no file to read."""
    cfg = ModelConfig.tiny()
    if strategy == "stream":
        raise ValueError("the embedded default has no file to stream from; save it with "
                         "save_consolidated(model, folder), then load_model(folder, strategy='stream')")
    dtype = dtype or default_dtype(cfg, device)[0]
    model = _init_default(cfg, dtype, device)
    if strategy == "int8":
        quantize_model(model, verbose=False)  # the default: quick, and no bar in a saved notebook
    model.checkpoint = checkpoint
    if verbose:
        print(f"mistral_edu: embedded default (randomly initialised, seed 0; {checkpoint.reason}), "
              f"{dtype}, {device}")
    return model


def load_model(path=None, device=None, dtype=None, verbose: bool = True, strategy: str = "auto",
               context: int | None = None) -> Transformer:
    """Load a checkpoint (either layout) into a Transformer, tensor by tensor, never two copies.

    Without a path: $MISTRAL_EDU_WEIGHTS, then the Hugging Face cache, then the embedded default.
    The model comes back in eval mode without gradients, with .checkpoint saying where it came from.
    strategy: "full", "int8" (block matrices in int8, see mistral_edu/int8.py), "stream" (weights stay on
    disk, one block at a time, see streaming.py) or "auto" (the first that fits the free memory).
    The plan is checked against free memory before anything is allocated (plan_load), for a prompt
    of `context` tokens (memory.PLAN_CONTEXT by default): on a 16 GB GPU, 1024 keeps every weight in
    fp16 where 4096 needs int8.
    """
    device, dtype = parse_device(device), parse_dtype(dtype)
    checkpoint = find_checkpoint(path)
    if checkpoint.is_embedded_default and not (DEFAULT_DIR / "params.json").is_file():
        return _load_untrained_default(checkpoint, device, dtype, strategy, verbose)
    cfg = read_config(checkpoint)
    check_tokenizer_matches(checkpoint.folder, cfg)
    with shapes_only():
        model = Transformer(cfg)
    plan = tensor_plan(checkpoint, cfg, model)
    load = plan_load(cfg, device, dtype, strategy, verbose=False, context=context)
    # A bar (bytes read, ETA) for a real checkpoint's load when it takes a while; never for the default.
    show = verbose and not checkpoint.is_embedded_default
    if load.strategy == "stream":
        model = StreamedTransformer(cfg, tensors_on_disk(plan, checkpoint.layout, cfg), device, load.dtype,
                                    verbose=show)
        plan = []
    if load.strategy == "int8":
        allocate_int8(model, device)
    what = "reading and quantising to int8" if load.strategy == "int8" else "reading"
    with progress(sum(st.nbytes(stored) for _, st, stored in plan), f"{what} {checkpoint.folder.name}",
                  verbose=show, in_bytes=True) as bar:
        for ours, st, stored in plan:
            tensor = st.read(stored)
            if checkpoint.layout == "hf":
                tensor = from_hf_rows(ours, tensor, cfg)
            if load.strategy == "int8" and is_block_matrix(ours):
                set_int8(model, ours, tensor.to(device))
            else:
                set_parameter(model, ours, tensor.to(device=device, dtype=load.dtype))
            del tensor
            bar.update(st.nbytes(stored))
    model.eval()
    model.checkpoint = checkpoint
    if verbose:
        what = "embedded default (trained)" if checkpoint.is_embedded_default else f"{checkpoint.layout} checkpoint"
        print(f"mistral_edu: {what} from {checkpoint.folder} ({checkpoint.reason}); "
              f"{parameter_count(cfg):,} parameters, {load.why}, {device}, strategy '{load.strategy}' "
              f"({load.strategy_why})")
    return model


def check_tokenizer_matches(folder: Path, cfg: ModelConfig) -> None:
    """A tokenizer.model beside the weights must have exactly the config's vocabulary size."""
    tokenizer_file = folder / "tokenizer.model"
    if not tokenizer_file.is_file():
        return
    size = Tokenizer(tokenizer_file).vocab_size
    if size != cfg.vocab_size:
        raise ValueError(
            f"{tokenizer_file} has {size} pieces but the config says vocab_size {cfg.vocab_size}: "
            "they come from different model versions (v0.3 has 32768, v0.1/v0.2 have 32000)")


def load_tokenizer(path=None) -> Tokenizer:
    """A weights folder's tokenizer.model (or a tokenizer file), else the found checkpoint's, else v1.

    Without a path it follows load_model's search, so the tokenizer and the weights come from the
    same folder; without a tokenizer.model there, it is mistral-common's v1 file (v0.1/v0.2's).
    """
    if path is not None:
        path = Path(path)
        if path.is_dir():
            if not (path / "tokenizer.model").is_file():
                raise FileNotFoundError(f"{path} has no tokenizer.model; pass the file, or None for the v1 default")
            path = path / "tokenizer.model"
        return Tokenizer(path)
    checkpoint = find_checkpoint()
    if (checkpoint.folder / "tokenizer.model").is_file():
        return Tokenizer(checkpoint.folder / "tokenizer.model")
    return Tokenizer(mistral_common_v1_path())
