"""transformers' MistralForCausalLM holding our model's weights, for side-by-side timings.

Built on the meta device and given our tensors with load_state_dict(assign=True), so every weight is
shared except wq and wk, which HF stores with their rows permuted for its rotate-half RoPE. On a GPU
that keeps two 7B models in ~16 GB instead of 29.
"""
from __future__ import annotations

import torch

from mistral_edu.checkpoints import hf_state_dict


def hf_config(cfg, attn_implementation: str = "sdpa"):
    """A MistralConfig with every field that shapes the computation taken from our ModelConfig."""
    from transformers import MistralConfig
    return MistralConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        sliding_window=cfg.sliding_window, max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=False,
        hidden_act="silu", attention_dropout=0.0, use_cache=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation=attn_implementation)


def transformers_twin(model, attn_implementation: str = "sdpa"):
    """MistralForCausalLM computing what `model` computes, sharing its weight storage where the layouts agree."""
    from transformers import MistralForCausalLM
    cfg = model.cfg
    config = hf_config(cfg, attn_implementation)
    config.dtype = model.dtype   # what transformers allocates its caches in
    with torch.device("meta"):
        hf = MistralForCausalLM(config)
    hf.load_state_dict(hf_state_dict(model.state_dict(), cfg), strict=True, assign=True)
    # The rotary inverse frequencies are a buffer computed at construction, not a weight: rebuild it.
    hf.model.rotary_emb = type(hf.model.rotary_emb)(config=config).to(model.device)
    hf.generation_config.eos_token_id = None   # time exactly max_new_tokens, with no stopping logic
    hf.generation_config.pad_token_id = 0
    return hf.eval().requires_grad_(False)


def set_attention(hf, attn_implementation: str) -> None:
    """Switch an HF model between "eager" and "sdpa" attention in place."""
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation(attn_implementation)
    else:
        hf.config._attn_implementation = attn_implementation
