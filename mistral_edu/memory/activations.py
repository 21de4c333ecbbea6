"""The activation peak of reading a prompt, stage by stage, from the shapes and the code's temporaries.

What PyTorch allocates besides weights and KV cache while a prompt goes through the model: the residual
stream, and at the worst moment of one block its temporaries (the norm's float32 copies, q/k/v, RoPE's
copies, SwiGLU's four hidden-width tensors, or explicit attention's n_heads x L x L scores).
Each of them is an ActivationTerm: bytes per token, per sequence, per position, per score, so that the
same numbers evaluate here and in the will-it-fit view's JavaScript, to the byte.

Two paths read a prompt, and they peak differently. "plain" is one pass over the whole prompt:
model(tokens), and generate whenever a hook is attached. "fast" is generate's fast path
(generation/fast_path.py): PREFILL_CHUNK tokens at a time, each chunk attending to the cache of the ones
before, so its temporaries are a chunk's, plus the causal mask of a chunk against the whole cache.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..dtypes import DTYPE_BYTES, dtype_name
from ..generation.fast_path import PREFILL_CHUNK
from .checks import check_batch, check_context

PATHS = ("fast", "plain")


@dataclass(frozen=True)
class ActivationTerm:
    """The bytes of one tensor as coefficients of the prompt's shape (batch sequences of `context` tokens)."""

    per_token: int = 0         # x batch x new: a value per position a pass computes (the whole prompt, or a chunk)
    per_sequence: int = 0      # x batch: the last position's logits
    per_position: int = 0      # x context: shared by the batch (position ids, RoPE's rotations)
    per_score: int = 0         # x batch x new x context: explicit attention's scores of every head
    per_mask_cell: int = 0     # x new x context: the causal mask, shared by the batch and the heads
    per_prompt_token: int = 0  # x batch x context: the prompt's token ids, held whole by either path
    per_cached_cell: int = 0   # x new x context, only when a chunk follows cached ones: its causal mask

    def at(self, context: int, batch: int, new: int | None = None) -> int:
        """Bytes for `batch` sequences of `context` tokens, `new` of them (default all) computed in this pass."""
        new = context if new is None else new
        after_cache = new * context if context > new else 0
        return (self.per_token * batch * new + self.per_sequence * batch + self.per_position * context
                + self.per_score * batch * new * context + self.per_mask_cell * new * context
                + self.per_prompt_token * batch * context + self.per_cached_cell * after_cache)


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


def _fast_stage_terms(cfg: ModelConfig, e: int) -> dict[str, dict[str, ActivationTerm]]:
    """Live activations at each stage of one block of the fast path's prefill, per token of a chunk.

    Mirrors fast_path.py: q, k and v stay views of one fused projection (qkv) beside the rotated q|k
    (qk), and the layer loop's variables keep the previous layer's qk, qkv and flattened z alive until
    the new ones replace them. rotate_pairs works on a float32 copy with two products of half width at
    a time. A chunk after cached ones gets torch's lower-right causal mask, which the CPU builds as a
    (chunk, context) tensor: an int64 index, the boolean mask and its additive copy in the compute
    dtype (8 + 1 + e bytes a cell; a GPU kernel that takes the lower-right variant needs none of it).
    """
    convert = 0 if e == 4 else 1
    d, q, kv, hidden = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.hidden_dim
    qkv = ActivationTerm(per_token=e * (q + 2 * kv))
    qk = ActivationTerm(per_token=e * (q + kv))
    z = ActivationTerm(per_token=e * q)
    previous = {"previous layer's qkv, rotated q|k, z": ActivationTerm(per_token=qkv.per_token + qk.per_token + z.per_token)}
    return {
        "attention (RoPE on q|k)": {**previous, "qkv": qkv,
                                    "RoPE temporaries": ActivationTerm(per_token=(convert * 4 + 8) * (q + kv))},
        "attention (chunk after the cache)": {"qkv, rotated q|k": ActivationTerm(per_token=qkv.per_token + qk.per_token),
                                              "previous layer's z, attention output": ActivationTerm(per_token=2 * z.per_token),
                                              "softmax statistics": ActivationTerm(per_token=4 * cfg.n_heads),
                                              "causal mask (chunk x context, CPU)": ActivationTerm(per_cached_cell=9 + e)},
        "feed_forward (SwiGLU)": {"mid residual": ActivationTerm(per_token=e * d),
                                  "qkv, rotated q|k, z": ActivationTerm(per_token=qkv.per_token + qk.per_token + z.per_token),
                                  "SwiGLU gate|up, silu(gate), product": ActivationTerm(per_token=4 * e * hidden)},
    }


