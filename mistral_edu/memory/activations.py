"""The activation peak of one forward pass, stage by stage, from the shapes and the code's temporaries.

What PyTorch allocates besides weights and KV cache while a prompt goes through the model: the residual
stream, and at the worst moment of one block its temporaries (the norm's float32 copies, q/k/v, RoPE's
complex copies, SwiGLU's four hidden-width tensors, or explicit attention's n_heads x L x L scores).
"""
from __future__ import annotations

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES, dtype_name
from .checks import check_batch, check_context


def _stage_bytes(cfg: ModelConfig, tokens: int, e: int, attention: str, cached: bool, batch: int) -> dict:
    """Live activation bytes at each stage of one block, for `tokens` positions (batch included).

    Mirrors the code: RMSNorm computes in float32 (x.float(), the normalised copy, the cast back, the
    weighted output); a block keeps its input, attention output and mid residual alive until it
    returns; RoPE works on a float32 copy as complex numbers; SwiGLU holds gate, up, silu(gate) and
    their product at once. Float32 compute (e = 4) skips the float copies and casts.
    """
    convert = 0 if e == 4 else 1
    d, q, kv, hidden = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.hidden_dim
    norm_temps = (convert * 4 * d + 4 * d + convert * e * d + e * d) * tokens
    rope_q = (convert * 4 * q + 4 * q + convert * e * q) * tokens
    qkv = e * (q + 2 * kv) * tokens
    stages = {
        "attention_norm": {"norm temporaries": norm_temps},
        "attention (RoPE on q)": {"normalised input": e * d * tokens, "q, k, v": qkv, "RoPE temporaries": rope_q},
        "attention (output)": {"normalised input": e * d * tokens, "q, k, v": e * q * tokens + (0 if cached else 2 * e * kv * tokens),
                               "attention output z, wo(z)": e * (q + d) * tokens,
                               "softmax statistics": 4 * cfg.n_heads * tokens},
        "ffn_norm": {"attention output, mid residual": 2 * e * d * tokens, "norm temporaries": norm_temps},
        "feed_forward (SwiGLU)": {"attention output, mid residual": 2 * e * d * tokens, "normalised input": e * d * tokens,
                                  "SwiGLU gate, up, silu(gate), product": 4 * e * hidden * tokens},
    }
    if attention == "explicit":
        seq = tokens // batch
        scores = batch * cfg.n_heads * seq * seq
        stages["attention (explicit scores)"] = {
            "normalised input": e * d * tokens, "q, repeated k and v": 3 * e * q * tokens,
            "scores + pattern (n_heads x L x L)": (e + convert * 4 + 4) * scores,
            "mask (L x L bool)": 2 * seq * seq}
    return stages


def prefill_activations(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16", attention: str = "sdpa",
                        logits: str = "last", cached: bool = True) -> tuple[str, dict[str, int]]:
    """(stage, parts) of the activation peak of one forward pass over `context` new tokens.

    attention: "sdpa" (fused, never stores the scores) or "explicit" (materialises n_heads x L x L
    scores and pattern, as hooks on them require). logits: "last" (generation's prefill, last_only)
    or "all" (every position: (e + 4) x vocab bytes per token, the float32 copy included).
    The residual stream (the block's input) and RoPE's rotations are live throughout.
    """
    check_context(cfg, context)
    check_batch(batch)
    if attention not in ("sdpa", "explicit"):
        raise ValueError(f"attention must be 'sdpa' or 'explicit', got {attention!r}")
    if logits not in ("last", "all"):
        raise ValueError(f"logits must be 'last' or 'all', got {logits!r}")
    e = DTYPE_BYTES[dtype_name(dtype)]
    tokens = batch * context
    resident = {"residual stream": e * cfg.dim * tokens,
                "token ids, positions, RoPE rotations": 8 * tokens + 8 * context + 4 * cfg.head_dim * context}
    stages = _stage_bytes(cfg, tokens, e, attention, cached, batch)
    out_tokens = batch if logits == "last" else tokens
    stages["output head"] = {"final norm output": e * cfg.dim * out_tokens,
                             f"logits ({logits} positions, {e}-byte + float32)": (e + 4) * cfg.vocab_size * out_tokens}
    if logits == "all":
        stages["final norm"] = {"norm temporaries": _stage_bytes(cfg, tokens, e, "sdpa", cached, batch)["ffn_norm"]["norm temporaries"]}
    peak = max(stages, key=lambda s: sum(stages[s].values()))
    return peak, {**resident, **stages[peak]}


def prefill_activation_bytes(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16",
                             attention: str = "sdpa", logits: str = "last", cached: bool = True) -> int:
    """The activation peak in bytes (see prefill_activations for the parts)."""
    return sum(prefill_activations(cfg, context, batch, dtype, attention, logits, cached)[1].values())
