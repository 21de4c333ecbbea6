"""Finding a checkpoint: the path given, $MISTRAL_EDU_WEIGHTS, the Hugging Face cache, the embedded default.

A folder is recognised by its files (Mistral's params.json + consolidated.safetensors, or Hugging
Face's config.json + model*.safetensors); a folder of pickles is refused with the command that
downloads safetensors instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from ..default import DEFAULT_DIR

HF_REPO_FOLDER = "models--mistralai--Mistral-7B-Instruct-v0.2"
WEIGHTS_ENV = "MISTRAL_EDU_WEIGHTS"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder, its layout ("mistral" or "hf"), and why it was chosen."""

    folder: Path
    layout: str
    reason: str

    @property
    def is_embedded_default(self) -> bool:
        return self.folder.resolve() == DEFAULT_DIR.resolve()


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
            "`hf download mistralai/Mistral-7B-Instruct-v0.2 --include '*.safetensors' "
            "--include '*.json' --include tokenizer.model --local-dir <folder>`")
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
    """The ModelConfig of a checkpoint, from params.json or config.json by its layout."""
    if checkpoint.layout == "mistral":
        return ModelConfig.from_params_json(checkpoint.folder / "params.json")
    return ModelConfig.from_hf_config(checkpoint.folder / "config.json")


def weight_files(checkpoint: Checkpoint) -> list[Path]:
    """The safetensors files of a checkpoint; for HF, those its index lists, all present."""
    folder = checkpoint.folder
    if checkpoint.layout == "mistral":
        return sorted(folder.glob("consolidated*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return sorted(folder.glob("model*.safetensors"))
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as err:
        raise ValueError(f"{index} is malformed ({type(err).__name__}: {str(err)[:200]}); re-download it") from err
    if not isinstance(weight_map, dict) or not all(
            isinstance(name, str) and name == Path(name).name for name in weight_map.values()):
        raise ValueError(f"{index}: weight_map must map tensor names to file names in {folder}; re-download it")
    files = sorted({folder / name for name in weight_map.values()})
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{index} lists {missing}, which are not in {folder}; finish the download")
    return files