def activation_terms(cfg: ModelConfig, dtype="bf16", attention: str = "sdpa", logits: str = "last",
                     cached: bool = True, path: str = "plain"
                     ) -> tuple[dict[str, ActivationTerm], dict[str, dict[str, ActivationTerm]]]:
    """(resident, stages): what is live throughout reading a prompt, and each stage's temporaries, as terms.

    The peak is the stage whose temporaries are largest (the first such, in the order of the code);
    prefill_activations evaluates these terms, and the will-it-fit view carries them to the browser.
    path: "plain" (one pass, model.forward) or "fast" (generate's fast path, chunk by chunk; its
    per-token terms count a chunk's tokens).
    """
    if attention not in ("sdpa", "explicit"):
        raise ValueError(f"attention must be 'sdpa' or 'explicit', got {attention!r}")
    if logits not in ("last", "all"):
        raise ValueError(f"logits must be 'last' or 'all', got {logits!r}")
    if path not in PATHS:
        raise ValueError(f"path must be 'fast' (generate's chunked prefill) or 'plain' (one pass), got {path!r}")
    if path == "fast" and (attention, logits) != ("sdpa", "last"):
        raise ValueError("the fast path uses fused attention and keeps the last position's logits only; explicit "
                         "attention (hooks on scores or pattern) and all-position logits run path='plain'")
    e = DTYPE_BYTES[dtype_name(dtype)]
    if path == "fast":
        resident = {"token ids": ActivationTerm(per_prompt_token=8),
                    "slot positions, RoPE cos and sin": ActivationTerm(per_position=8 + 4 * cfg.head_dim),
                    "residual stream": ActivationTerm(per_token=e * cfg.dim)}
        stages = _fast_stage_terms(cfg, e)
    else:
        resident = {"residual stream": ActivationTerm(per_token=e * cfg.dim),
                    "token ids, positions, RoPE rotations": ActivationTerm(per_prompt_token=8,
                                                                           per_position=8 + 4 * cfg.head_dim)}
        stages = _stage_terms(cfg, e, attention, cached)
    out = "per_sequence" if logits == "last" else "per_token"
    stages["output head"] = {
        "final norm output": ActivationTerm(**{out: e * cfg.dim}),
        f"logits ({logits} positions, {e}-byte + float32)": ActivationTerm(**{out: (e + 4) * cfg.vocab_size})}
    if logits == "all":
        stages["final norm"] = {"norm temporaries": stages["ffn_norm"]["norm temporaries"]}
    return resident, stages


def prefill_path(cfg: ModelConfig, context: int, batch: int = 1, attention: str = "sdpa", logits: str = "last") -> str:
    """The path generate reads a prompt by: "fast" for one sequence with fused attention and no sliding window
    shorter than the context (generation.fast_path_applies' rule, hooks aside), else "plain"."""
    window = cfg.sliding_window
    short_window = window is not None and window < context
    return "fast" if (batch, attention, logits) == (1, "sdpa", "last") and not short_window else "plain"


def pass_tokens(context: int, path: str, chunk: int = PREFILL_CHUNK) -> int:
    """Tokens one forward pass computes: the whole prompt on the plain path, at most a chunk on the fast one."""
    return min(context, chunk) if path == "fast" else context


def prefill_activations(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16", attention: str = "sdpa",
                        logits: str = "last", cached: bool = True, path: str = "plain",
                        chunk: int = PREFILL_CHUNK) -> tuple[str, dict[str, int]]:
    """(stage, parts) of the activation peak of reading `context` new tokens.

    attention: "sdpa" (fused, never stores the scores) or "explicit" (materialises n_heads x L x L
    scores and pattern, as hooks on them require). logits: "last" (generation's prefill, last_only)
    or "all" (every position: (e + 4) x vocab bytes per token, the float32 copy included).
    path: "plain", one pass over the prompt; "fast", generate's fast path, `chunk` tokens at a time, whose
    peak is a full chunk against the whole cache (exact when the context is a multiple of the chunk, an
    upper bound otherwise). The residual stream and RoPE's rotations are live throughout.
    """
    check_context(cfg, context)
    check_batch(batch)
    if path == "fast" and batch != 1:
        raise ValueError(f"generate's fast path reads one sequence; batch {batch} runs as one pass (path='plain')")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of tokens, got {chunk!r}")
    resident, stages = activation_terms(cfg, dtype, attention, logits, cached, path)
    new = pass_tokens(context, path, chunk)
    bytes_of = {stage: {part: term.at(context, batch, new) for part, term in parts.items()}
                for stage, parts in stages.items()}
    peak = max(bytes_of, key=lambda s: sum(bytes_of[s].values()))
    return peak, {**{part: term.at(context, batch, new) for part, term in resident.items()}, **bytes_of[peak]}


def prefill_activation_bytes(cfg: ModelConfig, context: int, batch: int = 1, dtype="bf16",
                             attention: str = "sdpa", logits: str = "last", cached: bool = True,
                             path: str = "plain", chunk: int = PREFILL_CHUNK) -> int:
    """The activation peak in bytes (see prefill_activations for the parts)."""
    return sum(prefill_activations(cfg, context, batch, dtype, attention, logits, cached, path, chunk)[1].values())
