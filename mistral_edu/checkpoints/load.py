"""Find, validate and load checkpoints in Mistral's layout or Hugging Face's, one tensor at a time.

The model is built on the meta device (shapes, no memory), every file's header is checked before a
byte of weights is read, and each tensor is read, converted and placed on the device on its own:
peak memory is one copy of the weights plus one tensor.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..dtypes import parse_dtype
from ..model.transformer import Transformer, random_init_, shapes_only
from ..memory import choose_strategy, parameter_count
from ..names import is_block_matrix
from .int8 import quantize_model, set_int8
from .safetensors_io import LazyTensor, SafetensorsFile, write_safetensors
from .streaming import StreamedTransformer, tensors_on_disk

HF_REPO_FOLDER = "models--mistralai--Mistral-7B-Instruct-v0.2"
from ..default import DEFAULT_DIR
WEIGHTS_ENV = "MISTRAL_EDU_WEIGHTS"

# Hugging Face name (with N for the layer) -> ours. Learners see the same table in notebook 05.
_HF_TO_MISTRAL = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.N.self_attn.q_proj.weight": "layers.N.attention.wq.weight",
    "model.layers.N.self_attn.k_proj.weight": "layers.N.attention.wk.weight",
    "model.layers.N.self_attn.v_proj.weight": "layers.N.attention.wv.weight",
    "model.layers.N.self_attn.o_proj.weight": "layers.N.attention.wo.weight",
    "model.layers.N.mlp.gate_proj.weight": "layers.N.feed_forward.w1.weight",
    "model.layers.N.mlp.down_proj.weight": "layers.N.feed_forward.w2.weight",
    "model.layers.N.mlp.up_proj.weight": "layers.N.feed_forward.w3.weight",
    "model.layers.N.input_layernorm.weight": "layers.N.attention_norm.weight",
    "model.layers.N.post_attention_layernorm.weight": "layers.N.ffn_norm.weight",
}
_MISTRAL_TO_HF = {v: k for k, v in _HF_TO_MISTRAL.items()}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder, its layout ("mistral" or "hf"), and why it was chosen."""

    folder: Path
    layout: str
    reason: str

    @property
    def is_embedded_default(self) -> bool:
        return self.folder.resolve() == DEFAULT_DIR.resolve()


# ----------------------------------------------------------------------------- names and q/k rows

def hf_to_mistral_name(name: str) -> str | None:
    """Our name for a Hugging Face tensor name, or None if it is not a model weight we know."""
    generic = re.sub(r"^model\.layers\.\d+\.", "model.layers.N.", name)
    ours = _HF_TO_MISTRAL.get(generic)
    if ours is None:
        return None
    layer = re.match(r"model\.layers\.(\d+)\.", name)
    return ours.replace("N", layer.group(1), 1) if layer else ours


def mistral_to_hf_name(name: str) -> str:
    """The Hugging Face name of one of our tensor names."""
    generic = re.sub(r"^layers\.\d+\.", "layers.N.", name)
    layer = re.match(r"layers\.(\d+)\.", name)
    hf = _MISTRAL_TO_HF[generic]
    return hf.replace("N", layer.group(1), 1) if layer else hf


def permute_for_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder wq/wk rows from Mistral's (2i, 2i+1) RoPE pairing to HF's (i, i + head_dim/2) pairing."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def unpermute_from_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of permute_for_hf: HF's rotate-half rows back to Mistral's neighbouring pairs."""
    dim1, dim2 = w.shape
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


# ----------------------------------------------------------------------------- finding a checkpoint

