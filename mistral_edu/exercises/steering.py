"""The steering exercise (notebook 12): a vector added through a hook while the model generates.

The reference is mistral_edu.analysis's steering_hooks (the hook lesson 12 steers with) around
generate(); the checker steers the patching exercise's small model hard enough that each usual slip
(no steering, the wrong sign, no scale, the wrong hook point, BOS steered, only the prompt or only the
new tokens steered) changes the greedy tokens in its own way.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..analysis.steering import steering_hooks
from ..generation import generate
from .catalogue import Exercise, register
from .patching import _checker_model
from .verdict import Case, Verdict, check, judge_tensors

__all__ = ["check_steered_generate", "steered_generate"]

STEERED_GENERATE = register(Exercise(
    name="steered_generate", notebook="12", difficulty=2, minutes=20,
    task="write steered_generate(model, prompt, layer, vector, scale, max_new_tokens): the greedy new tokens of "
         "me.generate(model, prompt, max_new_tokens) while a hook adds scale * vector to "
         "layers.{layer}.hook_resid_post at every position but the prompt's first (BOS, which every text shares), "
         "during the prompt's forward pass and every decoding step",
    hints=("steering edits the residual stream while the model runs: every forward pass, the prompt's and each new "
           "token's, sees the shifted stream, so the whole continuation is written from the moved state",
           "write a hook for the block's output that returns the stream plus the scaled vector; a call that sees "
           "several positions is the prompt, so leave its first position alone there; attach it with model.hooks "
           "around the call to generate"),
    solution='''def steered_generate(model, prompt, layer, vector, scale, max_new_tokens):
    def add(x, hook):                                      # x: (batch, seq, dim)
        shift = (scale * vector).to(x)
        if x.shape[1] > 1:                                 # the prompt: leave BOS alone
            return torch.cat([x[:, :1], x[:, 1:] + shift], dim=1)
        return x + shift                                   # a decoding step: one new position
    with model.hooks([(f"layers.{layer}.hook_resid_post", add)]):
        return me.generate(model, prompt, max_new_tokens=max_new_tokens)''',
))


def steered_generate(model, prompt: list[int], layer: int, vector: torch.Tensor, scale: float, max_new_tokens: int,
                     point: str = "hook_resid_post", when: str = "always", skip_bos: bool = True) -> list[int]:
    """Greedy tokens with scale * vector added at layers.{layer}.{point}; `when` is "always", "prompt" or "steps"."""
    def add(x, hook):                                                              # (batch, seq, dim)
        prompt_call = x.shape[1] > 1
        if (when == "prompt" and not prompt_call) or (when == "steps" and prompt_call):
            return x
        shift = (scale * vector).to(x)                                             # (dim,)
        if prompt_call and skip_bos:
            return torch.cat([x[:, :1], x[:, 1:] + shift], dim=1)
        return x + shift

    hooks = steering_hooks(layer, vector, scale, point) if (when, skip_bos) == ("always", True) else \
        [(f"layers.{layer}.{point}", add)]
    with torch.no_grad(), model.hooks(hooks):
        return generate(model, prompt, max_new_tokens=max_new_tokens, stop_at_eos=False)


STEERING_SLIPS = {
    "these are the unsteered tokens: the hook's edit never reached the model (return the shifted tensor)":
        lambda c: steered_generate(*c.args[:3], c.args[3], 0.0, c.args[5]),
    "the sign is reversed: ADD scale * vector": lambda c: steered_generate(*c.args[:3], c.args[3], -c.args[4], c.args[5]),
    "the scale is ignored: add scale * vector, not the vector itself":
        lambda c: steered_generate(*c.args[:3], c.args[3], 1.0, c.args[5]),
    "you steered hook_resid_pre (the block's input); this exercise steers hook_resid_post, the block's output":
        lambda c: steered_generate(*c.args, point="hook_resid_pre"),
    "you shifted BOS too: in a call that sees the prompt, leave its first position alone":
        lambda c: steered_generate(*c.args, skip_bos=False),
    "only the prompt was steered: each decoding step (a call that sees one position) must be shifted too":
        lambda c: steered_generate(*c.args, when="prompt"),
    "only the decoding steps were steered: the prompt's forward pass must be shifted too (except BOS)":
        lambda c: steered_generate(*c.args, when="steps"),
}


def check_steered_generate(fn: Callable[..., list[int]] | None) -> Verdict:
    """fn(model, prompt, layer, vector, scale, max_new_tokens) -> the steered greedy tokens, on two settings."""
    model = _checker_model()
    g = torch.Generator().manual_seed(41)
    vector = torch.randn(model.cfg.dim, generator=g)                                     # (dim,)
    cases = [Case(f"layer {layer}, scale {scale:g}, prompt {prompt}", (model, prompt, layer, vector, scale, 8),
                  torch.tensor(steered_generate(model, prompt, layer, vector, scale, 8)))
             for layer, scale, prompt in [(0, 1.5, [1, 9, 4, 22, 17]), (1, -2.0, [1, 7, 12, 30])]]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, {why: (lambda c, make=make: torch.tensor(make(c)))
                                         for why, make in STEERING_SLIPS.items()}, atol=0, rtol=0)

    return check(STEERED_GENERATE, fn, verify, "the same continuation as generate() under analysis.steering_hooks")
