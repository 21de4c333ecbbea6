"""Model shape and hyper-parameters, with the published presets and readers for both file layouts."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    """Every number that fixes a Mistral-style transformer's shape, named as in Mistral's params.json."""

    dim: int = 4096
    n_layers: int = 32
    head_dim: int = 128
    hidden_dim: int = 14336
    n_heads: int = 32
    n_kv_heads: int = 8
    norm_eps: float = 1e-5
    vocab_size: int = 32000
    rope_theta: float = 1e6
    sliding_window: int | None = None
    max_seq_len: int = 32768

    def __post_init__(self):
        for name in ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads",
                     "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}): "
                "in grouped-query attention each KV head serves a whole group of query heads")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE (it rotates pairs), got {self.head_dim}")
        if not self.norm_eps > 0 or not self.rope_theta > 0:
            raise ValueError(f"norm_eps and rope_theta must be positive, got {self.norm_eps}, {self.rope_theta}")
        if self.sliding_window is not None and (not isinstance(self.sliding_window, int) or self.sliding_window <= 0):
            raise ValueError(f"sliding_window must be None or a positive integer, got {self.sliding_window!r}")

    @property
    def n_rep(self) -> int:
        """How many query heads share one KV head (4 for Mistral 7B)."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def mistral_7b_instruct_v02(cls) -> "ModelConfig":
        """The published Mistral-7B-Instruct-v0.2: full attention over 32k, RoPE theta 1e6."""
        return cls()

    @classmethod
    def mistral_7b_v01(cls) -> "ModelConfig":
        """v0.1 (base and instruct): RoPE theta 1e4 and a 4096-token sliding window."""
        return cls(rope_theta=10000.0, sliding_window=4096)

    @classmethod
    def tiny(cls) -> "ModelConfig":
        """The embedded default: the 7B's ratios (4 query heads per KV head, FFN 3.5x) at a laptop's scale."""
        return cls(dim=128, n_layers=4, head_dim=16, hidden_dim=448, n_heads=8, n_kv_heads=2,
                   norm_eps=1e-5, vocab_size=32000, rope_theta=1e6, sliding_window=None, max_seq_len=32768)

    @classmethod
    def from_params_json(cls, path: str | Path) -> "ModelConfig":
        """Read Mistral's own params.json (consolidated layout)."""
        raw = _read_json(path)
        required = ("dim", "n_layers", "n_heads", "hidden_dim", "norm_eps", "vocab_size")
        missing = [k for k in required if k not in raw]
        if missing:
            raise ValueError(f"{path}: params.json lacks {missing}; is this a Mistral consolidated checkpoint?")
        n_heads = raw["n_heads"]
        return cls(
            dim=raw["dim"], n_layers=raw["n_layers"],
            head_dim=raw.get("head_dim", raw["dim"] // n_heads),
            hidden_dim=raw["hidden_dim"], n_heads=n_heads, n_kv_heads=raw.get("n_kv_heads", n_heads),
            norm_eps=float(raw["norm_eps"]), vocab_size=raw["vocab_size"],
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            sliding_window=raw.get("sliding_window"),
            max_seq_len=raw.get("max_seq_len", cls.max_seq_len),
        )

    @classmethod
    def from_hf_config(cls, path: str | Path) -> "ModelConfig":
        """Read a Hugging Face config.json; every field is required, never a library default."""
        raw = _read_json(path)
        required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "rms_norm_eps", "vocab_size")
        missing = [k for k in required if k not in raw]
        if missing:
            raise ValueError(f"{path}: config.json lacks {missing}; is this a Mistral/Llama checkpoint?")
        if raw.get("tie_word_embeddings"):
            raise ValueError(f"{path}: tie_word_embeddings is true, but Mistral's output head is untied")
        n_heads = raw["num_attention_heads"]
        return cls(
            dim=raw["hidden_size"], n_layers=raw["num_hidden_layers"],
            head_dim=raw.get("head_dim") or raw["hidden_size"] // n_heads,
            hidden_dim=raw["intermediate_size"], n_heads=n_heads,
            n_kv_heads=raw["num_key_value_heads"], norm_eps=float(raw["rms_norm_eps"]),
            vocab_size=raw["vocab_size"], rope_theta=_hf_rope_theta(raw, path),
            sliding_window=raw.get("sliding_window"),
            max_seq_len=raw.get("max_position_embeddings", cls.max_seq_len),
        )

    def to_params_json(self) -> dict:
        """The params.json dictionary Mistral ships (sliding_window only when there is one)."""
        params = dataclasses.asdict(self)
        if params["sliding_window"] is None:
            del params["sliding_window"]
        return params

    def to_hf_config(self) -> dict:
        """The fields of a Hugging Face MistralConfig that describe this shape, all explicit."""
        return {
            "architectures": ["MistralForCausalLM"], "model_type": "mistral",
            "hidden_size": self.dim, "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers, "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads, "head_dim": self.head_dim,
            "rms_norm_eps": self.norm_eps, "rope_theta": self.rope_theta,
            "sliding_window": self.sliding_window, "max_position_embeddings": self.max_seq_len,
            "vocab_size": self.vocab_size, "tie_word_embeddings": False, "hidden_act": "silu",
            "bos_token_id": 1, "eos_token_id": 2,
        }


def _hf_rope_theta(raw: dict, path) -> float:
    """RoPE theta from a config.json: top-level before transformers 5, under "rope_parameters" since.

    A missing theta is an error rather than HF's default of 1e4: v0.2 uses 1e6, and a wrong theta
    still runs, giving subtly wrong logits at every position but the first.
    """
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{path}: RoPE scaling {rope!r} is not supported; Mistral 7B uses plain RoPE")
    theta = raw.get("rope_theta", rope.get("rope_theta"))
    if theta is None:
        raise ValueError(f"{path}: config.json gives no rope_theta (neither top-level nor in rope_parameters)")
    return float(theta)


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-download it") from err
