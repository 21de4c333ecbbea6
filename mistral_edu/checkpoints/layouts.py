"""Mistral's layout and Hugging Face's: the tensor-name tables and the q/k row permutation, in one place.

Hugging Face's conversion renames every tensor and reorders the rows of wq and wk, because its RoPE
rotates dimension i with i + head_dim/2 (rotate-half) where Mistral's rotates neighbours 2i, 2i+1.
The loader, the streamer and the writers all go through the functions here.
"""
from __future__ import annotations

import re

import torch

from ..config import ModelConfig
from ..names import layer_of

# Hugging Face name (with N for the layer) -> ours. Learners see the same table in notebook 05.
HF_TO_MISTRAL = {
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
MISTRAL_TO_HF = {v: k for k, v in HF_TO_MISTRAL.items()}
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.")


def hf_to_mistral_name(name: str) -> str | None:
    """Our name for a Hugging Face tensor name, or None if it is not a model weight we know."""
    layer = _HF_LAYER.match(name)
    if layer is None:
        return HF_TO_MISTRAL.get(name)
    ours = HF_TO_MISTRAL.get(_HF_LAYER.sub("model.layers.N.", name, count=1))
    return None if ours is None else ours.replace("N", layer.group(1), 1)


def mistral_to_hf_name(name: str) -> str:
    """The Hugging Face name of one of our tensor names."""
    layer = layer_of(name)
    if layer is None:
        return MISTRAL_TO_HF[name]
    return MISTRAL_TO_HF[name.replace(f"layers.{layer}.", "layers.N.", 1)].replace("N", str(layer), 1)


def permute_for_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder wq/wk rows from Mistral's (2i, 2i+1) RoPE pairing to HF's (i, i + head_dim/2) pairing."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)  # (dim1, dim2)


def unpermute_from_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of permute_for_hf: HF's rotate-half rows back to Mistral's neighbouring pairs."""
    dim1, dim2 = w.shape
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)  # (dim1, dim2)


def rope_heads(name: str, cfg: ModelConfig) -> int | None:
    """The heads whose rows the layouts order differently: n_heads for wq, n_kv_heads for wk, else None."""
    if name.endswith("attention.wq.weight"):
        return cfg.n_heads
    if name.endswith("attention.wk.weight"):
        return cfg.n_kv_heads
    return None


def to_hf_rows(name: str, tensor: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """One of our tensors (by our name) with its rows in Hugging Face's order."""
    heads = rope_heads(name, cfg)
    return tensor if heads is None else permute_for_hf(tensor, heads)


def from_hf_rows(name: str, tensor: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """A tensor read from a Hugging Face file (named with our name) with its rows in our order."""
    heads = rope_heads(name, cfg)
    return tensor if heads is None else unpermute_from_hf(tensor, heads)


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state_dict under Hugging Face's names and row order, for MistralForCausalLM.load_state_dict."""
    return {mistral_to_hf_name(name): to_hf_rows(name, t, cfg).contiguous() for name, t in state.items()}