def detect_layout(folder: str | Path) -> str:
    """ "mistral" or "hf" for a folder, or a clear error saying what is missing."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"weights folder {folder} does not exist; check the path or ${WEIGHTS_ENV}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; pass the folder that holds the checkpoint")
    if (folder / "params.json").is_file() and list(folder.glob("consolidated*.safetensors")):
        return "mistral"
    if (folder / "config.json").is_file() and list(folder.glob("model*.safetensors")):
        return "hf"
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pth", ".pt", ".ckpt"))
    if pickles:
        raise ValueError(
            f"{folder} holds only pickled weights ({', '.join(pickles[:3])}). mistral_edu never unpickles "
            "files (unpickling runs arbitrary code). Download the safetensors files instead, e.g. "
            "`huggingface-cli download mistralai/Mistral-7B-Instruct-v0.2 --include '*.safetensors' "
            "'*.json' tokenizer.model --local-dir <folder>`")
    raise ValueError(
        f"{folder} is neither a Mistral checkpoint (params.json + consolidated.safetensors) nor a "
        "Hugging Face one (config.json + model*.safetensors); it holds: "
        + (", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"))


def hf_cache_dirs() -> list[Path]:
    """Where the Hugging Face hub cache may keep mistralai/Mistral-7B-Instruct-v0.2."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    if os.environ.get("XDG_CACHE_HOME"):  # huggingface_hub's default home is $XDG_CACHE_HOME/huggingface
        roots.append(Path(os.environ["XDG_CACHE_HOME"]) / "huggingface" / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    return [root / HF_REPO_FOLDER for root in roots]


def _hf_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot that refs/main points to, else any complete snapshot."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    preferred = [snapshots / ref.read_text().strip()] if ref.is_file() else []
    for candidate in preferred + sorted(snapshots.iterdir()):
        try:
            detect_layout(candidate)
            return candidate
        except (OSError, ValueError):
            continue
    return None


def find_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """The folder to load: the path given, else $MISTRAL_EDU_WEIGHTS, the HF cache, the embedded default."""
    if path is not None:
        return Checkpoint(Path(path), detect_layout(path), "the path given")
    if os.environ.get(WEIGHTS_ENV):
        folder = Path(os.environ[WEIGHTS_ENV])
        return Checkpoint(folder, detect_layout(folder), f"${WEIGHTS_ENV}")
    for repo_dir in hf_cache_dirs():
        snapshot = _hf_snapshot(repo_dir)
        if snapshot is not None:
            return Checkpoint(snapshot, detect_layout(snapshot), "the Hugging Face cache")
    return Checkpoint(DEFAULT_DIR, "mistral", "no real weights found")


def read_config(checkpoint: Checkpoint) -> ModelConfig:
    if checkpoint.layout == "mistral":
        return ModelConfig.from_params_json(checkpoint.folder / "params.json")
    return ModelConfig.from_hf_config(checkpoint.folder / "config.json")


# ----------------------------------------------------------------------------- the tensor plan

def _mistral_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("consolidated*.safetensors"))


