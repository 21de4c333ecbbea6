"""The activation peak of one forward pass, stage by stage, from the shapes and the code's temporaries.

What PyTorch allocates besides weights and KV cache while a prompt goes through the model: the residual
stream, and at the worst moment of one block its temporaries (the norm's float32 copies, q/k/v, RoPE's
complex copies, SwiGLU's four hidden-width tensors, or explicit attention's n_heads x L x L scores).
Each of them is an ActivationTerm: bytes per token, per sequence, per position, per score, so that the
same numbers evaluate here and in the will-it-fit view's JavaScript, to the byte.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES, dtype_name
from .checks import check_batch, check_context


@dataclass(frozen=True)
class ActivationTerm:
    """The bytes of one tensor as coefficients of the prompt's shape (batch sequences of `context` tokens)."""

    per_token: int = 0        # x batch x context: a value per position of every sequence
    per_sequence: int = 0     # x batch: the last position's logits
    per_position: int = 0     # x context: shared by the batch (position ids, RoPE's rotations)
    per_score: int = 0        # x batch x context²: explicit attention's scores of every head
    per_mask_cell: int = 0    # x context²: the causal mask, shared by the batch and the heads

    def at(self, context: int, batch: int) -> int:
        """Bytes for `batch` sequences of `context` tokens."""
        return (self.per_token * batch * context + self.per_sequence * batch + self.per_position * context
                + self.per_score * batch * context * context + self.per_mask_cell * context * context)


def _stage_terms(cfg: ModelConfig, e: int, attention: str, cached: bool) -> dict[str, dict[str, ActivationTerm]]:
    """Live activations at each stage of one block, per token unless said otherwise.

    Mirrors the code: RMSNorm computes in float32 (x.float(), the normalised copy, the cast back, the
    weighted output); a block keeps its input, attention output and mid residual alive until it
    returns; RoPE works on a float32 copy as complex numbers; SwiGLU holds gate, up, silu(gate) and
    their product at once. Float32 compute (e = 4) skips the float copies and casts.
    """
    convert = 0 if e == 4 else 1
    d, q, kv, hidden = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.hidden_dim
    norm_temps = ActivationTerm(per_token=convert * 4 * d + 4 * d + convert * e * d + e * d)
    normalised = ActivationTerm(per_token=e * d)
    kept = ActivationTerm(per_token=2 * e * d)
    stages = {
        "attention_norm": {"norm temporaries": norm_temps},
        "attention (RoPE on q)": {"normalised input": normalised,
                                  "q, k, v": ActivationTerm(per_token=e * (q + 2 * kv)),
                                  "RoPE temporaries": ActivationTerm(per_token=(convert * (4 + e) + 4) * q)},
        "attention (output)": {"normalised input": normalised,
                               "q, k, v": ActivationTerm(per_token=e * q + (0 if cached else 2 * e * kv)),
                               "attention output z, wo(z)": ActivationTerm(per_token=e * (q + d)),
                               "softmax statistics": ActivationTerm(per_token=4 * cfg.n_heads)},
        "ffn_norm": {"attention output, mid residual": kept, "norm temporaries": norm_temps},
        "feed_forward (SwiGLU)": {"attention output, mid residual": kept, "normalised input": normalised,
                                  "SwiGLU gate, up, silu(gate), product": ActivationTerm(per_token=4 * e * hidden)},
    }
    if attention == "explicit":
        stages["attention (explicit scores)"] = {
            "normalised input": normalised, "q, repeated k and v": ActivationTerm(per_token=3 * e * q),
            "scores + pattern (n_heads x L x L)": ActivationTerm(per_score=(e + convert * 4 + 4) * cfg.n_heads),
            "mask (L x L bool)": ActivationTerm(per_mask_cell=2)}
    return stages


def activation_terms(cfg: ModelConfig, dtype="bf16", attention: str = "sdpa", logits: str = "last",
                     cached: bool = True) -> tuple[dict[str, ActivationTerm], dict[str, dict[str, ActivationTerm]]]:
    """(resident, stages): what is live throughout a forward pass, and each stage's temporaries, as terms.

    The peak is the stage whose temporaries are largest (the first such, in the order of the code);
    prefill_activations evaluates these terms, and the will-it-fit view carries them to the browser.
    """
    if attention not in ("sdpa", "explicit"):
        raise ValueError(f"attention must be 'sdpa' or 'explicit', got {attention!r}")
    if logits not in ("last", "all"):
        raise ValueError(f"logits must be 'last' or 'all', got {logits!r}")
    e = DTYPE_BYTES[dtype_name(dtype)]
    resident = {"residual stream": ActivationTerm(per_token=e * cfg.dim),
                "token ids, positions, RoPE rotations": ActivationTerm(per_token=8, per_position=8 + 4 * cfg.head_dim)}
    stages = _stage_terms(cfg, e, attention, cached)
    out = "per_sequence" if logits == "last" else "per_token"
    stages["output head"] = {
        "final norm output": ActivationTerm(**{out: e * cfg.dim}),
        f"logits ({logits} positions, {e}-byte + float32)": ActivationTerm(**{out: (e + 4) * cfg.vocab_size})}
    if logits == "all":
        stages["final norm"] = {"norm temporaries": stages["ffn_norm"]["norm temporaries"]}
    return resident, stages


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
    resident, stages = activation_terms(cfg, dtype, attention, logits, cached)
    bytes_of = {stage: {part: term.at(context, batch) for part, term in parts.items()}
                for stage, parts in stages.items()}
    peak = max(bytes_of, key=lambda s: sum(bytes_of[s].values()))
    return peak, {**{part: term.at(context, batch) for part, term in resident.items()}, **bytes_of[peak]}


def prefill_activation_bytes(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16",
                             attention: str = "sdpa", logits: str = "last", cached: bool = True) -> int:
    """The activation peak in bytes (see prefill_activations for the parts)."""
    return sum(prefill_activations(cfg, context, batch, dtype, attention, logits, cached)[1].values())
