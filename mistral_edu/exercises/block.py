"""The block exercise (notebook 05): one pre-norm transformer block, assembled from its four pieces.

The reference is the package's TransformerBlock, run on blocks with random weights and gains (so the
two norms differ and a normalised stream differs from the raw one). Every wrong answer a learner
usually writes is the same four pieces wired another way; two float32 configurations of several
positions tell those wirings apart, and a bfloat16 block catches the dtype slips.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..config import ModelConfig
from ..model import AttentionSpan, TransformerBlock, rope_rotations
from .catalogue import Exercise, register
from .verdict import (Case, LearnerError, Verdict, WrongAnswer, as_tensor, attempt, check, compare_tensors,
                      judge_tensors)

__all__ = ["check_transformer_block"]

TRANSFORMER_BLOCK = register(Exercise(
    name="transformer_block", notebook="05", difficulty=2, minutes=15,
    task="write transformer_block(h, layer, rotations, span): one pre-norm block of the residual stream h (batch, "
         "seq, dim), assembled from layer.attention_norm, layer.attention (called as attention(x, rotations, span)),"
         " layer.ffn_norm and layer.feed_forward; return the stream leaving the block, in h's dtype",
    hints=("in a pre-norm block the residual stream is never normalised: each sub-layer reads a normalised COPY of "
           "the stream as it stands and its output is added back; each sub-layer has its own norm",
           "normalise a copy of h with the attention's norm, attend over it with the rotations and span you were "
           "given, and add the result to h; then do the same with the feed-forward's own norm and the feed-forward,"
           " reading from and adding to the stream as it is after that first addition"),
    solution='''def transformer_block(h, layer, rotations, span):
    h = h + layer.attention(layer.attention_norm(h), rotations, span)   # (batch, seq, dim)
    return h + layer.feed_forward(layer.ffn_norm(h))                    # (batch, seq, dim)''',
))


class _BlockPieces:
    """The four pieces of a block, as attributes; calling the whole block is what the exercise replaces."""

    def __init__(self, block: TransformerBlock):
        self.attention_norm, self.attention = block.attention_norm, block.attention
        self.ffn_norm, self.feed_forward = block.ffn_norm, block.feed_forward

    def __call__(self, *args, **kwargs):
        raise TypeError("the exercise builds the block from its pieces: call layer.attention_norm, layer.attention, "
                        "layer.ffn_norm and layer.feed_forward, not the layer itself")


def _random_block(cfg: ModelConfig, seed: int) -> TransformerBlock:
    """A block whose sub-layers write O(1) outputs and whose two norms have different, non-unit gains."""
    g = torch.Generator().manual_seed(seed)
    block = TransformerBlock(cfg, 0).requires_grad_(False)
    for p in block.parameters():
        if p.dim() == 1:
            p.copy_(0.5 + torch.rand(p.shape, generator=g))                            # gains in [0.5, 1.5)
        else:
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)             # (out, in): outputs of O(1)
    return block


def _case(label: str, cfg: ModelConfig, batch: int, seq: int, seed: int, dtype=torch.float32) -> Case:
    """h with an RMS of 2 (so normalising it changes it), causal over seq positions; the package's block answers.

    Every position after 0 reads earlier ones, so a wiring slip cannot hide behind a query that sees only itself.
    """
    block = _random_block(cfg, seed).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    h = (2 * torch.randn(batch, seq, cfg.dim, generator=g)).to(dtype)                    # (batch, seq, dim)
    rotations = rope_rotations(torch.arange(seq), cfg.head_dim, cfg.rope_theta)           # (seq, head_dim/2)
    span = AttentionSpan(0, seq, 0, seq)                                                  # causal
    with torch.no_grad():
        expected = block(h, rotations, span)                                              # (batch, seq, dim)
    return Case(label, (h, _BlockPieces(block), rotations, span), expected)


_FIRST = ModelConfig(dim=32, n_layers=1, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2)
_SECOND = ModelConfig(dim=24, n_layers=1, head_dim=6, hidden_dim=56, n_heads=6, n_kv_heads=3, rope_theta=1e4)


def _float32_cases() -> list[Case]:
    return [_case("dim 32, 4 query heads on 2 KV heads, h (2, 6, 32)", _FIRST, 2, 6, 11),
            _case("dim 24, 6 query heads of 6 dims on 3 KV heads, h (1, 5, 24)", _SECOND, 1, 5, 12)]


def _bf16_case() -> Case:
    return _case("bfloat16 block: dim 32, h (1, 7, 32)", _FIRST, 1, 7, 13, torch.bfloat16)


# ------------------------------------------------------------------ the usual wirings, each with one slip

def _pieces(c: Case):
    """(h, attention_norm, attend, ffn_norm, feed_forward) of a case, attend being attention at its positions."""
    h, layer, rotations, span = c.args
    return h, layer.attention_norm, lambda x: layer.attention(x, rotations, span), layer.ffn_norm, layer.feed_forward


def _post_norm(h, norm1, attend, norm2, ffn):
    h = norm1(h + attend(h))
    return norm2(h + ffn(h))


def _no_norms(h, norm1, attend, norm2, ffn):
    h = h + attend(h)
    return h + ffn(h)


def _attention_reads_raw(h, norm1, attend, norm2, ffn):
    h = h + attend(h)
    return h + ffn(norm2(h))


def _ffn_reads_raw(h, norm1, attend, norm2, ffn):
    h = h + attend(norm1(h))
    return h + ffn(h)


def _ffn_reads_attention_output(h, norm1, attend, norm2, ffn):
    update = attend(norm1(h))
    return h + update + ffn(norm2(update))


def _norms_after(h, norm1, attend, norm2, ffn):
    h = h + norm1(attend(h))
    return h + norm2(ffn(h))


def _no_first_residual(h, norm1, attend, norm2, ffn):
    h = attend(norm1(h))
    return h + ffn(norm2(h))


def _no_second_residual(h, norm1, attend, norm2, ffn):
    return ffn(norm2(h + attend(norm1(h))))


def _no_residuals(h, norm1, attend, norm2, ffn):
    return ffn(norm2(attend(norm1(h))))


def _only_the_updates(h, norm1, attend, norm2, ffn):
    update = attend(norm1(h))
    return update + ffn(norm2(h + update))


def _stream_normalised(h, norm1, attend, norm2, ffn):
    h = norm1(h)
    h = h + attend(h)
    h = norm2(h)
    return h + ffn(h)


def _stream_normalised_before_attention(h, norm1, attend, norm2, ffn):
    h = norm1(h)
    h = h + attend(h)
    return h + ffn(norm2(h))


def _stream_normalised_before_ffn(h, norm1, attend, norm2, ffn):
    h = norm2(h + attend(norm1(h)))
    return h + ffn(h)


def _attention_norm_twice(h, norm1, attend, norm2, ffn):
    h = h + attend(norm1(h))
    return h + ffn(norm1(h))


def _norms_swapped(h, norm1, attend, norm2, ffn):
    h = h + attend(norm2(h))
    return h + ffn(norm1(h))


def _input_for_second_residual(h, norm1, attend, norm2, ffn):
    mid = h + attend(norm1(h))
    return h + ffn(norm2(mid))


def _parallel(h, norm1, attend, norm2, ffn):
    return h + attend(norm1(h)) + ffn(norm2(h))


def _ffn_first(h, norm1, attend, norm2, ffn):
    h = h + ffn(norm2(h))
    return h + attend(norm1(h))


def _wired(rule: Callable) -> Callable[[Case], torch.Tensor]:
    return lambda c: rule(*_pieces(c))


BLOCK_SLIPS = {
    "that is post-norm (the original transformer's norm(h + sublayer(h))): Mistral is pre-norm, each sub-layer reads "
    "a normalised copy and the stream itself is never normalised": _wired(_post_norm),
    "the sub-layers read the raw stream: each reads a normalised copy, attention through attention_norm and the "
    "feed-forward through ffn_norm": _wired(_no_norms),
    "attention read the raw stream: it reads attention_norm's normalised copy": _wired(_attention_reads_raw),
    "the feed-forward read the raw stream: it reads ffn_norm's normalised copy": _wired(_ffn_reads_raw),
    "the feed-forward read attention's output alone: it reads (a normalised copy of) the whole stream, h plus "
    "attention's output": _wired(_ffn_reads_attention_output),
    "each norm normalised its sub-layer's output: it goes BEFORE the sub-layer, on the copy of the stream the "
    "sub-layer reads": _wired(_norms_after),
    "the first residual is missing: attention's output is ADDED to h, it does not replace it":
        _wired(_no_first_residual),
    "the second residual is missing: the feed-forward's output is ADDED to the stream, it does not replace it":
        _wired(_no_second_residual),
    "both residuals are missing: each sub-layer's output is ADDED to the stream, it does not replace it":
        _wired(_no_residuals),
    "you returned only what the block adds (attention's and the feed-forward's outputs): return the stream, h plus "
    "both": _wired(_only_the_updates),
    "the residual stream was normalised in place, before both sub-layers: normalise a copy for each sub-layer to "
    "read and add its output to the un-normalised stream": _wired(_stream_normalised),
    "the residual stream was normalised in place before attention: attention reads a normalised copy, and its "
    "output is added to the un-normalised h": _wired(_stream_normalised_before_attention),
    "the residual stream was normalised in place before the feed-forward: it reads a normalised copy, and its "
    "output is added to the un-normalised stream": _wired(_stream_normalised_before_ffn),
    "the wrong norm before the feed-forward: it reads ffn_norm's copy, not attention_norm's (the two have their own "
    "gains)": _wired(_attention_norm_twice),
    "the two norms are swapped: attention reads attention_norm's copy, the feed-forward ffn_norm's":
        _wired(_norms_swapped),
    "the second residual adds the feed-forward's output to the block's input h: add it to the stream after "
    "attention's addition, or attention's output is lost": _wired(_input_for_second_residual),
    "both sub-layers read the block's input (a parallel block, as in GPT-J): in Mistral the feed-forward reads the "
    "stream after attention's addition": _wired(_parallel),
    "the feed-forward ran first: attention comes first, then the feed-forward reads its result": _wired(_ffn_first),
}


def _float32_stream(got) -> torch.Tensor:
    """A float32 case's answer as a tensor; a tensor of another dtype is a dtype slip, named as one."""
    if isinstance(got, torch.Tensor) and got.dtype != torch.float32:
        raise WrongAnswer(f"a float32 stream came back as {got.dtype}: the residual stream keeps the model's dtype")
    return as_tensor(got)