def _hf_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{index} is malformed ({err}); re-download it") from err
        files = sorted({folder / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists {missing}, which are not in {folder}; finish the download")
        return files
    return sorted(folder.glob("model*.safetensors"))


def tensor_plan(checkpoint: Checkpoint, cfg: ModelConfig, model: nn.Module) -> list[tuple[str, SafetensorsFile, str]]:
    """(our name, file, name in file) for every parameter, after checking names and shapes."""
    files = _mistral_files(checkpoint.folder) if checkpoint.layout == "mistral" else _hf_files(checkpoint.folder)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    plan, unexpected = {}, []
    for path in files:
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


# ----------------------------------------------------------------------------- dtype and device

def parse_device(device) -> torch.device:
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
    """Small models compute in float32; the 7B in bf16, as stored, where bf16 matmuls run natively."""
    from ..memory import parameter_count
    if parameter_count(cfg) < 1_000_000_000:
        return torch.float32, "float32: a small model, so exact reference maths costs little"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float32, ("float32: this GPU has no fast bf16 matmuls; pass dtype='fp16' to halve "
                               "the memory at some loss of range")
    return torch.bfloat16, "bfloat16: the dtype the weights are stored in"


# ----------------------------------------------------------------------------- loading

def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[leaf] = nn.Parameter(value, requires_grad=False)


def _init_default(cfg: ModelConfig, dtype, device) -> Transformer:
    """A deterministically initialised embedded default, for when no trained checkpoint is shipped."""
    model = random_init_(Transformer(cfg), seed=0)
    return model.to(device=device, dtype=dtype).requires_grad_(False).eval()


def load_model(path=None, device=None, dtype=None, verbose: bool = True, strategy: str = "auto") -> Transformer:
    """Load a checkpoint (either layout) into a Transformer, tensor by tensor, never two copies.

    Without a path: $MISTRAL_EDU_WEIGHTS, then the Hugging Face cache, then the embedded default.
    The model comes back in eval mode without gradients, with .checkpoint saying where it came from.
    strategy: "full", "int8" (block matrices in int8, see quantize.py), "stream" (weights stay on
    disk, one block at a time, see streaming.py) or "auto" (the first that fits the free memory).
    The plan is checked against free memory before anything is allocated (memory.choose_strategy).
    """
    device = parse_device(device)
    requested = parse_dtype(dtype)
    checkpoint = find_checkpoint(path)
    if checkpoint.is_embedded_default and not (DEFAULT_DIR / "params.json").is_file():
        cfg = ModelConfig.tiny()
        dtype, why = (requested, "as requested") if requested else default_dtype(cfg, device)
        if strategy == "stream":
            raise ValueError("the embedded default has no file to stream from; save it with "
                             "save_consolidated(model, folder), then load_model(folder, strategy='stream')")
        model = _init_default(cfg, dtype, device)
        if strategy == "int8":
            quantize_model(model)
        model.checkpoint = checkpoint
        if verbose:
            print(f"mistral_edu: embedded default (randomly initialised, seed 0; {checkpoint.reason}), "
                  f"{dtype}, {device}")
        return model
    cfg = read_config(checkpoint)
    check_tokenizer_matches(checkpoint.folder, cfg)
    dtype, why = (requested, "as requested") if requested else default_dtype(cfg, device)
    with shapes_only():
        model = Transformer(cfg)
    plan = tensor_plan(checkpoint, cfg, model)
    strategy = choose_strategy(cfg, device, dtype, strategy, verbose)
    if strategy == "stream":
        model = StreamedTransformer(cfg, tensors_on_disk(plan, checkpoint.layout, cfg), device, dtype)
        plan = []
    for ours, st, stored in plan:
        tensor = st.read(stored)
        if checkpoint.layout == "hf" and ours.endswith(("attention.wq.weight", "attention.wk.weight")):
            n = cfg.n_heads if ours.endswith("wq.weight") else cfg.n_kv_heads
            tensor = unpermute_from_hf(tensor, n)
        if strategy == "int8" and is_block_matrix(ours):
            set_int8(model, ours, tensor.to(device))
        else:
            _set_tensor(model, ours, tensor.to(device=device, dtype=dtype))
        del tensor
    model.eval()
    model.checkpoint = checkpoint
    if verbose:
        what = "embedded default (trained)" if checkpoint.is_embedded_default else f"{checkpoint.layout} checkpoint"
        print(f"mistral_edu: {what} from {checkpoint.folder} ({checkpoint.reason}); "
              f"{parameter_count(cfg):,} parameters, {why}, {device}, strategy '{strategy}'")
    return model


def check_tokenizer_matches(folder: Path, cfg: ModelConfig) -> None:
    """A tokenizer.model beside the weights must have exactly the config's vocabulary size."""
    tokenizer_file = folder / "tokenizer.model"
    if not tokenizer_file.is_file():
        return
    from ..tokenizer import sentencepiece_size
    size = sentencepiece_size(tokenizer_file)
    if size != cfg.vocab_size:
        raise ValueError(
            f"{tokenizer_file} has {size} pieces but the config says vocab_size {cfg.vocab_size}: "
            "they come from different model versions (v0.3 has 32768, v0.1/v0.2 have 32000)")


# ----------------------------------------------------------------------------- writing

def save_consolidated(model: Transformer, folder: str | Path, dtype=torch.bfloat16) -> Path:
    """Write params.json + consolidated.safetensors exactly as Mistral ships them.

    Each tensor is cast when it is written, so saving in another dtype costs one tensor, not a copy.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(model.cfg.to_params_json(), indent=2) + "\n")
    tensors = {name: LazyTensor(dtype, tuple(t.shape), lambda t=t: t.detach().to(dtype))
               for name, t in model.state_dict().items()}
    write_safetensors(folder / "consolidated.safetensors", tensors, {"format": "pt"})
    return folder
