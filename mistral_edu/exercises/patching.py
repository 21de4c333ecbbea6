"""Activation-patching exercise (notebooks 09 and 10): one residual-stream vector from the clean run.

The checker runs on a small model of its own, so it costs the same on the embedded default and on
the real 7B weights.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..config import ModelConfig
from ..model import Transformer, random_init_
from .catalogue import Exercise, register
from .verdict import Case, Verdict, check, judge_tensors

__all__ = ["check_patching", "patch_resid_pre"]

PATCHING = register(Exercise(
    name="patching", notebook="09, 10", difficulty=3, minutes=25,
    task="write patch(model, clean_tokens, corrupted_tokens, layer, position): the logits of the corrupted run "
         "with layers.{layer}.hook_resid_pre at `position` taken from the clean run",
    hints=("patching runs the CORRUPTED prompt and pastes in one activation from the clean run; if the output "
           "moves back toward the clean answer, that activation carried the difference",
           "first record the hook point's activation on the clean prompt; then run the corrupted prompt with a "
           "hook on the same point that returns a copy whose one position is replaced by the clean one"),
    solution='''def patch(model, clean_tokens, corrupted_tokens, layer, position):
    name = f"layers.{layer}.hook_resid_pre"
    _, clean = model.run_with_cache(clean_tokens, names=[name])
    def paste(x, hook):
        x = x.clone()                                    # never edit the activation in place
        x[:, position] = clean[name][:, position]
        return x
    with model.hooks([(name, paste)]):
        return model(corrupted_tokens)''',
))


def _checker_model() -> Transformer:
    """A small deterministic model so the patching check costs the same on any machine."""
    cfg = ModelConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2, vocab_size=50)
    # std 1/sqrt(dim): large enough that patching one vector visibly moves the logits.
    return random_init_(Transformer(cfg), seed=0, std=cfg.dim ** -0.5).eval().requires_grad_(False)


def patch_resid_pre(model, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, layer: int, position: int,
                    hook: str = "hook_resid_pre", positions=None) -> torch.Tensor:
    """Logits of the corrupted run with one residual-stream vector taken from the clean run."""
    name = f"layers.{layer}.{hook}"
    _, clean = model.run_with_cache(clean_tokens, names=[name])
    where = [position] if positions is None else positions

    def paste(x, _hook):
        x = x.clone()                                    # (batch, seq, dim)
        x[:, where] = clean[name][:, where]
        return x

    with model.hooks([(name, paste)]):
        return model(corrupted_tokens)                   # (batch, seq, vocab)


def _reverse_patch(model, clean: torch.Tensor, corrupted: torch.Tensor, layer: int, position: int) -> torch.Tensor:
    """The opposite direction: the clean run with one vector from the corrupted run."""
    return patch_resid_pre(model, corrupted, clean, layer, position)


PATCHING_SLIPS = {
    "these are the corrupted logits unchanged: the hook's edit never reached the model (return the patched tensor "
    "from the hook)": lambda c: c.args[0](c.args[2]),
    "these are the clean logits: either you ran the clean tokens, or you patched every position; run the CORRUPTED "
    "tokens with only `position` taken from the clean run": lambda c: c.args[0](c.args[1]),
    "you patched after the block's attention (hook_resid_mid or hook_resid_post: the same here, since the MLP acts "
    "position by position), not hook_resid_pre, the block's input":
        lambda c: patch_resid_pre(*c.args, hook="hook_resid_post"),
    "you patched position - 1: index the sequence dimension with `position` itself":
        lambda c: patch_resid_pre(*c.args[:4], c.args[4] - 1),
    "you patched position + 1: index the sequence dimension with `position` itself":
        lambda c: patch_resid_pre(*c.args[:4], c.args[4] + 1),
    "the direction is reversed: you ran the clean tokens with the corrupted run's vector; run the CORRUPTED tokens "
    "and paste in the clean vector": lambda c: _reverse_patch(*c.args),
}


def check_patching(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(model, clean_tokens, corrupted_tokens, layer, position) -> logits of the patched corrupted run.

    The two prompts differ at positions 1-3, so every case's patch moves the logits, and the
    neighbouring positions' patches differ from the asked one.
    """
    model = _checker_model()
    # two rows, so that an answer that patches row 0 only (x[0, position]) fails
    clean = torch.tensor([[1, 7, 12, 30, 4, 9], [1, 20, 3, 14, 33, 9]])                   # (2, 6)
    corrupted = torch.tensor([[1, 8, 25, 31, 4, 9], [1, 21, 5, 15, 33, 9]])               # (2, 6)
    cases = [Case(f"layer {layer}, position {position}", (model, clean, corrupted, layer, position),
                  patch_resid_pre(model, clean, corrupted, layer, position))
             for layer, position in [(1, 2), (0, 3), (1, 4)]]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, PATCHING_SLIPS, atol=1e-4)

    return check(PATCHING, fn, verify, "patched logits match")