def _dtype_problem(fn: Callable, case: Case) -> str | None:
    """A bfloat16 block: the stream must come back bfloat16, and no piece may be fed float32."""
    try:
        got = attempt(fn, *case.args)
    except LearnerError as err:
        return (f"{case.label}: right in float32, but here {err}; the layer's weights are bfloat16, so each piece "
                "must read bfloat16: cast back after any float32 step, or leave the float32 work to the norms")
    if isinstance(got, torch.Tensor) and got.dtype != case.expected.dtype:
        return (f"{case.label}: a {case.expected.dtype} stream came back as {got.dtype}: the residual stream keeps "
                "the model's dtype; cast back after any float32 step (the norms already compute in float32)")
    problem = compare_tensors(as_tensor(got), case.expected, atol=5e-2, rtol=5e-2)
    return f"{case.label}: right in float32 but not here ({problem})" if problem else None


def check_transformer_block(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(h, layer, rotations, span): one pre-norm block from its pieces, in two configurations and in bfloat16."""
    cases, bf16 = _float32_cases(), _bf16_case()

    def verify(fn) -> str | None:
        with torch.no_grad():
            return judge_tensors(fn, cases, BLOCK_SLIPS, 1e-4, 1e-4, _float32_stream) or _dtype_problem(fn, bf16)

    return check(TRANSFORMER_BLOCK, fn, verify, "your block equals the package's TransformerBlock, in two "
                                                "configurations and in bfloat16")
